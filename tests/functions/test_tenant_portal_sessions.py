"""Portal sessions that end (issue 19): a session is its server-side record
(`tenants/{tenantId}/portalSessions/{sessionId}`), so sign-out, "Sign out everywhere", the idle and absolute
limits and the tenant's deletion end it for every copy of the cookie; a new sign-in takes the role Entra ID
gives now. Through the real entry point (Flask test client), the emulators, the fake Entra ID and
handle_deletion; the limits also with a fake clock on the session keeper itself."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from functions.tenant_portal import session as cookies
from tests import portal, seed, support
from tests.conftest import make_client
from tests.fake_ms import FakeMicrosoftControl

HTML = {"Accept": "text/html"}
USER_ROLE = "b79fbf4d-3ef9-4689-8143-76b194e85509"


@pytest.fixture
def tenant(emulators):
    return portal.onboard(emulators, name="Fabrikam AG")


def signed_in_client(stack, tenant_id, role="admin", reauth=False):
    client = make_client("tenant_portal")
    answer = portal.sign_in(client, stack, portal.accounts(stack, tenant_id)[role], reauth)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return client


def copy_of(client):
    """Another browser holding a copy of `client`'s session cookie (what an attacker who copied it has)."""
    thief = make_client("tenant_portal")
    thief.set_cookie(cookies.SESSION_COOKIE, client.get_cookie(cookies.SESSION_COOKIE).value)
    return thief


def records(tenant_id) -> list[str]:
    return sorted(d.id for d in support.db().collection(f"tenants/{tenant_id}/portalSessions").stream())


def csrf(client) -> str:
    return portal.session_of(client).csrf_token


def assert_signed_out(client, tenant_id):
    """Every page asks to sign in again; no change is accepted (even with the session's own CSRF token)."""
    token = portal.session_of(client).csrf_token if client.get_cookie(cookies.SESSION_COOKIE) else "0" * 64
    before = support.firestore_snapshot()
    for path in ("/devices", "/settings", "/receipts", "/deletion"):
        answer = client.get(path, headers=HTML)
        assert answer.status_code == 401 and "Sign in with Microsoft" in answer.get_data(as_text=True), path
    assert client.post("/settings", data={"csrf": token, "name": "Hijacked"}, headers=HTML).status_code == 401
    assert client.post("/deletion", data={"csrf": token, "confirmName": "Fabrikam AG"}).status_code == 401
    assert support.firestore_snapshot() == before
    assert client.get_cookie(cookies.SESSION_COOKIE) is None  # the cookie is cleared, too


# -- the record ------------------------------------------------------------------------------------------
def test_a_sign_in_creates_a_record_with_the_role_and_three_times_and_nothing_else(emulators, tenant):
    client = signed_in_client(emulators, tenant)
    session = portal.session_of(client)
    assert len(session.session_id) == 22 and records(tenant) == [session.session_id]  # 128 bits, base64url
    document = support.db().document(f"tenants/{tenant}/portalSessions/{session.session_id}").get().to_dict()
    assert set(document) == {"role", "createdAt", "lastUsedAt", "expiresAt"}
    assert document["role"] == "Global Administrator"
    assert document["createdAt"] == document["lastUsedAt"]
    assert document["expiresAt"] - document["createdAt"] == timedelta(minutes=30)
    # Nothing about the person: no claim of the user's reached the record (or the cookie).
    account = portal.accounts(emulators, tenant)["admin"]
    user = emulators.fake_microsoft().call("GET", f"/tenants/{tenant}/users/{account}")["user"]
    text = json.dumps(document, default=str) + client.get_cookie(cookies.SESSION_COOKIE).value
    for claim in (account, user["id"], user["displayName"]):
        assert claim not in text


def test_app_role_and_member_sign_ins_record_their_role(emulators, tenant):
    assert portal.session_of(signed_in_client(emulators, tenant, "app-admin")).role == "Tenant.Admin"
    assert portal.session_of(signed_in_client(emulators, tenant, "user")).role == "member"


def test_each_session_has_its_own_csrf_secret(emulators, tenant):
    first, second = signed_in_client(emulators, tenant), signed_in_client(emulators, tenant)
    assert csrf(first) != csrf(second)
    before = support.firestore_snapshot()
    assert first.post("/settings", data={"csrf": csrf(second), "name": "Renamed"}).status_code == 403
    assert support.firestore_snapshot() == before
    assert first.post("/settings", data={"csrf": csrf(first), "name": "Renamed"}).status_code == 303


