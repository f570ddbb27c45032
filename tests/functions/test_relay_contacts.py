"""relay_contacts through its real entry point, against the fake Graph over HTTPS and the emulators."""
from __future__ import annotations

import json
import re
import uuid

import pytest

from tests import support, tokens
from tests.conftest import make_client, registered_device
from tests.openapi_contract import assert_conforms

pytestmark = pytest.mark.fresh_directories

TENANT = "5b6c7d8e-9fa0-4b1c-8d2e-3f4a5b6c7d8e"
OTHER_TENANT = "6c7d8e9f-a0b1-4c2d-9e3f-4a5b6c7d8e9f"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
DIRECTORY_SIZE = 230


@pytest.fixture
def relay(emulators, fake, stack):
    admin = make_client("manage_tenants")
    for tenant_id in (TENANT, OTHER_TENANT):
        assert admin.post("/tenants", json={"tenantId": tenant_id, "name": "Contoso",
                                            "settings": {"defaultRegion": "DE"}}).status_code == 201
        fake.directory(tenant_id, DIRECTORY_SIZE)
    return make_client("relay_contacts")


@pytest.fixture
def device(stack, relay):
    return registered_device(stack, TENANT)


def sync(relay, headers, cursor=None, status=200):
    path = "/" + (f"?cursor={cursor}" if cursor is not None else "")
    response = relay.get(path, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert_conforms("GET", "/", response.status_code, response.headers["Content-Type"], response.data,
                    "relay_contacts")
    if status != 200:
        return response
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def in_default_scope(entry) -> bool:
    """Live, enabled and not a guest: the scope a tenant without `settings.scope` gets."""
    user = entry["user"]
    return user is not None and user["accountEnabled"] and user["userType"] == "Member"


def test_full_sync_streams_every_user_with_e164_numbers(stack, relay, device, fake):
    lines = sync(relay, device)
    assert lines[0] == {"op": "reset"} and lines[-1]["op"] == "end"
    upserts = {line["id"]: line for line in lines if line["op"] == "upsert"}
    live = [u for u in fake.users(TENANT) if in_default_scope(u)]
    assert 0 < len(live) < DIRECTORY_SIZE  # the synthetic directory has disabled and guest accounts
    assert set(upserts) == {u["user"]["id"] for u in live}
    numbers = kept = 0
    for user in live:
        line = upserts[user["user"]["id"]]
        assert set(line) == {"op", "id", "displayName", "givenName", "surname", "jobTitle", "department",
                             "companyName", "mail", "mobilePhone", "businessPhones", "officeLocation"}
        assert line["displayName"] == user["user"]["displayName"]
        assert line["mobilePhone"] is None or E164.match(line["mobilePhone"])
        assert all(E164.match(n) for n in line["businessPhones"])
        numbers += bool(user["user"].get("mobilePhone"))
        kept += line["mobilePhone"] is not None
    assert 0 < kept < numbers  # some numbers were valid, some invalid ones were left out
    stored = support.db().document(f"tenants/{TENANT}/devices/{device['X-Device-Id']}").get().to_dict()
    assert stored["lastSeenAt"] > stored["registeredAt"]


def test_incremental_sync_carries_changes_and_removals_only(stack, relay, device, fake):
    cursor = sync(relay, device)[-1]["cursor"]
    users = fake.users(TENANT)
    changed, removed = users[3]["user"]["id"], users[7]["user"]["id"]
    fake.changes(TENANT, update=[{"id": changed, "fields": {"jobTitle": "Chief Caller"}}],
                 remove=[{"id": removed, "reason": "deleted"}])
    lines = sync(relay, device, cursor)
    assert lines[0]["op"] != "reset" and lines[-1]["op"] == "end"
    body = [line for line in lines if line["op"] in ("upsert", "remove")]
    assert {"op": "remove", "id": removed} in body
    update = next(line for line in body if line.get("id") == changed)
    assert update["op"] == "upsert" and update["jobTitle"] == "Chief Caller"
    assert len(body) <= 4  # changes only, not the directory
    # Nothing changed since: an empty delta round still ends with a fresh cursor.
    again = sync(relay, device, lines[-1]["cursor"])
    assert [line["op"] for line in again] == ["end"]


def test_expired_delta_token_turns_into_full_sync(stack, relay, device, fake):
    cursor = sync(relay, device)[-1]["cursor"]
    fake.call("POST", f"tenants/{TENANT}/expire-delta-tokens")
    for mode in ("syncStateNotFound", "410"):
        fake.call("POST", "config", {"delta_expired_mode": mode})
        lines = sync(relay, device, cursor)
        assert lines[0] == {"op": "reset"} and lines[-1]["op"] == "end"
        assert sum(line["op"] == "upsert" for line in lines) >= DIRECTORY_SIZE - 30


def test_changed_settings_force_a_full_sync_with_only_allowed_fields(stack, relay, device, fake):
    cursor = sync(relay, device)[-1]["cursor"]
    admin = make_client("manage_tenants")
    assert admin.patch(f"/tenants/{TENANT}", json={"settings": {"fields": ["displayName", "mobilePhone"]}}
                       ).status_code == 200
    lines = sync(relay, device, cursor)
    assert lines[0] == {"op": "reset"}
    for line in lines:
        if line["op"] == "upsert":
            assert set(line) == {"op", "id", "displayName", "mobilePhone"}


def test_tampered_and_foreign_cursors(stack, relay, device, fake):
    cursor = sync(relay, device)[-1]["cursor"]
    payload, signature = cursor.rsplit(".", 1)
    sync(relay, device, payload[:-3] + ("AAA" if not payload.endswith("AAA") else "BBB") + "." + signature,
         status=400)
    sync(relay, device, payload + "." + signature[:-2] + "%C3%A9", status=400)  # non-ASCII signature
    sync(relay, device, "garbage", status=400)
    other_device = str(uuid.uuid4())
    other_access = tokens.token(stack, OTHER_TENANT)
    make_client("register_device").post("/", json={"deviceId": other_device},
                                        headers={"Authorization": f"Bearer {other_access}"})
    other = {"Authorization": f"Bearer {other_access}", "X-Device-Id": other_device}
    response = sync(relay, other, cursor, status=403)
    assert "cursor" in response.get_json()["detail"]


def test_unregistered_or_missing_device(stack, relay, device):
    before = support.world()
    sync(relay, {**device, "X-Device-Id": str(uuid.uuid4())}, status=403)
    sync(relay, {"Authorization": device["Authorization"]}, status=400)
    sync(relay, {**device, "X-Device-Id": "../../etc"}, status=400)
    sync(relay, {"X-Device-Id": device["X-Device-Id"]}, status=401)
    assert support.world() == before


def test_throttling_storm_is_ridden_out(stack, relay, device, fake):
    fake.faults({"target": "delta", "status": 429, "count": 6, "retry_after": "0.2"},
                {"target": "delta", "status": 503, "count": 2, "retry_after": 0.1, "skip": 8},
                {"target": "delta", "status": 504, "count": 1, "skip": 12})
    lines = sync(relay, device)
    assert lines[0] == {"op": "reset"} and lines[-1]["op"] == "end"
    assert sum(line["op"] == "upsert" for line in lines) == sum(map(in_default_scope, fake.users(TENANT)))
    assert fake.stats()["faults_injected"] >= 6


def test_graph_unavailable_before_the_first_byte_is_503_with_retry_after(stack, relay, device, fake):
    fake.faults({"target": "delta", "status": 429, "count": None, "retry_after": 120})
    response = sync(relay, device, status=503)
    assert int(response.headers["Retry-After"]) >= 120
    assert response.headers["Content-Type"] == "application/problem+json"


def test_mid_stream_failure_ends_with_error_and_no_end(stack, relay, device, fake):
    fake.directory(TENANT, 2500)
    fake.faults({"target": "delta", "status": 429, "count": None, "retry_after": 120, "pages": "next"})
    lines = sync(relay, device)
    assert lines[0] == {"op": "reset"}
    assert lines[-1] == {"op": "error", "code": "graph-unavailable", "retryable": True}
    assert not any(line["op"] == "end" for line in lines)
    fake.faults({"target": "delta", "status": 403, "count": None, "pages": "next",
                 "code": "Authorization_RequestDenied"})
    lines = sync(relay, device)
    assert lines[-1] == {"op": "error", "code": "graph-refused", "retryable": False}


def test_revoked_consent_is_502(stack, relay, fake):
    tenant = str(uuid.uuid4())  # a tenant this process has never fetched an app token for
    assert make_client("manage_tenants").post("/tenants", json={"tenantId": tenant, "name": "Gone"}
                                              ).status_code == 201
    access = tokens.token(stack, tenant)
    device_id = str(uuid.uuid4())
    make_client("register_device").post("/", json={"deviceId": device_id},
                                        headers={"Authorization": f"Bearer {access}"})
    fake.call("POST", f"tenants/{tenant}/revoke-consent")
    response = sync(relay, {"Authorization": f"Bearer {access}", "X-Device-Id": device_id}, status=502)
    assert response.get_json()["type"] == "/problems/graph-refused"


@pytest.mark.parametrize("accept, compressed", [("gzip", True), ("br, gzip;q=0.5", True), ("gzip;q=0", False),
                                                ("identity", False), (None, False)])
def test_the_stream_is_gzipped_when_the_app_accepts_it(stack, relay, device, fake, accept, compressed):
    """`Accept-Encoding: gzip` (what phones' HTTP stacks send): the same lines, about 5× fewer bytes, flushed
    page by page; without it, plain NDJSON. The cursor of either works for the next sync."""
    import gzip

    plain = sync(relay, device)
    headers = {**device, **({"Accept-Encoding": accept} if accept is not None else {})}
    response = relay.get("/", headers=headers)
    assert response.status_code == 200 and response.headers["Vary"] == "Accept-Encoding"
    assert response.headers["Content-Type"] == "application/x-ndjson"
    body = response.get_data()
    if compressed:
        assert response.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(body).decode()
        assert len(body) * 4 < len(text)
    else:
        assert "Content-Encoding" not in response.headers
        text = body.decode()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[:-1] == plain[:-1] and lines[-1]["op"] == "end"
    assert sync(relay, device, lines[-1]["cursor"])[-1]["op"] == "end"


def test_a_gzipped_stream_is_flushed_line_by_line_as_it_is_produced(stack, relay, device, fake):
    """The first compressed chunk already decompresses to whole lines (the `reset` line), so the app reads
    the stream as it comes, as without compression."""
    import zlib

    response = relay.get("/", headers={**device, "Accept-Encoding": "gzip"})
    chunks = iter(response.response)
    first = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(next(chunks))
    assert first == b'{"op":"reset"}\n'
    response.close()
