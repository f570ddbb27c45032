"""After an end-to-end run through the processes (onboarding by operators and self-service through the
portal's admin consent, settings, files, devices, diagnostics,
revocation, unregistration, a retention sweep, a tenant deletion), walk every Firestore document and
every Storage object and fail on anything the data model does not list.

The model is written out here from docs/architecture.md ("Data model", "Technical files") on purpose, not
imported from shared/store/schema.py: a change there must not silently widen what this test allows.
"""
from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from local.stack import SWEEP_TOPIC
from tests import portal, seed, support
from tests.e2e.processes import Processes
from tests.fake_ms import FakeMicrosoftControl

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RELAY_FIELDS = {"displayName", "givenName", "surname", "jobTitle", "department", "companyName", "mail",
                "mobilePhone", "businessPhones", "officeLocation"}
TENANT_STATUSES = {"active", "deleting"}
FORMATS = {"json", "xml", "csv"}
OWNERS = {"tenant", "device"}
KINDS = {"tenant", "device", "file"}
RECEIPT_STATUSES = {"pending", "completed"}
AUDIT_ACTIONS = {"device.revoke", "settings.update", "tenant.delete.request", "tenant.onboard", "portal.signin"}
ACTOR_KINDS = {"admin", "operator"}
SETTINGS_KEYS = {"name", "fields", "defaultRegion", "scope", "photos"}
OBJECT_METADATA = {"tenant-id", "owner"}
OBJECT_NAME = re.compile(rf"tenants/(?P<tenant>{UUID})/(?:tenant|devices/(?P<device>{UUID}))/"
                         rf"(?P<file>{UUID})\.(?P<ext>json|xml|csv)")


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(UUID, value) is not None


def _fields(document: dict, required: set[str], optional: set[str] = frozenset()) -> list[str]:
    problems = [f"field {name!r} is not in the data model" for name in set(document) - required - optional]
    problems += [f"field {name!r} is missing" for name in required - set(document)]
    return problems


def check_tenant(ids: dict, document: dict) -> list[str]:
    problems = _fields(document, {"name", "status", "createdAt", "settings"},
                       {"deletionRequestId", "deletionRequestedAt"})
    if not isinstance(document.get("name"), str) or document.get("status") not in TENANT_STATUSES:
        problems.append("name/status")
    if not isinstance(document.get("createdAt"), datetime):
        problems.append("createdAt")
    settings = document.get("settings")
    if not isinstance(settings, dict) or set(settings) - {"fields", "defaultRegion", "scope", "photos"}:
        problems.append(f"settings keys {sorted(settings or {})}")
    else:
        if not isinstance(settings.get("fields"), list) or not set(settings["fields"]) <= RELAY_FIELDS:
            problems.append("settings.fields")
        if "defaultRegion" in settings and not re.fullmatch(r"[A-Z]{2}", str(settings["defaultRegion"])):
            problems.append("settings.defaultRegion")
        scope = settings.get("scope", {})
        if (not isinstance(scope, dict) or set(scope) - {"groups", "excludeDisabled", "excludeGuests", "requirePhone"}
                or not all(_is_uuid(g) for g in scope.get("groups", []))
                or not all(isinstance(scope[f], bool) for f in set(scope) - {"groups"})):
            problems.append("settings.scope")
        if not isinstance(settings.get("photos", True), bool):
            problems.append("settings.photos")
    deleting = document.get("status") == "deleting"
    if deleting != ("deletionRequestId" in document) or deleting != ("deletionRequestedAt" in document):
        problems.append("deletionRequestId/deletionRequestedAt only (and always) while deleting")
    if deleting and not _is_uuid(document["deletionRequestId"]):
        problems.append("deletionRequestId")
    return problems


def check_device(ids: dict, document: dict) -> list[str]:
    problems = _fields(document, {"registeredAt", "lastSeenAt"}, {"diagnosticsDay", "diagnosticsCount"})
    if not all(isinstance(document.get(name), datetime) for name in ("registeredAt", "lastSeenAt")):
        problems.append("timestamps")
    if ("diagnosticsDay" in document) != ("diagnosticsCount" in document):
        problems.append("diagnosticsDay and diagnosticsCount come together")
    if "diagnosticsDay" in document and (
            not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(document["diagnosticsDay"]))
            or not isinstance(document["diagnosticsCount"], int) or document["diagnosticsCount"] < 0):
        problems.append("diagnosticsDay/diagnosticsCount")
    return problems


def check_rate_window(ids: dict, document: dict) -> list[str]:
    problems = _fields(document, {"count", "expiresAt"})
    if not isinstance(document.get("count"), int) or document["count"] < 1:
        problems.append("count")
    if not isinstance(document.get("expiresAt"), datetime):
        problems.append("expiresAt")
    return problems


