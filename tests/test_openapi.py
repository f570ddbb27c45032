"""openapi.yaml is a valid document, covers exactly the routes that exist, and matches real responses."""
from __future__ import annotations

import re
import uuid

from openapi_spec_validator import validate

from tests import openapi_contract
from tests.openapi_contract import assert_conforms


def _routes():
    """(function, method, OpenAPI path, declared query parameters) of every route the handlers serve."""
    from functions.manage_tenants.handler import ROUTER as admin_router
    from functions.register_device.handler import ROUTER as device_router
    from functions.relay_contacts.handler import ROUTER as relay_router

    routers = {"manage_tenants": admin_router, "register_device": device_router, "relay_contacts": relay_router}
    for tag, router in routers.items():
        for route in router.routes:
            yield tag, route.method, re.sub(r"<(?:[\w()]+:)?(\w+)>", r"{\1}", route.path), frozenset(route.query)


def test_document_is_valid_openapi():
    validate(openapi_contract.spec())


def test_every_route_is_documented_and_every_documented_route_exists():
    implemented = {(tag, method.lower(), path, query) for tag, method, path, query in _routes()}
    documented = set()
    for path, item in openapi_contract.spec()["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                query = frozenset(p["name"] for p in operation.get("parameters", []) + item.get("parameters", [])
                                  if p.get("in") == "query")
                documented.update((tag, method, path, query) for tag in operation["tags"])
    assert implemented, "no routes found"
    assert implemented == documented  # paths, methods and the query parameters each route accepts


def test_manage_tenants_responses_conform(admin):
    tenant = str(uuid.uuid4())
    calls = [
        ("POST", "/tenants", {"json": {"tenantId": tenant, "name": "Conformance GmbH",
                                       "settings": {"defaultRegion": "AT"}}}),
        ("POST", "/tenants", {"json": {"tenantId": tenant, "name": "again"}}),
        ("GET", f"/tenants/{tenant}", {}),
        ("PATCH", f"/tenants/{tenant}", {"json": {"name": "Renamed"}}),
        ("GET", f"/tenants/{tenant}/devices?pageSize=10", {}),
        ("POST", f"/tenants/{tenant}/files?retentionDays=3", {"data": b"{}", "content_type": "application/json"}),
        ("GET", f"/tenants/{tenant}/files", {}),
        ("GET", f"/tenants/{tenant}/audit?pageSize=1", {}),
        ("GET", f"/tenants/{tenant}/audit?pageSize=0", {}),
        ("DELETE", f"/tenants/{tenant}/devices/{uuid.uuid4()}", {}),
        ("GET", f"/tenants/{uuid.uuid4()}", {}),
        ("GET", "/tenants/nope", {}),
        ("DELETE", f"/tenants/{tenant}", {}),
    ]
    statuses = []
    request_id = None
    for method, path, kwargs in calls:
        response = admin.open(path, method=method, **kwargs)
        statuses.append(response.status_code)
        assert_conforms(method, path, response.status_code, response.headers["Content-Type"], response.data,
                        "manage_tenants")
        if method == "DELETE" and response.status_code == 202:
            request_id = response.get_json()["requestId"]
    response = admin.get(f"/receipts/{request_id}")
    assert_conforms("GET", f"/receipts/{request_id}", response.status_code, response.headers["Content-Type"],
                    response.data, "manage_tenants")
    assert statuses == [201, 409, 200, 200, 200, 201, 200, 200, 400, 404, 404, 400, 202]


def test_register_device_responses_conform(stack, admin):
    from tests import tokens
    from tests.conftest import make_client

    tenant = str(uuid.uuid4())
    admin.post("/tenants", json={"tenantId": tenant, "name": "Conformance GmbH"})
    app = make_client("register_device")
    auth = {"Authorization": f"Bearer {tokens.token(stack, tenant)}"}
    device = str(uuid.uuid4())
    calls = [
        ("POST", "/", {"json": {"deviceId": device}, "headers": auth}),
        ("POST", "/", {"json": {"deviceId": device}, "headers": auth}),
        ("POST", "/", {"json": {"deviceId": "x"}, "headers": auth}),
        ("POST", "/", {"json": {"deviceId": device}, "headers": {"Authorization": "Bearer x"}}),
        ("POST", f"/{device}/diagnostics", {"data": b"a,b\n", "content_type": "text/csv", "headers": auth}),
        ("POST", f"/{device}/diagnostics", {"data": b"a", "content_type": "image/png", "headers": auth}),
        ("DELETE", f"/{uuid.uuid4()}", {"headers": auth}),
        ("DELETE", f"/{device}", {"headers": auth}),
    ]
    statuses = []
    for method, path, kwargs in calls:
        response = app.open(path, method=method, **kwargs)
        statuses.append(response.status_code)
        assert_conforms(method, path, response.status_code, response.headers["Content-Type"], response.data,
                        "register_device")
    assert statuses == [201, 200, 400, 401, 201, 415, 404, 202]
