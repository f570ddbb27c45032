"""HTTP entry point `manage_tenants` (IAM-protected): decode, call the service, encode."""
from __future__ import annotations

from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response

from shared import http
from shared.clock import utc_now
from shared.errors import BadRequest
from shared.store.schema import CONTENT_TYPES
from shared.wiring import components

if TYPE_CHECKING:
    from functions.manage_tenants.service import TenantAdminService
    from shared.config import Settings
    from shared.store import Store

FUNCTION = "manage_tenants"
JSON_LIMIT = 64 * 1024
FILE_LIMIT = 10 * 1024 * 1024


@components(FUNCTION)
def admin_service(config: Settings, store: Store) -> TenantAdminService:
    from functions.manage_tenants.service import TenantAdminService
    from shared import wiring
    from shared.audit import AuditTrail

    return TenantAdminService(store, wiring.deletion_requester(config, store), utc_now,
                              AuditTrail(utc_now, config.audit_retention_days))


def _onboard(request: Request) -> Response:
    body = http.read_json_object(request, JSON_LIMIT, ("tenantId", "name", "settings"), ("tenantId", "name"))
    return http.json_response(admin_service().onboard(body["tenantId"], body["name"], body.get("settings")), 201)


def _list(request: Request) -> Response:
    return http.json_response(admin_service().list_tenants(request.args.get("pageSize"),
                                                           request.args.get("pageToken")))


def _read(request: Request, tenantId: str) -> Response:
    return http.json_response(admin_service().read(tenantId))


def _update(request: Request, tenantId: str) -> Response:
    body = http.read_json_object(request, JSON_LIMIT, ("name", "settings"))
    return http.json_response(admin_service().update(tenantId, body.get("name"), body.get("settings")))


def _delete(request: Request, tenantId: str) -> Response:
    return http.json_response({"requestId": admin_service().request_deletion(tenantId)}, 202)


def _devices(request: Request, tenantId: str) -> Response:
    return http.json_response(admin_service().list_devices(
        tenantId, request.args.get("pageSize"), request.args.get("pageToken")))


def _revoke(request: Request, tenantId: str, deviceId: str) -> Response:
    return http.json_response({"requestId": admin_service().revoke_device(tenantId, deviceId)}, 202)


def _attach_file(request: Request, tenantId: str) -> Response:
    if "retentionDays" not in request.args:
        raise BadRequest("retentionDays is required", slug="invalid-retention")
    data, media_type = http.read_body(request, FILE_LIMIT, CONTENT_TYPES)
    stored = admin_service().attach_file(tenantId, data, CONTENT_TYPES[media_type], request.args["retentionDays"])
    return http.json_response(stored.view(), 201)


def _files(request: Request, tenantId: str) -> Response:
    return http.json_response(admin_service().list_files(tenantId))


def _audit(request: Request, tenantId: str) -> Response:
    return http.json_response(admin_service().audit_trail(tenantId, request.args.get("pageSize"),
                                                          request.args.get("pageToken")))


def _receipt(request: Request, requestId: str) -> Response:
    return http.json_response(admin_service().read_receipt(requestId))


ROUTER = http.Router([
    http.Route("POST", "/tenants", _onboard),
    http.Route("GET", "/tenants", _list, query=("pageSize", "pageToken")),
    http.Route("GET", "/tenants/<tenantId>", _read),
    http.Route("PATCH", "/tenants/<tenantId>", _update),
    http.Route("DELETE", "/tenants/<tenantId>", _delete),
    http.Route("GET", "/tenants/<tenantId>/devices", _devices, query=("pageSize", "pageToken")),
    http.Route("DELETE", "/tenants/<tenantId>/devices/<deviceId>", _revoke),
    http.Route("POST", "/tenants/<tenantId>/files", _attach_file, query=("retentionDays",)),
    http.Route("GET", "/tenants/<tenantId>/files", _files),
    http.Route("GET", "/tenants/<tenantId>/audit", _audit, query=("pageSize", "pageToken")),
    http.Route("GET", "/receipts/<requestId>", _receipt),
])


@functions_framework.http
def manage_tenants(request: Request) -> Response:
    return http.dispatch(request, ROUTER, FUNCTION)
