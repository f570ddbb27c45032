"""HTTP entry point `relay_contacts` (public): the directory streamed as NDJSON; nothing stored."""
from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared import http
from shared.clock import utc_now
from shared.runtime import components

FUNCTION = "relay_contacts"


@components(FUNCTION)
def validator_and_service(config, store):
    from shared import wiring

    from functions.relay_contacts.admission import AdmittedGraph, SyncAdmission
    from functions.relay_contacts.cursor import CursorCodec
    from functions.relay_contacts.service import ContactRelayService

    session = wiring.egress_session(config, pool_size=32)
    # Every full sync holds one of the tenant's RELAY_FULL_SYNCS_PER_TENANT leases (admission.py).
    graph = AdmittedGraph(wiring.graph_client(config, session),
                          SyncAdmission(store.sync_leases, config.relay_full_syncs_per_tenant, utc_now))
    service = ContactRelayService(store.devices, graph, CursorCodec(config.cursor_key), utc_now)
    return wiring.token_validator(config, store.tenants, session), service


def _relay(request: Request) -> Response:
    validator, service = validator_and_service()
    caller = validator.authenticate(request.headers.get("Authorization"))
    stream = service.open(caller, request.headers.get("X-Device-Id"), request.args.get("cursor"))
    response = Response(stream.lines, status=200, content_type="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    return response


ROUTER = http.Router([http.Route("GET", "/", _relay, query=("cursor",))])


@functions_framework.http
def relay_contacts(request: Request) -> Response:
    return http.dispatch(request, ROUTER, FUNCTION)
