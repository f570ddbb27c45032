"""The privacy promise, checked end to end on the processes of the local stack.

After registering devices, syncing a directory of known values (full and incremental), uploading
diagnostics and refusing bad tokens, not one name, number, address or user claim may appear in any
log line of any function (all levels), any Firestore document, or any Storage object.
"""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from shared.phones import to_e164
from tests import portal, support, tokens
from tests.e2e.processes import Processes
from tests.fake_ms import FakeMicrosoftControl

TENANT = "8e9fa0b1-c2d3-4e4f-8a5b-6c7d8e9fa0b1"
SECOND_TENANT = "8e9fa0b1-c2d3-4e4f-8a5b-6c7d8e9fa0b2"
FUNCTION_LOGS = ("register_device", "relay_contacts", "manage_tenants", "handle_deletion", "sweep_retention",
                 "tenant_portal")


def _directory_values(fake: FakeMicrosoftControl, tenant_id: str = TENANT) -> set[str]:
    values: set[str] = set()
    for entry in fake.users(tenant_id):
        user = entry["user"] or {}
        for field in ("displayName", "mail", "userPrincipalName", "mobilePhone"):
            value = user.get(field)
            if isinstance(value, str) and len(value) >= 6:
                values.add(value)
        for field in ("givenName", "surname"):
            value = user.get(field)
            if isinstance(value, str) and len(value) >= 7:  # short names occur in ordinary words
                values.add(value)
        for raw in [user.get("mobilePhone")] + list(user.get("businessPhones") or []):
            normalised = to_e164(raw, "DE")
            if normalised:
                values.add(normalised)
                values.add(normalised[1:])
    return values


