"""A request body shorter than its Content-Length (a client that stopped sending) is a `400` problem+json
`truncated-body` in every HTTP function that reads bodies, through the real entry points, and changes
nothing. It was functions-framework's `500`: after the function returned, its `after_request` hook reads
the rest of the body, werkzeug raises `ClientDisconnected` there, and Flask turns an exception raised while
finishing a response into an internal server error. shared/http.py now reads the rest itself and, when it
is missing, sends the answer without the framework's read (as the portal did)."""
from __future__ import annotations

import io
import json
import uuid

import pytest

from tests import portal, support, tokens
from tests.conftest import make_client, registered_device


def truncated(client, method: str, path: str, sent: bytes, content_type: str = "application/json", **headers):
    """`sent`, announced as 40 bytes longer than it is."""
    return client.open(path, method=method, input_stream=io.BytesIO(sent), content_type=content_type,
                       headers=headers, environ_overrides={"CONTENT_LENGTH": str(len(sent) + 40)})


def assert_truncated(answer, log_lines, function: str) -> None:
    assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert answer.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(answer.get_data(as_text=True))
    assert problem["status"] == 400 and problem["type"].endswith("truncated-body"), problem
    refused = [line for line in map(json.loads, log_lines) if line.get("message") == "request refused"]
    assert refused[-1]["function"] == function and refused[-1]["reason"] == "truncated-body", refused[-1]
    assert not [line for line in map(json.loads, log_lines) if line.get("severity") == "ERROR"]


@pytest.fixture
def tenant(emulators):
    return portal.onboard(emulators, name="Fabrikam AG")


def test_register_device_refuses_a_truncated_body(stack, emulators, tenant, log_lines):
    client = make_client("register_device")
    access = {"Authorization": f"Bearer {tokens.token(stack, tenant)}"}
    before = support.firestore_snapshot()
    sent = json.dumps({"deviceId": str(uuid.uuid4())}).encode()
    assert_truncated(truncated(client, "POST", "/", sent, **access), log_lines, "register_device")
    device = registered_device(stack, tenant)
    before = support.firestore_snapshot()
    assert_truncated(truncated(client, "POST", f"/{device['X-Device-Id']}/diagnostics", b'{"log": 1}',
                               **device), log_lines, "register_device")
    assert support.firestore_snapshot() == before


def test_manage_tenants_refuses_a_truncated_body(emulators, tenant, log_lines):
    client = make_client("manage_tenants")
    before = support.firestore_snapshot()
    sent = json.dumps({"tenantId": str(uuid.uuid4()), "name": "Contoso"}).encode()
    assert_truncated(truncated(client, "POST", "/tenants", sent), log_lines, "manage_tenants")
    assert_truncated(truncated(client, "PATCH", f"/tenants/{tenant}", b'{"name": "Renamed"}'), log_lines,
                     "manage_tenants")
    assert_truncated(truncated(client, "POST", f"/tenants/{tenant}/files?retentionDays=7", b'{"a": 1}'), log_lines,
                     "manage_tenants")
    assert support.firestore_snapshot() == before


def test_relay_contacts_refuses_a_truncated_body(stack, emulators, tenant, log_lines):
    device = registered_device(stack, tenant)
    before = support.firestore_snapshot()
    answer = truncated(make_client("relay_contacts"), "POST", "/photos/changes", b'{"etags": {}}', **device)
    assert_truncated(answer, log_lines, "relay_contacts")
    assert support.firestore_snapshot() == before


def test_a_truncated_body_a_route_does_not_read_is_no_500(stack, emulators, tenant, log_lines):
    """A route that reads no body answers as it would; the framework's read of the rest no longer fails."""
    answer = truncated(make_client("manage_tenants"), "GET", f"/tenants/{tenant}", b"{}")
    assert answer.status_code == 200 and answer.get_json()["tenantId"] == tenant