# -- sign-out ----------------------------------------------------------------------------------------------
def test_after_sign_out_a_copied_cookie_reads_and_changes_nothing(emulators, tenant):
    client = signed_in_client(emulators, tenant)
    thief = copy_of(client)
    assert thief.get("/devices", headers=HTML).status_code == 200  # the copy works while the session does
    token = csrf(client)
    assert client.post("/signout", data={"csrf": token}).status_code == 303
    assert client.get_cookie(cookies.SESSION_COOKIE) is None and records(tenant) == []
    assert_signed_out(thief, tenant)
    assert client.get("/devices", headers=HTML).status_code == 401


def test_signing_in_again_ends_the_session_before(emulators, tenant):
    client = signed_in_client(emulators, tenant)
    old = copy_of(client)
    first = portal.session_of(client).session_id
    assert portal.sign_in(client, emulators, portal.accounts(emulators, tenant)["admin"]).status_code == 303
    assert first not in records(tenant) and len(records(tenant)) == 1
    assert_signed_out(old, tenant)


def test_sign_out_everywhere_ends_every_session_of_the_tenant_and_no_other(emulators, tenant, log_lines):
    other = portal.onboard(emulators, name="Contoso GmbH")
    admin, app_admin, member = (signed_in_client(emulators, tenant, role) for role in ("admin", "app-admin", "user"))
    neighbour = signed_in_client(emulators, other)
    copies = [copy_of(c) for c in (admin, app_admin, member)]
    assert len(records(tenant)) == 3
    overview = admin.get("/", headers=HTML).get_data(as_text=True)
    assert 'action="/signout/everywhere"' in overview and "Sign out everywhere" in overview
    ended = admin.post("/signout/everywhere", data={"csrf": csrf(admin)})
    assert ended.status_code == 303 and ended.headers["Location"] == "/?signedOut=everywhere"
    assert records(tenant) == [] and len(records(other)) == 1
    for client in (admin, app_admin, member, *copies):
        assert client.get("/devices", headers=HTML).status_code == 401
    assert neighbour.get("/devices", headers=HTML).status_code == 200
    landing = admin.get(ended.headers["Location"], headers=HTML).get_data(as_text=True)
    assert "Every session of your organisation in this portal has ended" in landing
    line = [json.loads(x) for x in log_lines if '"signed out everywhere"' in x][-1]
    assert line["count"] == 3 and line["tenantId"] == tenant and line["severity"] == "INFO"


def sessions_listed(client) -> list[tuple[str, bool]]:
    """The overview's list of active sessions: (8-character reference, marked "this session")."""
    body = client.get("/", headers=HTML).get_data(as_text=True)
    start = body.index('<table class="list sessions">')
    table = body[start:body.index("</table>", start)]
    rows = re.findall(r"<tr( class=\"this-session\")?>\s*<td[^>]*><code>([^<]+)</code>", table)
    return [(ref, bool(marked)) for marked, ref in rows]


def test_the_overview_lists_the_organisations_active_sessions(emulators, tenant):
    first, second = signed_in_client(emulators, tenant), signed_in_client(emulators, tenant, role="app-admin")
    ids = {c: portal.session_of(c).session_id for c in (first, second)}
    listed = sessions_listed(first)
    assert sorted(listed) == sorted([(ids[first][:8], True), (ids[second][:8], False)])
    assert sessions_listed(second) == [(ids[second][:8], True), (ids[first][:8], False)]  # newest first
    body = first.get("/", headers=HTML).get_data(as_text=True)
    assert ids[second] not in body and "Tenant.Admin" in body  # a reference, never the whole session ID
    assert second.post("/signout", data={"csrf": csrf(second)}).status_code in (302, 303)
    assert sessions_listed(first) == [(ids[first][:8], True)]
    other = portal.onboard(emulators, name="Contoso Ltd")
    outsider = signed_in_client(emulators, other)
    assert sessions_listed(outsider) == [(portal.session_of(outsider).session_id[:8], True)]


def test_sign_out_everywhere_needs_an_administrator_and_the_form_token(emulators, tenant):
    admin = signed_in_client(emulators, tenant)
    member = signed_in_client(emulators, tenant, "user")
    assert member.post("/signout/everywhere", data={"csrf": csrf(member)}).status_code == 403
    assert admin.post("/signout/everywhere", data={"csrf": "0" * 64}).status_code == 403
    assert admin.post("/signout/everywhere", data={"csrf": csrf(admin)},
                      headers={"Origin": "https://evil.example"}).status_code == 403
    assert make_client("tenant_portal").post("/signout/everywhere", data={"csrf": "0" * 64}).status_code == 401
    assert len(records(tenant)) == 2


