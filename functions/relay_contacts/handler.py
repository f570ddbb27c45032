"""HTTP entry point `relay_contacts` (public): the directory streamed as NDJSON; nothing stored."""
from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared import http
from shared.config import settings_for
from shared.runtime import cold_start_check, once

FUNCTION = "relay_contacts"

cold_start_check(FUNCTION)


@once
def _wiring():
    from shared import clients
    from shared.app_auth import build_validator
    from shared.clock import utc_now
    from shared.egress import AllowListedSession
    from shared.graph.client import AppTokens, GraphClient
    from shared.store.repositories import DeviceRepository, TenantRepository

    from functions.relay_contacts.cursor import CursorCodec
    from functions.relay_contacts.service import ContactRelayService

    config = settings_for(FUNCTION)
    db = clients.firestore_client(config.project)
    tenants = TenantRepository(db)
    session = AllowListedSession(config.allowed_egress, pool_size=32)
    validator = build_validator(config, session, tenants)
    tokens = AppTokens(config.entra_authority_host, config.entra_client_id, config.entra_client_secret, session)
    graph = GraphClient(session, config.graph_base_url, tokens, config.graph_retry_deadline_seconds)
    service = ContactRelayService(DeviceRepository(db, tenants), graph, CursorCodec(config.cursor_key), utc_now)
    return validator, service


def _relay(request: Request) -> Response:
    validator, service = _wiring()
    caller = validator.authenticate(request.headers.get("Authorization"))
    http.reject_query(request, ("cursor",))
    stream = service.open(caller, request.headers.get("X-Device-Id"), request.args.get("cursor"))
    response = Response(stream.lines, status=200, content_type="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    return response


ROUTER = http.Router([http.Route("GET", "/", _relay)])


@functions_framework.http
def relay_contacts(request: Request) -> Response:
    return http.dispatch(request, ROUTER, FUNCTION)
