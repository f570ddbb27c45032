"""register_device through its real entry point: tokens from the fake Entra ID, data in the emulators."""
from __future__ import annotations

import json
import time
import uuid
from datetime import UTC

import pytest

from local.stack import DELETION_TOPIC
from tests import support, tokens
from tests.conftest import make_client

TENANT = "7d6a9a1e-2b3c-4d5e-8f60-7a8b9c0d1e2f"
OTHER_TENANT = "9e8d7c6b-5a49-4382-9160-5f4e3d2c1b0a"


@pytest.fixture
def app(emulators):
    admin = make_client("manage_tenants")
    for tenant_id in (TENANT, OTHER_TENANT):
        assert admin.post("/tenants", json={"tenantId": tenant_id, "name": "Contoso"}).status_code == 201
    return make_client("register_device")


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def assert_problem(response, status: int, *secrets: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    text = response.get_data(as_text=True)
    for secret in secrets:
        assert secret not in text
    problem = json.loads(text)
    assert problem["status"] == status and problem["detail"]
    return problem


def test_register_is_idempotent_and_stores_only_timestamps(stack, app):
    access = tokens.token(stack, TENANT)
    device_id = str(uuid.uuid4())
    first = app.post("/", json={"deviceId": device_id}, headers=bearer(access))
    assert first.status_code == 201
    assert first.get_json()["deviceId"] == device_id
    again = app.post("/", json={"deviceId": device_id}, headers=bearer(access))
    assert again.status_code == 200 and again.get_json() == first.get_json()
    stored = support.db().document(f"tenants/{TENANT}/devices/{device_id}").get().to_dict()
    assert set(stored) == {"registeredAt", "lastSeenAt"}
    assert stored["lastSeenAt"] >= stored["registeredAt"]


def test_the_same_device_id_in_another_tenant_is_another_device(stack, app):
    device_id = str(uuid.uuid4())
    assert app.post("/", json={"deviceId": device_id}, headers=bearer(tokens.token(stack, TENANT))).status_code == 201
    other = bearer(tokens.token(stack, OTHER_TENANT))
    assert_problem(app.delete(f"/{device_id}", headers=other), 404)
    assert_problem(app.post(f"/{device_id}/diagnostics", data=b"{}", content_type="application/json",
                            headers=other), 404)
    assert app.post("/", json={"deviceId": device_id}, headers=other).status_code == 201


def test_unregister_publishes_device_delete_with_pending_receipt(stack, app):
    access = bearer(tokens.token(stack, TENANT))
    device_id = str(uuid.uuid4())
    app.post("/", json={"deviceId": device_id}, headers=access)
    tap = support.Tap(DELETION_TOPIC)
    try:
        response = app.delete(f"/{device_id}", headers=access)
        assert response.status_code == 202
        request_id = response.get_json()["requestId"]
        assert {"type": "device.delete", "tenantId": TENANT, "deviceId": device_id,
                "requestId": request_id} in tap.pull(1)
        receipt = support.db().document(f"deletionReceipts/{request_id}").get().to_dict()
        assert receipt["kind"] == "device" and device_id not in json.dumps(receipt, default=str)
    finally:
        tap.close()


@pytest.mark.parametrize("body, content_type, fmt", [
    (b'{"app":"1.2.3","events":[1,2,3]}', "application/json", "json"),
    (b"<diagnostics><event code='7'/></diagnostics>", "application/xml", "xml"),
    (b"time,event\n2026-11-25T10:00:00Z,start\n", "text/csv", "csv"),
])
def test_diagnostics_are_stored_as_device_files(stack, app, body, content_type, fmt):
    access = bearer(tokens.token(stack, TENANT))
    device_id = str(uuid.uuid4())
    app.post("/", json={"deviceId": device_id}, headers=access)
    response = app.post(f"/{device_id}/diagnostics", data=body, content_type=content_type, headers=access)
    assert response.status_code == 201, response.get_data(as_text=True)
    file_id = response.get_json()["fileId"]
    manifest = support.db().document(f"tenants/{TENANT}/files/{file_id}").get().to_dict()
    assert manifest["owner"] == "device" and manifest["deviceId"] == device_id and manifest["format"] == fmt
    assert manifest["objectName"] == f"tenants/{TENANT}/devices/{device_id}/{file_id}.{fmt}"
    days = (manifest["deleteAfter"] - manifest["createdAt"]).days
    assert days == 30
    blob = support.bucket().get_blob(manifest["objectName"])
    assert blob.download_as_bytes() == body and blob.metadata["owner"] == "device"


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  b"<lolz>&lol3;</lolz>")
EXTERNAL_ENTITY = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                   b"<d>&xxe;</d>")