# -- the limits, from the record ----------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)


@pytest.fixture
def keeper(emulators):
    clock = FakeClock()
    return cookies.SessionKeeper(support.store().portal_sessions,
                                 cookies.Sealer(support.settings().portal_session_key), clock), clock


def test_idle_for_30_minutes_ends_the_session(keeper, tenant):
    sessions, clock = keeper
    session, sealed = sessions.start(tenant, "Global Administrator")
    clock.advance(minutes=29, seconds=59)
    assert sessions.open(sealed) == session
    record = support.store().portal_sessions.get(tenant, session.session_id)
    assert record.last_used_at == clock.now and record.expires_at == clock.now + timedelta(minutes=30)
    clock.advance(minutes=30)
    assert sessions.open(sealed) is None
    assert support.store().portal_sessions.get(tenant, session.session_id) is None  # deleted, not left to TTL


def test_only_sessions_still_alive_are_listed(keeper, tenant):
    sessions, clock = keeper
    old, _ = sessions.start(tenant, "Global Administrator")
    clock.advance(minutes=20)
    new, _ = sessions.start(tenant, "Tenant.Admin")
    assert [r.session_id for r in sessions.active(tenant)] == [new.session_id, old.session_id]
    clock.advance(minutes=11)  # the first has been idle 31 minutes; its record is still there
    assert [r.session_id for r in sessions.active(tenant)] == [new.session_id]
    assert len(records(tenant)) == 2


def test_last_use_is_written_at_most_once_a_minute(keeper, tenant):
    sessions, clock = keeper
    session, sealed = sessions.start(tenant, "Global Administrator")
    started = clock.now
    for _ in range(5):
        clock.advance(seconds=11)
        assert sessions.open(sealed) == session
    assert support.store().portal_sessions.get(tenant, session.session_id).last_used_at == started
    clock.advance(seconds=5)  # 60 s after the sign-in
    assert sessions.open(sealed) == session
    assert support.store().portal_sessions.get(tenant, session.session_id).last_used_at == clock.now


def test_eight_hours_end_the_session_however_often_it_is_used(keeper, tenant):
    sessions, clock = keeper
    session, sealed = sessions.start(tenant, "Tenant.Admin")
    created = clock.now
    while clock.now < created + timedelta(hours=8) - timedelta(minutes=10):
        clock.advance(minutes=10)
        assert sessions.open(sealed) == session, clock.now
    record = support.store().portal_sessions.get(tenant, session.session_id)
    assert record.expires_at == created + timedelta(hours=8)  # no longer 30 minutes after the last use
    clock.advance(minutes=10)
    assert sessions.open(sealed) is None


def test_a_record_whose_expiry_is_past_is_refused_whatever_its_other_times_say(keeper, tenant):
    sessions, clock = keeper
    session, sealed = sessions.start(tenant, "Global Administrator")
    support.db().document(f"tenants/{tenant}/portalSessions/{session.session_id}").update(
        {"expiresAt": clock.now - timedelta(seconds=1)})
    assert sessions.open(sealed) is None


def test_a_signed_out_session_is_not_brought_back_by_a_use_racing_it(keeper, tenant):
    sessions, clock = keeper
    session, sealed = sessions.start(tenant, "Global Administrator")
    clock.advance(minutes=2)
    record = support.store().portal_sessions.get(tenant, session.session_id)
    sessions.end(session)
    # What open() writes after its read, had the sign-out come in between: an update, which finds nothing.
    assert support.store().portal_sessions.touch(tenant, session.session_id, clock.now,
                                                 cookies.expiry(record.created_at, clock.now)) is False
    assert records(tenant) == []


