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
from tests.fake_ms import FakeMicrosoftControl

TENANT = "8e9fa0b1-c2d3-4e4f-8a5b-6c7d8e9fa0b1"
FUNCTION_LOGS = ("register_device", "relay_contacts", "manage_tenants", "handle_deletion", "sweep_retention",
                 "tenant_portal")


def _directory_values(fake: FakeMicrosoftControl) -> set[str]:
    values: set[str] = set()
    for entry in fake.users(TENANT):
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
    fake.directory(TENANT, 400)
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
    assert lines[-1]["op"] == "end" and sum(line["op"] == "upsert" for line in lines) >= 380
    users = fake.users(TENANT)
    fake.changes(TENANT, update=[{"id": users[1]["user"]["id"], "fields": {"mobilePhone": "+49 170 1234567"}}],
                 remove=[{"id": users[2]["user"]["id"]}])
    second = requests.get(f"{relay}/", params={"cursor": lines[-1]["cursor"]},
                          headers={**auth, "X-Device-Id": device_id})
    assert second.text.splitlines()[-1].startswith('{"op":"end"')
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

    secrets = _directory_values(fake) | {"+491701234567", "491701234567"} | set(tokens.USER_CLAIMS.values())
    secrets |= codes | user_ids | {onboarding["login"]}
    secrets |= {access, expired, stack.env["ENTRA_CLIENT_SECRET"], stack.env["CURSOR_KEY"], stack.env["RECEIPT_KEY"],
                stack.env["PORTAL_SESSION_KEY"]}
    assert len(secrets) > 400

    stored = json.dumps(support.firestore_snapshot(), default=str)
    objects = support.bucket_snapshot()
    object_text = " ".join(f"{name} {content!r} {metadata}" for name, (content, metadata) in objects.items())
    logs = ""
    for name, offset in log_offsets.items():
        with open(stack.state_dir / f"{name}.log", "rb") as handle:
            handle.seek(offset)
            logs += handle.read().decode(errors="replace")
    assert "sync streamed" in logs  # the relay process did log, so the scan is not vacuous
    assert '"function": "tenant_portal"' in logs and "settings saved" in logs  # so did the portal
    assert '"reason": "onboarded"' in logs  # and onboarding
    for secret in secrets:
        assert secret not in stored, "a directory value or token reached Firestore"
        assert secret not in object_text, "a directory value or token reached Storage"
        assert secret not in logs, "a directory value or token reached a log line"