def _token_cases(stack):
    now = int(time.time())
    c = lambda **o: tokens.claims(stack, TENANT, **o)  # noqa: E731 - short alias for the table below
    deleting = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    unknown = "2b3c4d5e-6f70-4b8c-9d0e-1f2a3b4c5d6e"
    return {
        "expired": (tokens.mint(stack, c(exp=now - 3600, iat=now - 7200, nbf=now - 7200)), 401),
        "not yet valid": (tokens.mint(stack, c(nbf=now + 3600)), 401),
        "missing exp": (tokens.mint(stack, c(exp=None)), 401),
        "wrong aud": (tokens.mint(stack, c(aud="00000003-0000-0000-c000-000000000000")), 401),
        "v1 issuer": (tokens.mint(stack, c(iss=f"https://sts.windows.net/{TENANT}/", ver="1.0")), 401),
        "iss/tid mismatch": (tokens.mint(stack, c(iss=f"{stack.urls['entra']}/{OTHER_TENANT}/v2.0")), 401),
        "tid not a GUID": (tokens.mint(stack, c(tid="contoso", iss=f"{stack.urls['entra']}/contoso/v2.0")), 401),
        "unknown kid": (tokens.unknown_kid(stack, c()), 401),
        "alg none": (tokens.unsigned(c(), "any"), 401),
        "HS256 with the public key": (tokens.hs256_with_public_key(stack, c()), 401),
        "outside key": (tokens.signed_by_outside_key(stack, c()), 401),
        "missing scope": (tokens.mint(stack, c(scp=None)), 403),
        "wrong scope": (tokens.mint(stack, c(scp="User.Read")), 403),
        "unknown tenant": (tokens.mint(stack, tokens.claims(stack, unknown)), 403),
        "tenant deleting": (tokens.mint(stack, tokens.claims(stack, deleting)), 403),
        "oversized": ("e" * 9000, 401),
        "garbage": ("not.a.token", 401),
    }


def test_bad_tokens_are_refused_without_echo_and_write_nothing(stack, app, log_lines):
    admin = make_client("manage_tenants")
    deleting = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    admin.post("/tenants", json={"tenantId": deleting, "name": "Leaving"})
    assert admin.delete(f"/tenants/{deleting}").status_code == 202
    cases = _token_cases(stack)
    before = support.world()
    seen_reasons = set()
    for _name, (access, status) in cases.items():
        device_id = str(uuid.uuid4())
        for method, path, kwargs in (("POST", "/", {"json": {"deviceId": device_id}}),
                                     ("DELETE", f"/{device_id}", {}),
                                     ("POST", f"/{device_id}/diagnostics",
                                      {"data": b"{}", "content_type": "application/json"})):
            response = app.open(path, method=method, headers=bearer(access), **kwargs)
            problem = assert_problem(response, status, access, *tokens.USER_CLAIMS.values())
            seen_reasons.add(problem["type"])
    assert support.world() == before
    assert len(seen_reasons) >= 8  # each kind of refusal names its reason
    for line in log_lines:
        for value in tokens.USER_CLAIMS.values():
            assert value not in line


@pytest.mark.parametrize("header", ["", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "bearer"])
def test_malformed_authorization_header(stack, app, header):
    before = support.world()
    assert_problem(app.post("/", json={"deviceId": str(uuid.uuid4())}, headers={"Authorization": header}), 401)
    assert support.world() == before