# -- the tenant: deleted, onboarded again; roles changed in Entra ID -----------------------------------------
def test_the_tenants_deletion_deletes_its_sessions_and_counts_them_in_the_receipt(emulators, tenant):
    admin = signed_in_client(emulators, tenant, reauth=True)
    app_admin = signed_in_client(emulators, tenant, "app-admin")
    stolen = copy_of(admin)
    body = admin.get("/deletion", headers=HTML).get_data(as_text=True)
    accepted = admin.post("/deletion", data={"csrf": portal.csrf_of(body), "confirmName": "Fabrikam AG"})
    assert accepted.status_code == 303
    request_id = accepted.headers["Location"].rsplit("=", 1)[1]
    under_tenant = [p for p in support.firestore_snapshot() if p == f"tenants/{tenant}"
                    or p.startswith(f"tenants/{tenant}/")]
    assert len([p for p in under_tenant if "/portalSessions/" in p]) == 2
    handler = make_client("handle_deletion")
    assert seed.post_event(handler, seed.pubsub_event(seed.deletion_message("tenant", tenant, request_id)),
                           "structured").status_code == 200
    receipt = support.db().document(f"deletionReceipts/{request_id}").get().to_dict()
    assert receipt["status"] == "completed" and receipt["verified"] is True
    assert receipt["deleted"]["documents"] == len(under_tenant)  # the tenant, its two sessions (and audit events)
    assert records(tenant) == []
    for client in (app_admin, stolen):
        assert client.get("/devices", headers=HTML).status_code == 401
    # The browser that asked for the deletion still sees how it ended (its deletion cookie names that request
    # only); a copy of the session cookie without it sees nothing.
    assert stolen.get(f"/deletion?requestId={request_id}", headers=HTML).status_code == 401
    assert stolen.get(f"/receipts/{request_id}.json").status_code == 401
    assert admin.get(f"/receipts/{request_id}.json").get_json()["status"] == "completed"
    done = admin.get(f"/deletion?requestId={request_id}", headers=HTML)
    assert done.status_code == 200 and "All data of your organisation is deleted" in done.get_data(as_text=True)
    assert admin.get_cookie(cookies.SESSION_COOKIE) is None and admin.get_cookie(cookies.DELETION_COOKIE) is None
    assert admin.get("/devices", headers=HTML).status_code == 401


def test_a_cookie_from_before_the_deletion_is_refused_after_the_tenant_is_onboarded_again(emulators, tenant):
    admin = signed_in_client(emulators, tenant, reauth=True)
    kept = admin.get_cookie(cookies.SESSION_COOKIE).value
    body = admin.get("/deletion", headers=HTML).get_data(as_text=True)
    request_id = admin.post("/deletion", data={"csrf": portal.csrf_of(body), "confirmName": "Fabrikam AG"}
                            ).headers["Location"].rsplit("=", 1)[1]
    assert seed.post_event(make_client("handle_deletion"), seed.pubsub_event(
        seed.deletion_message("tenant", tenant, request_id)), "structured").status_code == 200
    portal.onboard(emulators, tenant, name="Fabrikam AG")
    thief = make_client("tenant_portal")
    thief.set_cookie(cookies.SESSION_COOKIE, kept)
    before = support.firestore_snapshot()
    answer = thief.get("/", headers=HTML)
    assert answer.status_code == 200 and "Sign in with Microsoft" in answer.get_data(as_text=True)
    assert "Fabrikam AG" not in answer.get_data(as_text=True)
    assert_signed_out(thief, tenant)
    assert support.firestore_snapshot() == before


def test_no_session_starts_while_the_tenants_data_is_being_deleted(emulators, tenant):
    admin = signed_in_client(emulators, tenant, reauth=True)
    body = admin.get("/deletion", headers=HTML).get_data(as_text=True)
    assert admin.post("/deletion", data={"csrf": portal.csrf_of(body), "confirmName": "Fabrikam AG"}
                      ).status_code == 303
    started = records(tenant)
    other = make_client("tenant_portal")
    answer = portal.sign_in(other, emulators, portal.accounts(emulators, tenant)["app-admin"])
    assert answer.status_code == 409 and other.get_cookie(cookies.SESSION_COOKIE) is None
    assert records(tenant) == started  # the deletion, when it runs, finds every session there is


def test_a_role_removed_in_entra_between_sign_ins_ends_the_administration(emulators, tenant):
    login = portal.accounts(emulators, tenant)["admin"]
    client = signed_in_client(emulators, tenant)
    assert client.get("/devices", headers=HTML).status_code == 200
    FakeMicrosoftControl(emulators).configure(tenant=tenant, user_roles={login: {"wids": [USER_ROLE]}})
    assert portal.sign_in(client, emulators, login).status_code == 303
    assert portal.session_of(client).role == "member" and len(records(tenant)) == 1
    for path in ("/", "/devices", "/settings"):
        assert client.get(path, headers=HTML).status_code == 403
    assert client.post("/signout/everywhere", data={"csrf": csrf(client)}).status_code == 403
    # Given back (as the app role): the next sign-in administers again.
    FakeMicrosoftControl(emulators).configure(tenant=tenant, user_roles={login: {"roles": ["Tenant.Admin"]}})
    assert portal.sign_in(client, emulators, login).status_code == 303
    assert portal.session_of(client).role == "Tenant.Admin"
    assert client.get("/devices", headers=HTML).status_code == 200
