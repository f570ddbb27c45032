"""HTTP entry point `manage_tenants` (IAM-protected): decode, call the service, encode."""
from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared import http
from shared.config import settings_for
from shared.runtime import cold_start_check, once
from shared.media import CONTENT_TYPES

FUNCTION = "manage_tenants"
JSON_LIMIT = 64 * 1024
FILE_LIMIT = 10 * 1024 * 1024

cold_start_check(FUNCTION)


@once
def _service():
    from shared import clients
    from shared.clock import utc_now
    from shared.deletion_requests import DeletionRequester
    from shared.events import deletion_publisher
    from shared.store.repositories import DeviceRepository, FileRepository, ReceiptRepository, TenantRepository
    from shared.store.technical_files import TechnicalFileStore

    from functions.manage_tenants.service import TenantAdminService

    config = settings_for(FUNCTION)
    db = clients.firestore_client(config.project)
    tenants = TenantRepository(db)
    files = FileRepository(db, tenants)
    receipts = ReceiptRepository(db)
    publisher = deletion_publisher(config)
    return TenantAdminService(
        tenants, DeviceRepository(db, tenants), files, receipts,
        TechnicalFileStore(clients.storage_bucket(config.project, config.technical_files_bucket), files),
        DeletionRequester(receipts, publisher, config.receipt_key, utc_now), utc_now)


def _onboard(request: Request) -> Response:
    http.reject_query(request)
    body = http.read_json_object(request, JSON_LIMIT, ("tenantId", "name", "settings"), ("tenantId", "name"))
    return http.json_response(_service().onboard(body["tenantId"], body["name"], body.get("settings")), 201)


def _read(request: Request, tenantId: str) -> Response:
    return http.json_response(_service().read(tenantId))


def _update(request: Request, tenantId: str) -> Response:
    http.reject_query(request)
    body = http.read_json_object(request, JSON_LIMIT, ("name", "settings"))
    return http.json_response(_service().update(tenantId, body.get("name"), body.get("settings")))


def _delete(request: Request, tenantId: str) -> Response:
    return http.json_response({"requestId": _service().request_deletion(tenantId)}, 202)


def _devices(request: Request, tenantId: str) -> Response:
    http.reject_query(request, ("pageSize", "pageToken"))
    return http.json_response(_service().list_devices(
        tenantId, request.args.get("pageSize"), request.args.get("pageToken")))


def _revoke(request: Request, tenantId: str, deviceId: str) -> Response:
    return http.json_response({"requestId": _service().revoke_device(tenantId, deviceId)}, 202)


def _attach_file(request: Request, tenantId: str) -> Response:
    http.reject_query(request, ("retentionDays",))
    if "retentionDays" not in request.args:
        from shared.errors import BadRequest

        raise BadRequest("retentionDays is required", slug="invalid-retention")
    data, kind = http.read_body(request, FILE_LIMIT, CONTENT_TYPES)
    stored = _service().attach_file(tenantId, data, CONTENT_TYPES[kind], request.args["retentionDays"])
    return http.json_response(stored.view(), 201)


def _files(request: Request, tenantId: str) -> Response:
    return http.json_response(_service().list_files(tenantId))


def _receipt(request: Request, requestId: str) -> Response:
    return http.json_response(_service().read_receipt(requestId))


ROUTER = http.Router([
    http.Route("POST", "/tenants", _onboard),
    http.Route("GET", "/tenants/{tenantId}", _read),
    http.Route("PATCH", "/tenants/{tenantId}", _update),
    http.Route("DELETE", "/tenants/{tenantId}", _delete),
    http.Route("GET", "/tenants/{tenantId}/devices", _devices),
    http.Route("DELETE", "/tenants/{tenantId}/devices/{deviceId}", _revoke),
    http.Route("POST", "/tenants/{tenantId}/files", _attach_file),
    http.Route("GET", "/tenants/{tenantId}/files", _files),
    http.Route("GET", "/receipts/{requestId}", _receipt),
])


@functions_framework.http
def manage_tenants(request: Request) -> Response:
    return http.dispatch(request, ROUTER, FUNCTION)
