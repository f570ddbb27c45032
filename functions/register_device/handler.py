"""HTTP entry point `register_device` (public, called by the app with an Entra ID access token)."""
from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response

from shared import http
from shared.clock import utc_now
from shared.store.schema import CONTENT_TYPES
from shared.wiring import components

if TYPE_CHECKING:
    from functions.register_device.service import DeviceRegistrationService
    from shared.auth import Caller, TokenValidator
    from shared.config import Settings
    from shared.store import Store

FUNCTION = "register_device"
JSON_LIMIT = 4 * 1024
DIAGNOSTICS_LIMIT = 1024 * 1024


@components(FUNCTION)
def validator_and_service(config: Settings, store: Store) -> tuple[TokenValidator, DeviceRegistrationService]:
    from functions.register_device.limits import UserRegistrationLimiter
    from functions.register_device.service import DeviceRegistrationService, Limits
    from shared import wiring

    limits = Limits(config.max_devices_per_tenant, config.device_registrations_per_tenant_per_minute,
                    config.diagnostics_per_device_per_day, config.diagnostics_retention_days)
    user_limiter = UserRegistrationLimiter(config.device_registrations_per_user_per_10_minutes,
                                           timedelta(minutes=10))
    service = DeviceRegistrationService(store, wiring.deletion_requester(config, store), utc_now, limits,
                                        user_limiter)
    return wiring.token_validator(config, store.tenants), service


def _caller(request: Request) -> tuple[Caller, DeviceRegistrationService]:
    validator, service = validator_and_service()
    return validator.authenticate(request.headers.get("Authorization")), service


def _register(request: Request) -> Response:
    caller, service = _caller(request)
    body = http.read_json_object(request, JSON_LIMIT, ("deviceId",), ("deviceId",))
    view, created = service.register(caller, body["deviceId"])
    return http.json_response(view, 201 if created else 200)


def _unregister(request: Request, deviceId: str) -> Response:
    caller, service = _caller(request)
    return http.json_response({"requestId": service.unregister(caller, deviceId)}, 202)


def _diagnostics(request: Request, deviceId: str) -> Response:
    caller, service = _caller(request)
    data, media_type = http.read_body(request, DIAGNOSTICS_LIMIT, CONTENT_TYPES)
    stored = service.upload_diagnostics(caller, deviceId, data, CONTENT_TYPES[media_type])
    return http.json_response(stored.view(), 201)


ROUTER = http.Router([
    http.Route("POST", "/", _register),
    http.Route("DELETE", "/<deviceId>", _unregister),
    http.Route("POST", "/<deviceId>/diagnostics", _diagnostics),
])


@functions_framework.http
def register_device(request: Request) -> Response:
    return http.dispatch(request, ROUTER, FUNCTION)
