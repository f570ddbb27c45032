"""Plays the mobile app against the local stack: sign in, register, sync contacts, photos, diagnostics.

    .venv/bin/python -m local.demo_client --stack-file .local-stack/stack.json [--scope-demo-group]

`--scope-demo-group` first plays the operator: it creates a group "Demo Sales" (with a nested group) in
the fake directory and sets it as the tenant's `settings.scope` through manage_tenants, so the sync shows
only that group's members (and their photos).

The sign-in uses the resource-owner password grant of the fake Entra ID (the real app signs in
interactively); everything after that is exactly what the app sends.
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

import requests

from local.fake_microsoft.client import FakeMicrosoftClient, trusting_session


def sign_in(session: requests.Session, facts: dict, tenant_id: str) -> str:
    entra = facts["urls"]["entra"]
    demo = FakeMicrosoftClient(entra, facts["urls"]["ca"]).demo_user(tenant_id)
    response = session.post(f"{entra}/{tenant_id}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "password", "client_id": facts["clientId"], "username": demo["username"],
        "password": demo["password"], "scope": f"api://{facts['clientId']}/access_as_user"})
    response.raise_for_status()
    print(f"signed in as a demo user of tenant {tenant_id}")
    return response.json()["access_token"]


def sync(session: requests.Session, relay: str, headers: dict, cursor: str | None) -> tuple[list[dict], str | None]:
    params = {"cursor": cursor} if cursor else None
    with session.get(f"{relay}/", headers=headers, params=params, stream=True, timeout=120) as response:
        if response.status_code != 200:
            print(f"sync refused: {response.status_code} {response.text}")
            return [], None
        lines = [json.loads(line) for line in response.iter_lines() if line]
    if not lines or lines[-1]["op"] != "end":
        print("incomplete stream (no end line): discarded")
        return lines, None
    return lines, lines[-1]["cursor"]


def scope_to_demo_group(session: requests.Session, facts: dict, tenant_id: str) -> None:
    """The operator's part: a demo group in the fake directory, then the tenant's scope set to it."""
    fake = FakeMicrosoftClient(facts["urls"]["entra"], facts["urls"]["ca"])
    ids = [entry["user"]["id"] for entry in fake.users(tenant_id)
           if entry["user"] and entry["user"]["accountEnabled"] and entry["user"]["userType"] == "Member"]
    nested = fake.create_group(tenant_id, displayName="Demo Sales DACH", users=ids[20:30])
    group = fake.create_group(tenant_id, displayName="Demo Sales", users=ids[:15], groups=[nested], devices=2)
    answer = session.patch(f"{facts['urls']['manage_tenants']}/tenants/{tenant_id}",
                           json={"settings": {"scope": {"groups": [group]}, "photos": True}})
    print(f"scope set to the group {group} (25 members, 10 through a nested group): {answer.status_code}")


def photos(session: requests.Session, relay: str, headers: dict, contacts: list[dict]) -> None:
    etags = {}
    for contact in contacts[:5]:
        response = session.get(f"{relay}/photos/{contact['id']}", params={"size": "96x96"}, headers=headers)
        if response.status_code == 200:
            etags[contact["id"]] = response.headers["ETag"]
        print(f"  photo of {contact.get('displayName')!s:<28} {response.status_code} "
              f"{len(response.content) if response.status_code == 200 else ''} {response.headers.get('ETag', '')}")
    if etags:
        changes = session.post(f"{relay}/photos/changes", json={"etags": etags}, headers=headers)
        print(f"photo changes: {changes.status_code} {changes.text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-file", default=".local-stack/stack.json")
    parser.add_argument("--tenant", help="tenant ID (default: the demo tenant)")
    parser.add_argument("--scope-demo-group", action="store_true",
                        help="first scope the tenant to a demo group (operator's step, through manage_tenants)")
    args = parser.parse_args()
    facts = json.loads(Path(args.stack_file).read_text())
    tenant_id = args.tenant or facts["demoTenantId"]
    session = trusting_session(facts["urls"]["ca"])  # a machine-wide REQUESTS_CA_BUNDLE would override it
    if args.scope_demo_group:
        scope_to_demo_group(session, facts, tenant_id)
    token = sign_in(session, facts, tenant_id)
    auth = {"Authorization": f"Bearer {token}"}
    device_id = str(uuid.uuid4())
    registered = session.post(f"{facts['urls']['register_device']}/", json={"deviceId": device_id}, headers=auth)
    print(f"register device {device_id}: {registered.status_code} {registered.text}")
    if registered.status_code not in (200, 201):
        return 1
    headers = {**auth, "X-Device-Id": device_id}
    lines, cursor = sync(session, facts["urls"]["relay_contacts"], headers, None)
    contacts = [line for line in lines if line["op"] == "upsert"]
    print(f"full sync: {len(contacts)} contacts, first line {lines[0] if lines else None}")
    for contact in contacts[:3]:
        print(f"  {contact.get('displayName')!s:<28} mobile {contact.get('mobilePhone')!s:<16} "
              f"business {', '.join(contact.get('businessPhones') or [])}")
    photos(session, facts["urls"]["relay_contacts"], headers, contacts)
    again, _ = sync(session, facts["urls"]["relay_contacts"], headers, cursor)
    print(f"incremental sync: {len(again) - 1} changes since the full sync")
    upload = session.post(f"{facts['urls']['register_device']}/{device_id}/diagnostics",
                          data=json.dumps({"appVersion": "1.0.0", "contactsSynced": len(contacts)}),
                          headers={**auth, "Content-Type": "application/json"})
    print(f"diagnostics upload: {upload.status_code} {upload.text}")
    return 0 if cursor else 1


if __name__ == "__main__":
    sys.exit(main())
