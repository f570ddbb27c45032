"""HTTP entry point `relay_contacts` (public): the directory streamed as NDJSON, and colleagues' photos
passed through from Graph; nothing stored."""
from __future__ import annotations

from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response

from shared import http
from shared.clock import utc_now
from shared.wiring import components

if TYPE_CHECKING:
    from functions.relay_contacts.photos import PhotoService
    from functions.relay_contacts.service import ContactRelayService
    from shared.auth import TokenValidator
    from shared.config import Settings
    from shared.store import Store

FUNCTION = "relay_contacts"


@components(FUNCTION)
def validator_and_service(config: Settings, store: Store) -> tuple[TokenValidator, ContactRelayService]:
    from functions.relay_contacts.admission import SyncAdmission
    from functions.relay_contacts.cursor import CursorCodec
    from functions.relay_contacts.rounds import Rounds
    from functions.relay_contacts.service import ContactRelayService
    from shared import wiring

    egress = wiring.egress_session(config, pool_size=32)
    # Every shared round (feed) holds one of the tenant's RELAY_FULL_SYNCS_PER_TENANT leases (admission.py);
    # the phones joining it hold none (rounds.py).
    admission = SyncAdmission(store.sync_leases, config.relay_full_syncs_per_tenant, utc_now)
    rounds = Rounds(admission, config.relay_round_buffer_pages, config.relay_write_timeout_seconds)
    service = ContactRelayService(store.devices, wiring.graph_client(config, egress),
                                  CursorCodec(config.cursor_key), utc_now, rounds)
    return wiring.token_validator(config, store.tenants, egress), service


def _relay(request: Request) -> Response:
    validator, service = validator_and_service()
    caller = validator.authenticate(request.headers.get("Authorization"))
    stream = service.open(caller, request.headers.get("X-Device-Id"), request.args.get("cursor"))
    response = http.streamed_response(request, stream.lines, "application/x-ndjson", stream.write_timeout)
    response.headers["Cache-Control"] = "no-store"
    return response


@components(FUNCTION)
def validator_and_photos(config: Settings, store: Store) -> tuple[TokenValidator, PhotoService]:
    from functions.relay_contacts.photos import PhotoService

    # The relay's validator (one JWKS cache) and Graph client (one MSAL token cache per tenant).
    validator, relay = validator_and_service()
    return validator, PhotoService(store.devices, relay.graph)


def _photo(request: Request, userId: str) -> Response:
    validator, photos = validator_and_photos()
    caller = validator.authenticate(request.headers.get("Authorization"))
    photo = photos.photo(caller, request.headers.get("X-Device-Id"), userId, request.args.get("size"),
                         request.headers.get("If-None-Match"))
    response = Response(photo.chunks, status=200, content_type=photo.content_type) if photo.chunks is not None \
        else Response(status=304)
    response.headers["ETag"] = photo.etag
    response.headers["Cache-Control"] = "private, no-cache"  # the app keeps it and revalidates; we keep nothing
    return response


def _photo_changes(request: Request) -> Response:
    validator, photos = validator_and_photos()
    caller = validator.authenticate(request.headers.get("Authorization"))
    body = http.read_json_object(request, PHOTO_CHANGES_LIMIT, ("etags",), ("etags",))
    answer = photos.changes(caller, request.headers.get("X-Device-Id"), body["etags"])
    response = http.json_response(answer)
    response.headers["Cache-Control"] = "no-store"
    return response


PHOTO_CHANGES_LIMIT = 64 * 1024

ROUTER = http.Router([
    http.Route("GET", "/", _relay, query=("cursor",)),
    http.Route("POST", "/photos/changes", _photo_changes),
    http.Route("GET", "/photos/<except(changes):userId>", _photo, query=("size",)),
])


@functions_framework.http
def relay_contacts(request: Request) -> Response:
    return http.dispatch(request, ROUTER, FUNCTION)