def test_bad_bodies_are_refused_and_write_nothing(stack, app):
    access = bearer(tokens.token(stack, TENANT))
    device_id = str(uuid.uuid4())
    app.post("/", json={"deviceId": device_id}, headers=access)
    foreign_device = str(uuid.uuid4())
    other = bearer(tokens.token(stack, OTHER_TENANT))
    app.post("/", json={"deviceId": foreign_device}, headers=other)
    before = support.world()
    cases = [
        ("POST", "/", {"data": "{not json", "content_type": "application/json"}, 400),
        ("POST", "/", {"json": {"deviceId": "1234"}}, 400),
        ("POST", "/", {"json": {"deviceId": device_id.upper()}}, 400),
        ("POST", "/", {"json": {"deviceId": device_id, "owner": "x"}}, 400),
        ("POST", "/", {"json": {}}, 400),
        ("POST", "/", {"data": json.dumps({"deviceId": device_id}), "content_type": "text/plain"}, 415),
        ("POST", "/", {"data": json.dumps({"deviceId": device_id, "p": "x" * 5000}),
                       "content_type": "application/json"}, 413),
        ("DELETE", "/not-a-uuid", {}, 400),
        ("DELETE", f"/{foreign_device}", {}, 404),
        ("GET", "/", {}, 405),
        ("POST", f"/{device_id}/diagnostics", {"data": b"{", "content_type": "application/json"}, 400),
        ("POST", f"/{device_id}/diagnostics", {"data": b"<a><b></a>", "content_type": "application/xml"}, 400),
        ("POST", f"/{device_id}/diagnostics", {"data": BILLION_LAUGHS, "content_type": "application/xml"}, 400),
        ("POST", f"/{device_id}/diagnostics", {"data": EXTERNAL_ENTITY, "content_type": "application/xml"}, 400),
        ("POST", f"/{device_id}/diagnostics", {"data": b"a,b\n1,2,3\n", "content_type": "text/csv"}, 400),
        ("POST", f"/{device_id}/diagnostics", {"data": b"\xff\xfe", "content_type": "text/csv"}, 400),
        ("POST", f"/{device_id}/diagnostics", {"data": b"x", "content_type": "application/pdf"}, 415),
        ("POST", f"/{device_id}/diagnostics", {"data": b"[" + b"1," * 600000 + b"1]",
                                               "content_type": "application/json"}, 413),
        ("POST", f"/{foreign_device}/diagnostics", {"data": b"{}", "content_type": "application/json"}, 404),
        ("POST", f"/{uuid.uuid4()}/diagnostics", {"data": b"{}", "content_type": "application/json"}, 404),
    ]
    for method, path, kwargs, status in cases:
        response = app.open(path, method=method, headers=access, **kwargs)
        assert_problem(response, status)
    assert support.world() == before


@pytest.fixture
def rewired(monkeypatch):
    """Rewires register_device with the given settings (read once at wiring; rebuilt after the test).
    Each rewiring is a new instance: nothing kept in the old one's memory carries over."""
    from functions.register_device.handler import validator_and_service

    def rewire(**settings: int) -> None:
        for name, value in settings.items():
            monkeypatch.setenv(name, str(value))
        validator_and_service.reset()

    yield rewire
    monkeypatch.undo()
    validator_and_service.reset()


@pytest.fixture
def small_quota(rewired):
    rewired(MAX_DEVICES_PER_TENANT=3)
    return 3


def test_device_quota_answers_429(stack, emulators, small_quota):
    admin = make_client("manage_tenants")
    admin.post("/tenants", json={"tenantId": TENANT, "name": "Small"})
    app = make_client("register_device")
    access = bearer(tokens.token(stack, TENANT))
    for _ in range(small_quota):
        assert app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=access).status_code == 201
    before = support.world()
    assert_problem(app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=access), 429)
    assert support.world() == before


def test_deeply_nested_json_is_400_and_stores_nothing(stack, app):
    access = bearer(tokens.token(stack, TENANT))
    nested = b"[" * 1990 + b"]" * 1990  # fits in the 4 KiB body limit; json.loads recurses per level
    device_id = str(uuid.uuid4())
    assert app.post("/", json={"deviceId": device_id}, headers=access).status_code == 201
    before = support.world()
    response = app.post("/", data=nested, content_type="application/json", headers=access)
    assert_problem(response, 400)
    assert response.get_json()["type"] == "/problems/malformed-json"
    response = app.post(f"/{device_id}/diagnostics", data=nested, content_type="application/json", headers=access)
    assert_problem(response, 400)
    assert support.world() == before


def _not_near_a_minute_boundary() -> None:
    """The tenant's window is the UTC minute: start a window test with at least 15 s of it left."""
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)


def test_new_devices_per_tenant_per_minute_are_limited_across_instances(stack, app, rewired):
    rewired(DEVICE_REGISTRATIONS_PER_TENANT_PER_MINUTE=3)
    _not_near_a_minute_boundary()
    access = bearer(tokens.token(stack, TENANT))
    known = []
    for _ in range(2):
        known.append(str(uuid.uuid4()))
        assert app.post("/", json={"deviceId": known[-1]}, headers=access).status_code == 201
    rewired()  # another instance: the count lives in Firestore, not in the instance
    assert app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=access).status_code == 201
    before = support.world()
    refused = app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=access)
    assert assert_problem(refused, 429)["type"] == "/problems/registration-rate"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert support.world() == before
    # Refreshing a registered device is never limited; another tenant has its own window.
    assert app.post("/", json={"deviceId": known[0]}, headers=access).status_code == 200
    other = bearer(tokens.token(stack, OTHER_TENANT))
    assert app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=other).status_code == 201
    windows = list(support.db().collection(f"tenants/{TENANT}/rateWindows").stream())
    assert len(windows) == 1 and windows[0].get("count") == 3
    assert set(windows[0].to_dict()) == {"count", "expiresAt"}
    assert windows[0].id == time.strftime("%Y%m%d%H%M", time.gmtime())