def check_file(ids: dict, document: dict) -> list[str]:
    device = document.get("owner") == "device"
    problems = _fields(document, {"objectName", "format", "owner", "createdAt", "deleteAfter"} | (
        {"deviceId"} if device else set()))
    if document.get("format") not in FORMATS or document.get("owner") not in OWNERS:
        problems.append("format/owner")
    match = OBJECT_NAME.fullmatch(str(document.get("objectName")))
    if (match is None or match["tenant"] != ids["tenant"] or match["file"] != ids["file"]
            or match["ext"] != document.get("format") or match["device"] != document.get("deviceId")):
        problems.append("objectName does not name this file of this tenant (and device)")
    if not all(isinstance(document.get(name), datetime) for name in ("createdAt", "deleteAfter")):
        problems.append("timestamps")
    return problems


def check_receipt(ids: dict, document: dict) -> list[str]:
    problems = _fields(document, {"kind", "subject", "status", "requestedAt", "completedAt", "deleted", "verified"},
                       {"tenantSubject", "progressAt"})
    if "tenantSubject" in document and not re.fullmatch(r"[0-9a-f]{64}", str(document["tenantSubject"])):
        problems.append("tenantSubject is not a hex HMAC-SHA256")
    if "progressAt" in document and not isinstance(document["progressAt"], datetime):
        problems.append("progressAt")
    if document.get("kind") not in KINDS or document.get("status") not in RECEIPT_STATUSES:
        problems.append("kind/status")
    if not re.fullmatch(r"[0-9a-f]{64}", str(document.get("subject"))):
        problems.append("subject is not a hex HMAC-SHA256")
    deleted = document.get("deleted")
    if not isinstance(deleted, dict) or set(deleted) != {"documents", "files"} or not all(
            isinstance(v, int) and v >= 0 for v in deleted.values()):
        problems.append("deleted counts")
    if not isinstance(document.get("verified"), bool) or not isinstance(document.get("requestedAt"), datetime):
        problems.append("verified/requestedAt")
    completed = document.get("status") == "completed"
    if completed != isinstance(document.get("completedAt"), datetime):
        problems.append("completedAt")
    return problems


def check_sync_lease(ids: dict, document: dict) -> list[str]:
    """A shared round's admission lease: when it lapses, nothing else (docs/capacity.md)."""
    problems = _fields(document, {"expiresAt"})
    if not isinstance(document.get("expiresAt"), datetime):
        problems.append("expiresAt")
    return problems


PORTAL_ROLES = {"Global Administrator", "Privileged Role Administrator", "Application Administrator",
                "Cloud Application Administrator", "Tenant.Admin", "member"}


def check_portal_session(ids: dict, document: dict) -> list[str]:
    """A portal sign-in: the role that allowed it and three times; nothing about the person."""
    problems = _fields(document, {"role", "createdAt", "lastUsedAt", "expiresAt"})
    if document.get("role") not in PORTAL_ROLES:
        problems.append(f"role {document.get('role')!r}")
    times = [document.get(name) for name in ("createdAt", "lastUsedAt", "expiresAt")]
    if not all(isinstance(t, datetime) for t in times) or not times[0] <= times[1] < times[2]:
        problems.append("createdAt <= lastUsedAt < expiresAt")
    elif (times[2] - times[0]).total_seconds() > 8 * 3600:
        problems.append("expiresAt is more than 8 hours after createdAt")
    return problems


def check_audit_event(ids: dict, document: dict) -> list[str]:
    """An audit event names no person: a role, a random session ID, and as target an ID or settings keys."""
    problems = _fields(document, {"at", "action", "target", "actorKind", "actorRole", "session", "expiresAt"})
    if document.get("action") not in AUDIT_ACTIONS or document.get("actorKind") not in ACTOR_KINDS:
        problems.append("action/actorKind")
    if not all(isinstance(document.get(name), datetime) for name in ("at", "expiresAt")) \
            or document["expiresAt"] <= document["at"]:
        problems.append("at/expiresAt")
    target = document.get("target")
    if not (target is None or _is_uuid(target)
            or (isinstance(target, str) and set(target.split(",")) <= SETTINGS_KEYS)):
        problems.append("target is neither an ID nor settings keys")
    if document.get("actorKind") == "operator" and (document.get("actorRole"), document.get("session")) != (
            "roles/run.invoker", "operator"):
        problems.append("an operator's role/session")
    if not isinstance(document.get("session"), str) or not re.fullmatch(r"[A-Za-z0-9_-]{8,64}", document["session"]):
        problems.append("session is not a random ID")
    if not isinstance(document.get("actorRole"), str) or "@" in document["actorRole"]:
        problems.append("actorRole")
    return problems