@pytest.mark.e2e
def test_no_contact_value_or_user_claim_is_stored_or_logged(stack, emulators):
    fake = FakeMicrosoftControl(stack)
    fake.reset()
    fake.directory(TENANT, 2500)  # three Graph pages: phones can join a round mid-way
    log_offsets = {name: (stack.state_dir / f"{name}.log").stat().st_size
                   for name in FUNCTION_LOGS if (stack.state_dir / f"{name}.log").exists()}
    admin, devices, relay = (stack.urls[n] for n in ("manage_tenants", "register_device", "relay_contacts"))
    assert requests.post(f"{admin}/tenants", json={"tenantId": TENANT, "name": "Privacy Probe AG",
                                                   "settings": {"defaultRegion": "DE"}}).status_code == 201
    access = tokens.token(stack, TENANT)
    auth = {"Authorization": f"Bearer {access}"}
    device_id = str(uuid.uuid4())
    assert requests.post(f"{devices}/", json={"deviceId": device_id}, headers=auth).status_code == 201
    assert requests.post(f"{devices}/{device_id}/diagnostics", data=b'{"sync":"ok"}', headers={
        **auth, "Content-Type": "application/json"}).status_code == 201
    first = requests.get(f"{relay}/", headers={**auth, "X-Device-Id": device_id})
    lines = [json.loads(line) for line in first.text.splitlines()]
    assert lines[-1]["op"] == "end" and sum(line["op"] == "upsert" for line in lines) >= 350  # default scope
    users = fake.users(TENANT)
    fake.changes(TENANT, update=[{"id": users[1]["user"]["id"], "fields": {"mobilePhone": "+49 170 1234567"}}],
                 remove=[{"id": users[2]["user"]["id"]}])
    second = requests.get(f"{relay}/", params={"cursor": lines[-1]["cursor"]},
                          headers={**auth, "X-Device-Id": device_id})
    assert second.text.splitlines()[-1].startswith('{"op":"end"')
    # Shared rounds: phones of two tenants sync at once (pages slowed down so they join running rounds,
    # mid-round too); each gets exactly its own tenant's directory, and nothing of a round outlives it.
    processes = Processes(stack)
    assert requests.post(f"{admin}/tenants", json={"tenantId": SECOND_TENANT, "name": "Privacy Probe Zwei AG",
                                                   "settings": {"defaultRegion": "DE"}}).status_code == 201
    fake.directory(SECOND_TENANT, 2500)
    phones = [(tenant_id, processes.register(tenant_id)) for _ in range(3) for tenant_id in (TENANT, SECOND_TENANT)]
    fake.configure(page_delay_seconds=0.2)
    try:
        together = processes.sync_together(phones)
    finally:
        fake.configure(page_delay_seconds=0.0)
    in_scope = {tenant_id: {e["user"]["id"] for e in fake.users(tenant_id) if e["user"] and e["user"]["accountEnabled"]
                            and e["user"]["userType"] == "Member"} for tenant_id in (TENANT, SECOND_TENANT)}
    for (tenant_id, _), synced in zip(phones, together, strict=True):
        assert synced[0] == {"op": "reset"} and synced[-1]["op"] == "end"
        assert {line["id"] for line in synced if line["op"] == "upsert"} == in_scope[tenant_id]
    # A refused token carrying user claims, and a mid-stream failure, must not leak either.
    expired = tokens.token(stack, TENANT, exp=1, nbf=0, iat=0)
    refused = requests.post(f"{devices}/", json={"deviceId": device_id}, headers={"Authorization": f"Bearer {expired}"})
    assert refused.status_code == 401

    # The portal: an administrator and a plain user of the tenant sign in (their names, userPrincipalNames
    # and object IDs are directory values), look around, change a setting and sign out.
    codes = set()
    for role in ("admin", "user"):
        visitor = portal.PortalVisitor(stack)
        answer, code = visitor.sign_in(portal.accounts(stack, TENANT)[role])
        assert answer.status_code == 303
        codes.add(code)
        for path in ("/", "/devices", "/settings", "/receipts", "/deletion"):
            assert visitor.request("GET", path).status_code == (200 if role == "admin" else 403)
        if role == "admin":
            csrf = portal.csrf_of(visitor.request("GET", "/settings").text)
            assert visitor.request("POST", "/settings", data={"csrf": csrf, "name": "Privacy Probe AG",
                                                              "fields": ["displayName", "mobilePhone"],
                                                              "defaultRegion": "DE"}).status_code == 303
        assert visitor.request("POST", "/signout", data={"csrf": portal.csrf_of(
            visitor.request("GET", "/").text)}).status_code == 303
    # A new customer onboards itself through the portal and the fake consent page.
    _, onboarding = portal.onboard_through_portal(stack, "Privacy Newcomer AG")
    codes |= {onboarding["code"], onboarding["state"]}
    user_ids = {entry["user"]["id"] for entry in users if entry["user"]}

    secrets = _directory_values(fake) | _directory_values(fake, SECOND_TENANT) | {"+491701234567", "491701234567"}
    secrets |= set(tokens.USER_CLAIMS.values())
    secrets |= codes | user_ids | {onboarding["login"]}
    secrets |= {access, expired, stack.env["ENTRA_CLIENT_SECRET"], stack.env["CURSOR_KEY"], stack.env["RECEIPT_KEY"],
                stack.env["PORTAL_SESSION_KEY"]}
    assert len(secrets) > 5000

    snapshot = support.firestore_snapshot()
    stored = json.dumps(snapshot, default=str)
    # The audit trail is in the scan (so it is not vacuous for it): the admin's sign-in and settings change.
    audited = {d["action"] for p, d in snapshot.items() if p.startswith(f"tenants/{TENANT}/auditEvents/")}
    assert {"tenant.onboard", "portal.signin", "settings.update"} <= audited
    objects = support.bucket_snapshot()
    object_text = " ".join(f"{name} {content!r} {metadata}" for name, (content, metadata) in objects.items())
    logs = ""
    for name, offset in log_offsets.items():
        with open(stack.state_dir / f"{name}.log", "rb") as handle:
            handle.seek(offset)
            logs += handle.read().decode(errors="replace")
    assert "sync streamed" in logs  # the relay process did log, so the scan is not vacuous
    rounds = [json.loads(line) for line in logs.splitlines() if '"round streamed"' in line]
    for tenant_id in (TENANT, SECOND_TENANT):  # the phones did share rounds
        assert any(r["tenantId"] == tenant_id and r["listeners"] >= 2 for r in rounds), rounds
    assert '"function": "tenant_portal"' in logs and "settings saved" in logs  # so did the portal
    assert '"reason": "onboarded"' in logs  # and onboarding
    for secret in secrets:
        assert secret not in stored, "a directory value or token reached Firestore"
        assert secret not in object_text, "a directory value or token reached Storage"
        assert secret not in logs, "a directory value or token reached a log line"


SCOPED_TENANT = "a0b1c2d3-e4f5-4a6b-8c7d-8e9fa0b1c2d3"
GROUP_NAMES = ("Geheimprojekt Falkenstein", "Vorstandsbüro Nordwest")


