"""The portal's part of the audit trail, through tenant_portal's real entry point against the emulators and
the fake Entra ID: each administrator change (sign-in, revoke, settings, scope and photos, deletion) writes
exactly one event with the session's random ID and the role, a refused change none; the Activity page
(paged, newest first, "this session" marked) and the downloads (CSV and JSON of the trail and of the
receipts, the record of processing) show one tenant only and match each other."""
from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

from functions.tenant_portal import session as cookies
from shared.audit import audit_page_token
from shared.clock import utc_now
from shared.processing_record import processing_record
from shared.store.schema import RELAY_FIELDS
from tests import portal, support
from tests.conftest import make_client

HTML = {"Accept": "text/html"}


@pytest.fixture
def client(emulators):
    return make_client("tenant_portal")


@pytest.fixture
def tenant(emulators):
    return portal.onboard(emulators, name="Fabrikam AG", defaultRegion="DE")


def sign_in(client, stack, tenant_id, role="admin", reauth=False):
    answer = portal.sign_in(client, stack, portal.accounts(stack, tenant_id)[role], reauth)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return answer


def session_id(client) -> str:
    """The session ID the cookie names (its portalSessions record's)."""
    cookie = client.get_cookie(cookies.SESSION_COOKIE)
    sealed = cookies.Sealer(support.settings().portal_session_key).unseal(cookies.SESSION_COOKIE, cookie.value)
    assert support.store().portal_sessions.get(sealed["t"], sealed["i"]) is not None
    return sealed["i"]


def events(tenant_id: str, action: str | None = None) -> list[dict]:
    found = [s.to_dict() | {"eventId": s.id}
             for s in support.db().collection(f"tenants/{tenant_id}/auditEvents").stream()]
    return [e for e in found if action is None or e["action"] == action]


def page(client, path, **kwargs):
    answer = client.get(path, headers=HTML, **kwargs)
    return answer, answer.get_data(as_text=True)


def register_device(tenant_id) -> str:
    device_id = str(uuid.uuid4())
    support.store().devices.register(tenant_id, device_id, utc_now(), 100)
    return device_id


def settings_form(csrf, name="Fabrikam AG", photos=True, groups=""):
    form = {"csrf": csrf, "name": name, "fields": ["displayName", "mobilePhone"], "defaultRegion": "DE",
            "groups": groups, "photos": ["false", "true"] if photos else "false"}
    for flag in ("excludeDisabled", "excludeGuests", "requirePhone"):
        form[flag] = ["false", "true"] if flag != "requirePhone" else "false"
    return form


def assert_admin_event(event, action, target, session):
    assert set(event) - {"eventId"} == {"at", "action", "target", "actorKind", "actorRole", "session", "expiresAt"}
    assert (event["action"], event["target"], event["actorKind"], event["session"]) == (action, target, "admin",
                                                                                         session)
    assert event["actorRole"] == "Global Administrator"


def test_each_administrator_change_writes_exactly_one_event_with_the_session(client, emulators, tenant):
    onboarded = events(tenant)
    sign_in(client, emulators, tenant, reauth=True)
    session = session_id(client)
    (signin,) = events(tenant, "portal.signin")
    assert_admin_event(signin, "portal.signin", None, session)

    device = register_device(tenant)
    csrf = portal.csrf_of(page(client, "/devices")[1])
    assert client.post(f"/devices/{device}/revoke", data={"csrf": csrf}).status_code == 303
    (revoked,) = events(tenant, "device.revoke")
    assert_admin_event(revoked, "device.revoke", device, session)

    # Fields differ from the stored default (all ten), photos off, a group scope: the changed keys, no values.
    group = str(uuid.uuid4())
    assert client.post("/settings", data=settings_form(csrf, photos=False, groups=group)).status_code == 303
    (updated,) = events(tenant, "settings.update")
    assert_admin_event(updated, "settings.update", "fields,photos,scope", session)
    assert group not in json.dumps(events(tenant), default=str)

    answer = client.post("/deletion", data={"csrf": csrf, "confirmName": "Fabrikam AG"})
    assert answer.status_code == 303
    request_id = answer.headers["Location"].rsplit("=", 1)[1]
    (requested,) = events(tenant, "tenant.delete.request")
    assert_admin_event(requested, "tenant.delete.request", request_id, session)
    assert len(events(tenant)) == len(onboarded) + 4