MODEL: list[tuple[re.Pattern[str], Callable[[dict, dict], list[str]]]] = [
    (re.compile(rf"tenants/(?P<tenant>{UUID})"), check_tenant),
    (re.compile(rf"tenants/(?P<tenant>{UUID})/devices/(?P<device>{UUID})"), check_device),
    (re.compile(rf"tenants/(?P<tenant>{UUID})/files/(?P<file>{UUID})"), check_file),
    (re.compile(rf"tenants/(?P<tenant>{UUID})/rateWindows/(?P<window>20\d{{10}})"), check_rate_window),
    (re.compile(rf"deletionReceipts/(?P<request>{UUID})"), check_receipt),
    (re.compile(rf"tenants/(?P<tenant>{UUID})/syncLeases/(?P<slot>[0-9]{{1,4}})"), check_sync_lease),
    (re.compile(rf"tenants/(?P<tenant>{UUID})/auditEvents/(?P<event>{UUID})"), check_audit_event),
    (re.compile(rf"tenants/(?P<tenant>{UUID})/portalSessions/(?P<session>[A-Za-z0-9_-]{{22}})"),
     check_portal_session),
]


def inventory_problems() -> list[str]:
    documents = support.firestore_snapshot()
    problems: list[str] = []
    ids_seen: set[str] = set()
    for path, document in documents.items():
        for pattern, check in MODEL:
            match = pattern.fullmatch(path)
            if match:
                problems += [f"{path}: {p}" for p in check(match.groupdict(), document)]
                if not path.startswith("deletionReceipts/"):
                    ids_seen.update(v for k, v in match.groupdict().items() if v and k != "window")
                break
        else:
            problems.append(f"{path}: collection or document not in the data model")
    # Receipts never name what they are about.
    for path, document in documents.items():
        if path.startswith("deletionReceipts/"):
            text = repr(document)
            problems += [f"{path}: names an ID" for known in ids_seen if known in text]
    for blob in support.bucket().list_blobs():
        match = OBJECT_NAME.fullmatch(blob.name)
        if match is None:
            problems.append(f"object {blob.name!r}: name not in the data model")
            continue
        metadata = dict(blob.metadata or {})
        if set(metadata) != OBJECT_METADATA or metadata["tenant-id"] != match["tenant"] or metadata["owner"] != (
                "device" if match["device"] else "tenant"):
            problems.append(f"object {blob.name}: metadata {sorted(metadata)}")
        manifest = documents.get(f"tenants/{match['tenant']}/files/{match['file']}")
        if manifest is None or manifest.get("objectName") != blob.name:
            problems.append(f"object {blob.name}: no manifest names it")
        elif blob.custom_time != manifest["deleteAfter"]:
            problems.append(f"object {blob.name}: customTime differs from the manifest's deleteAfter")
    return problems