def _byte_forms(data: bytes) -> set[str]:
    """Ways a photo's bytes could show up in text: raw (latin-1), hex and base64 of slices."""
    import base64

    forms = set()
    for start in range(20, len(data) - 24, max(1, (len(data) - 44) // 8)):
        piece = data[start:start + 18]
        forms |= {piece.decode("latin-1"), piece.hex(), base64.b64encode(piece).decode(),
                  base64.urlsafe_b64encode(piece).decode()}
    return forms


@pytest.mark.e2e
def test_no_photo_byte_group_name_or_membership_is_stored_or_logged(stack, emulators):
    fake = FakeMicrosoftControl(stack)
    fake.reset()
    fake.directory(SCOPED_TENANT, 120)
    entries = fake.users(SCOPED_TENANT)
    member_ids = [e["user"]["id"] for e in entries if e["user"]["accountEnabled"] and e["user"]["userType"] == "Member"]
    nested = fake.create_group(SCOPED_TENANT, displayName=GROUP_NAMES[1], users=member_ids[20:30])
    group = fake.create_group(SCOPED_TENANT, displayName=GROUP_NAMES[0], users=member_ids[:25], groups=[nested])
    pictured = member_ids[4:10]
    fake.photos(SCOPED_TENANT, set=[{"user": u, "largest": 240} for u in pictured])
    log_offsets = {name: (stack.state_dir / f"{name}.log").stat().st_size
                   for name in FUNCTION_LOGS if (stack.state_dir / f"{name}.log").exists()}
    admin, devices, relay = (stack.urls[n] for n in ("manage_tenants", "register_device", "relay_contacts"))
    assert requests.post(f"{admin}/tenants", json={"tenantId": SCOPED_TENANT, "name": "Scope Probe AG", "settings": {
        "defaultRegion": "DE", "scope": {"groups": [group], "requirePhone": False}}}).status_code == 201
    access = tokens.token(stack, SCOPED_TENANT)
    device_id = str(uuid.uuid4())
    auth = {"Authorization": f"Bearer {access}", "X-Device-Id": device_id}
    assert requests.post(f"{devices}/", json={"deviceId": device_id}, headers=auth).status_code == 201
    first = [json.loads(line) for line in requests.get(f"{relay}/", headers=auth).text.splitlines()]
    assert first[-1]["op"] == "end" and {line["id"] for line in first if line["op"] == "upsert"} == set(member_ids[:30])
    fake.group_members(SCOPED_TENANT, nested, add={"users": [member_ids[40]]}, remove={"users": [member_ids[21]]})
    fake.group_members(SCOPED_TENANT, group, remove={"users": [member_ids[3]]})
    second = requests.get(f"{relay}/", params={"cursor": first[-1]["cursor"]}, headers=auth).text
    assert member_ids[40] in second and second.splitlines()[-1].startswith('{"op":"end"')
    photos, etags = [], {}
    for user_id in pictured:
        response = requests.get(f"{relay}/photos/{user_id}", params={"size": "120x120"}, headers=auth)
        assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"
        photos.append(response.content)
        etags[user_id] = response.headers["ETag"]
        assert requests.get(f"{relay}/photos/{user_id}", headers={**auth, "If-None-Match": etags[user_id]}
                            ).status_code == 304
    changed = requests.post(f"{relay}/photos/changes", json={"etags": etags}, headers=auth)
    assert changed.status_code == 200 and changed.json() == {"changed": [], "gone": []}

    secrets = set(GROUP_NAMES) | set(member_ids) | set(etags.values())
    secrets |= {fake.photo(SCOPED_TENANT, u)["mediaEtag"].strip('"') for u in pictured}
    for photo in photos:
        secrets |= _byte_forms(photo)
    stored = json.dumps(support.firestore_snapshot(), default=str)
    assert group in stored  # the scope's group IDs are settings (data model); who is in them is not
    objects = support.bucket_snapshot()
    object_text = " ".join(f"{name} {content.decode('latin-1')} {metadata}" for name, (content, metadata)
                           in objects.items())
    logs = ""
    for name, offset in log_offsets.items():
        with open(stack.state_dir / f"{name}.log", "rb") as handle:
            handle.seek(offset)
            logs += handle.read().decode("latin-1")
    assert "sync streamed" in logs and '"route": "/photos/' in logs  # the scan is not vacuous
    for secret in secrets:
        assert secret not in stored, "a photo byte, group name or member reached Firestore"
        assert secret not in object_text, "a photo byte, group name or member reached Storage"
        assert secret not in logs, "a photo byte, group name or member reached a log line"