def test_a_refused_change_or_sign_in_writes_no_event(client, emulators, tenant):
    sign_in(make_client("tenant_portal"), emulators, tenant, "user")  # not an administrator: no event
    assert events(tenant, "portal.signin") == []
    sign_in(client, emulators, tenant, reauth=True)
    before = events(tenant)
    csrf = portal.csrf_of(page(client, "/devices")[1])
    assert client.post(f"/devices/{uuid.uuid4()}/revoke", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/devices/{register_device(tenant)}/revoke", data={"csrf": "0" * 64}).status_code == 403
    assert client.post("/settings", data=settings_form(csrf, name="")).status_code == 400
    assert client.post("/settings", data=settings_form(csrf, groups="not-a-group")).status_code == 400
    assert client.post("/deletion", data={"csrf": csrf, "confirmName": "Contoso"}).status_code == 400
    # Saving the settings as they are (the default fields) changes nothing, so nothing is recorded.
    unchanged = {**settings_form(csrf), "fields": list(RELAY_FIELDS)}
    assert client.post("/settings", data=unchanged).status_code == 303
    assert events(tenant) == before


def test_activity_is_paged_newest_first_and_marks_this_session(client, emulators, tenant):
    sign_in(client, emulators, tenant)
    first_session = session_id(client)
    client.post("/signout", data={"csrf": portal.csrf_of(page(client, "/")[1])})
    sign_in(client, emulators, tenant)
    session = session_id(client)
    assert session != first_session
    csrf = portal.csrf_of(page(client, "/activity")[1])
    for index in range(26):
        assert client.post("/settings", data=settings_form(csrf, name=f"Fabrikam {index}")).status_code == 303
    answer, body = page(client, "/activity")
    assert answer.status_code == 200
    rows = body.split("<tbody>", 1)[1].split("</tbody>", 1)[0].count("<tr")
    assert rows == 25 and body.count('class="this-session"') == 25
    newest = events(tenant, "settings.update")
    assert max(newest, key=lambda e: e["at"])["eventId"] not in body  # IDs are not shown, times and kinds are
    token = body.split("pageToken=", 1)[1].split('"', 1)[0]
    older = page(client, "/activity", query_string={"pageToken": token})[1]
    # Page 2: the first settings change, this session's sign-in, the earlier session's sign-in, the onboarding.
    assert older.split("<tbody>", 1)[1].count("<tr") == 4 and older.count('class="this-session"') == 2
    assert "Organisation onboarded" in older and "Signed in to the portal" in older
    german = page(client, "/activity", query_string={"lang": "de"})[1]
    assert "Aktivität" in german and "diese Sitzung" in german and "Einstellungen geändert" in german
    assert page(client, "/activity", query_string={"pageToken": "../x"})[0].status_code == 400


def test_downloads_parse_and_match_the_page(client, emulators, tenant):
    sign_in(client, emulators, tenant)
    session = session_id(client)
    device = register_device(tenant)
    csrf = portal.csrf_of(page(client, "/devices")[1])
    revoke = client.post(f"/devices/{device}/revoke", data={"csrf": csrf})
    request_id = revoke.headers["Location"].rsplit("=", 1)[1]

    as_json = client.get("/activity.json")
    as_csv = client.get("/activity.csv")
    assert as_json.status_code == as_csv.status_code == 200
    assert "attachment" in as_json.headers["Content-Disposition"] and as_csv.mimetype == "text/csv"
    listed = json.loads(as_json.data)["events"]
    rows = list(csv.DictReader(io.StringIO(as_csv.data.decode("utf-8"))))
    assert [e["eventId"] for e in listed] == [r["eventId"] for r in rows]
    assert {e["eventId"] for e in listed} == {e["eventId"] for e in events(tenant)}
    assert [e["action"] for e in listed] == ["device.revoke", "portal.signin", "tenant.onboard"]
    assert listed[0]["target"] == device and listed[0]["session"] == session and listed[0]["thisSession"] is True
    assert rows[0]["thisSession"] == "true" and rows[2]["thisSession"] == "false" and rows[2]["target"] == ""
    body = page(client, "/activity")[1]
    assert all(e["at"][:16].replace("T", " ") in body for e in listed)

    receipts_json = json.loads(client.get("/receipts.json").data)["receipts"]
    receipts_csv = list(csv.DictReader(io.StringIO(client.get("/receipts.csv").data.decode("utf-8"))))
    stored = support.store().receipts.get(request_id)
    assert [r["requestId"] for r in receipts_json] == [r["requestId"] for r in receipts_csv] == [request_id]
    assert receipts_json[0]["subject"] == receipts_csv[0]["subject"] == stored.subject
    assert set(receipts_json[0]) == {"requestId", "kind", "status", "requestedAt", "completedAt", "documents",
                                     "files", "verified", "subject"}
    assert request_id in page(client, "/receipts")[1]

    record = client.get("/record-of-processing.md")
    assert record.status_code == 200 and record.data.decode("utf-8") == processing_record(support.settings())


def test_another_tenants_activity_is_never_shown(client, emulators, tenant):
    other = portal.onboard(emulators, name="Contoso GmbH")
    other_client = make_client("tenant_portal")
    sign_in(other_client, emulators, other)
    theirs = {e["eventId"] for e in events(other)}
    sign_in(client, emulators, tenant)
    shown = json.dumps(json.loads(client.get("/activity.json").data)) + client.get("/activity.csv").data.decode()
    assert theirs and not any(event_id in shown for event_id in theirs)
    # A token made from their newest event is a position only: it shows this tenant's older events, never theirs.
    newest = max(events(other), key=lambda e: e["at"])
    after = page(client, "/activity", query_string={"pageToken": audit_page_token((newest["at"], newest["eventId"]))})
    assert after[0].status_code == 200 and "Organisation onboarded" in after[1]
    assert not any(event_id in after[1] for event_id in theirs)


@pytest.mark.parametrize("path", ["/activity", "/activity.csv", "/activity.json", "/receipts.csv",
                                  "/receipts.json", "/record-of-processing.md"])
def test_downloads_need_an_administrator(client, emulators, tenant, path):
    assert client.get(path, headers=HTML).status_code == 401
    sign_in(client, emulators, tenant, "user")
    assert client.get(path, headers=HTML).status_code == 403


def test_no_event_names_a_person(client, emulators, tenant):
    login = portal.accounts(emulators, tenant)["admin"]
    sign_in(client, emulators, tenant)
    stored = json.dumps(events(tenant), default=str)
    for value in (login, login.split("@")[0], "@", "oid", "Fabrikam"):
        assert value not in stored


def test_self_service_onboarding_is_recorded_with_the_session(emulators):
    tenant_id, passed = portal.onboard_through_portal(emulators)
    (onboarded,) = events(tenant_id)  # the sign-in before the tenant existed left nothing
    assert (onboarded["action"], onboarded["target"], onboarded["actorKind"], onboarded["actorRole"]) == (
        "tenant.onboard", None, "admin", "Global Administrator")
    (record,) = support.db().collection(f"tenants/{tenant_id}/portalSessions").stream()
    assert onboarded["session"] == record.id  # the session that onboarded
    stored = json.dumps(onboarded, default=str)
    assert not any(value in stored for value in passed.values() if value)