def test_after_an_end_to_end_run_only_the_data_model_is_stored(deletion_push):
    processes = Processes(deletion_push)
    leaving = processes.onboard("Fabrikam AG", defaultRegion="DE", fields=["displayName", "mobilePhone"])
    staying = processes.onboard("Contoso GmbH")
    newcomer, _ = portal.onboard_through_portal(deletion_push, "Northwind Traders AG")
    devices = {}
    for tenant_id in (leaving, staying, newcomer):
        devices[tenant_id] = [processes.register(tenant_id) for _ in range(3)]
        for device_id, (body, content_type) in zip(devices[tenant_id], [
                (b'{"app":"1.0"}', "application/json"), (b"<d><e/></d>", "application/xml"),
                (b"a,b\n1,2\n", "text/csv")], strict=False):
            processes.diagnostics(tenant_id, device_id, body, content_type)
        processes.attach(tenant_id, b'{"source":"crm"}', "application/json", days=3)
        processes.attach(tenant_id, b"<x/>", "application/xml", days=10)
    # Shared rounds: three phones of each of two tenants full-sync at once, joining running rounds; what a
    # round holds stays in the relay's memory (its lease is the only trace, and it is given back).
    fake = FakeMicrosoftControl(deletion_push)
    for tenant_id in (leaving, staying):
        fake.directory(tenant_id, 2500)
    fake.configure(page_delay_seconds=0.2)
    try:
        synced = processes.sync_together([(tenant_id, device_id) for tenant_id in (leaving, staying)
                                          for device_id in devices[tenant_id]])
    finally:
        fake.configure(page_delay_seconds=0.0)
    assert all(lines[0] == {"op": "reset"} and lines[-1]["op"] == "end" for lines in synced)
    deadline = time.monotonic() + 10
    while any("/syncLeases/" in path for path in support.firestore_snapshot()):
        assert time.monotonic() < deadline, "a round's lease was not given back"
        time.sleep(0.2)
    assert processes.admin("PATCH", f"/tenants/{staying}", json={"name": "Contoso SE", "settings": {
        "defaultRegion": "AT", "scope": {"groups": [str(uuid.uuid4())], "requirePhone": True},
        "photos": False}}).ok
    revoked = processes.admin("DELETE", f"/tenants/{staying}/devices/{devices[staying][0]}").json()["requestId"]
    unregistered = processes.app(staying, "DELETE", f"/{devices[staying][1]}").json()["requestId"]
    for request_id in (revoked, unregistered):
        processes.receipt(request_id)
    sweep_log = deletion_push.state_dir / "sweep_retention.log"
    sweeps_before = sweep_log.read_text().count("retention sweep finished") if sweep_log.exists() else 0
    processes.publish(SWEEP_TOPIC, b'{"type":"retention.sweep"}')
    deadline = time.monotonic() + 30
    while sweep_log.read_text().count("retention sweep finished") == sweeps_before:
        assert time.monotonic() < deadline, "the retention sweep did not run"
        time.sleep(0.2)
    tenant_deletion = processes.admin("DELETE", f"/tenants/{leaving}").json()["requestId"]
    assert processes.receipt(tenant_deletion)["verified"] is True

    assert inventory_problems() == []
    documents, objects = support.world()
    assert not [p for p in list(documents) + list(objects) if seed.belongs_to(p, leaving)]
    assert len([p for p in documents if p.startswith(f"tenants/{staying}/devices/")]) == 1
    assert documents[f"tenants/{newcomer}"]["name"] == "Northwind Traders AG"  # the self-onboarded tenant, checked
    assert len([p for p in documents if p.startswith(f"tenants/{newcomer}/devices/")]) == 3
    # The newcomer's admin is still signed in: one session record, the role that allowed it.
    sessions = [documents[p] for p in documents if p.startswith(f"tenants/{newcomer}/portalSessions/")]
    assert [s["role"] for s in sessions] == ["Global Administrator"]
    assert [p for p in documents if p.startswith(f"tenants/{staying}/rateWindows/")]  # the limits' counters
    assert any("diagnosticsCount" in documents[p] for p in documents if p.startswith(f"tenants/{staying}/devices/"))
    assert len([p for p in documents if p.startswith("deletionReceipts/")]) == 3
    # The operators' changes of the staying tenant, each one event: onboarding, the update, the revoke.
    assert sorted(d["action"] for p, d in documents.items() if p.startswith(f"tenants/{staying}/auditEvents/")) == [
        "device.revoke", "settings.update", "tenant.onboard"]
    audit = repr([d for p, d in documents.items() if "/auditEvents/" in p])
    assert "Contoso" not in audit and "Northwind" not in audit and "@" not in audit


def test_the_inventory_notices_what_the_model_does_not_list(emulators):
    tenant_id = seed.tenant()
    file_id, name = seed.technical_file(tenant_id)
    db = support.db()
    db.document(f"tenants/{tenant_id}").update({"contactCache": ["Erika Mustermann"]})
    db.document(f"tenants/{tenant_id}/contacts/{seed.new_id()}").set({"mail": "erika@contoso.example"})
    db.document(f"tenants/{tenant_id}/auditEvents/{seed.new_id()}").set({
        "at": seed.now(), "action": "settings.update", "target": "Erika Mustermann", "actorKind": "admin",
        "actorRole": "Global Administrator", "session": "erika@contoso.example", "expiresAt": datetime(2020, 1, 1),
        "oid": seed.new_id()})
    db.document(f"deletionReceipts/{seed.new_id()}").set({
        "kind": "tenant", "subject": tenant_id, "status": "pending", "requestedAt": seed.now(),
        "completedAt": None, "deleted": {"documents": 0, "files": 0}, "verified": False})
    seed.put_object(f"tenants/{tenant_id}/tenant/{seed.new_id()}.json", b"{}", tenant_id)
    seed.put_object("exports/contacts.csv")

    problems = "\n".join(inventory_problems())

    for expected in ("'contactCache' is not in the data model", "/contacts/", "names an ID", "'oid' is not in",
                     "target is neither", "session is not a random ID", "at/expiresAt",
                     "subject is not a hex", "no manifest names it", "'exports/contacts.csv'"):
        assert expected in problems
    assert name not in problems