def test_one_user_cannot_take_the_tenants_devices_and_nothing_about_users_is_stored(stack, app, rewired):
    rewired(DEVICE_REGISTRATIONS_PER_USER_PER_10_MINUTES=2)
    insider = bearer(tokens.token(stack, TENANT))
    for _ in range(2):
        assert app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=insider).status_code == 201
    before = support.world()
    refused = app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=insider)
    problem = assert_problem(refused, 429, *tokens.USER_CLAIMS.values())
    assert problem["type"] == "/problems/registration-rate"
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert support.world() == before
    colleague = bearer(tokens.token(stack, TENANT, oid=str(uuid.uuid4())))
    assert app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=colleague).status_code == 201
    stored = repr(support.world())
    assert tokens.USER_CLAIMS["oid"] not in stored


def test_diagnostics_uploads_per_device_per_day_are_limited_and_refusals_use_no_slot(stack, app, rewired):
    rewired(DIAGNOSTICS_PER_DEVICE_PER_DAY=2)
    access = bearer(tokens.token(stack, TENANT))
    device_id, other_device = str(uuid.uuid4()), str(uuid.uuid4())
    for registered in (device_id, other_device):
        assert app.post("/", json={"deviceId": registered}, headers=access).status_code == 201

    def upload(target: str, data: bytes = b'{"event": 7}'):
        return app.post(f"/{target}/diagnostics", data=data, content_type="application/json", headers=access)

    assert_problem(upload(device_id, b'{"broken'), 400)  # refused: uses no slot
    assert upload(device_id).status_code == 201
    assert upload(device_id).status_code == 201
    before = support.world()
    refused = upload(device_id)
    assert assert_problem(refused, 429)["type"] == "/problems/diagnostics-rate"
    assert 1 <= int(refused.headers["Retry-After"]) <= 86400
    assert support.world() == before
    assert upload(other_device).status_code == 201  # each device has its own slots
    stored = support.db().document(f"tenants/{TENANT}/devices/{device_id}").get().to_dict()
    assert stored["diagnosticsCount"] == 2
    assert stored["diagnosticsDay"] == time.strftime("%Y-%m-%d", time.gmtime())


def test_diagnostics_slots_are_per_utc_day_and_given_back(stack, emulators):
    from datetime import datetime

    from shared.errors import TooManyRequests
    from shared.store.repositories import DeviceRepository, TenantRepository

    now = datetime.now(UTC)
    TenantRepository(support.db()).create(TENANT, "Contoso", {"fields": ["displayName"]}, now)
    devices = DeviceRepository(support.db())
    device_id = str(uuid.uuid4())
    devices.register(TENANT, device_id, now, 10)
    for _ in range(2):
        devices.reserve_diagnostics(TENANT, device_id, "2026-12-01", 2, retry_after=60)
    with pytest.raises(TooManyRequests):
        devices.reserve_diagnostics(TENANT, device_id, "2026-12-01", 2, retry_after=60)
    devices.release_diagnostics(TENANT, device_id, "2026-12-01")
    devices.reserve_diagnostics(TENANT, device_id, "2026-12-01", 2, retry_after=60)  # the slot came back
    devices.reserve_diagnostics(TENANT, device_id, "2026-12-02", 2, retry_after=60)  # a new day starts at 0
    stored = support.db().document(f"tenants/{TENANT}/devices/{device_id}").get().to_dict()
    assert (stored["diagnosticsDay"], stored["diagnosticsCount"]) == ("2026-12-02", 1)
    devices.release_diagnostics(TENANT, device_id, "2026-12-01")  # yesterday's slot: nothing to give back
    assert support.db().document(f"tenants/{TENANT}/devices/{device_id}").get().get("diagnosticsCount") == 1


def test_any_user_of_the_tenant_who_knows_a_device_id_can_act_for_that_device(stack, app):
    """By design (docs/security.md): a device ID is a random secret of the app, not linked to a person, so
    the backend cannot tell whose phone it is; knowing it is what lets a user act for the device."""
    device_id = str(uuid.uuid4())
    owner = bearer(tokens.token(stack, TENANT))
    colleague = bearer(tokens.token(stack, TENANT, oid=str(uuid.uuid4())))
    assert app.post("/", json={"deviceId": device_id}, headers=owner).status_code == 201
    assert app.post(f"/{device_id}/diagnostics", data=b"{}", content_type="application/json",
                    headers=colleague).status_code == 201
    assert app.delete(f"/{device_id}", headers=colleague).status_code == 202
