"""ASVS 3.6.1/3.6.2: "Delete all data" needs a person who authenticated at Entra ID within 10 minutes. Its
sign-in sends `max_age`, the ID token's `auth_time` is checked at the callback (by MSAL and by us) and again
when the deletion is posted; an older authentication gets a page that leads through a fresh sign-in and
back to the confirmation, and nothing is deleted."""
from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from functions.tenant_portal import session as cookies
from tests import portal, support
from tests.conftest import make_client
from tests.fake_ms import FakeMicrosoftControl

HTML = {"Accept": "text/html"}


@pytest.fixture
def client(emulators):
    return make_client("tenant_portal")


@pytest.fixture
def tenant(emulators):
    return portal.onboard(emulators, name="Fabrikam AG")


def sealed_session(client) -> dict:
    return cookies.Sealer(support.settings().portal_session_key).unseal(
        cookies.SESSION_COOKIE, client.get_cookie(cookies.SESSION_COOKIE).value)


def post_deletion(client):
    body = client.get("/deletion", headers=HTML).get_data(as_text=True)
    return client.post("/deletion", data={"csrf": portal.csrf_of(body), "confirmName": "Fabrikam AG"}, headers=HTML)


def refusal_reasons(log_lines) -> list[str]:
    return [line.get("reason") for line in map(json.loads, log_lines) if line.get("reason")]


def test_deleting_after_a_sign_in_without_a_recent_authentication_leads_through_a_fresh_one(
        client, emulators, tenant, log_lines):
    assert portal.sign_in(client, emulators, portal.accounts(emulators, tenant)["admin"]).status_code == 303
    assert "a" not in sealed_session(client)  # an ordinary sign-in: Entra ID was not asked when
    before = support.firestore_snapshot()
    refused = post_deletion(client)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 401 and "Nothing was deleted" in body and 'id="confirmName"' not in body
    assert 'href="/signin?next=%2Fdeletion&amp;reauth=1"' in body
    assert support.firestore_snapshot() == before and support.store().tenants.get(tenant).active
    assert "reauthentication-required" in refusal_reasons(log_lines)
    # The link: a sign-in that asks Entra ID for an authentication at most 10 minutes old, back to the page.
    started = client.get("/signin?next=/deletion&reauth=1")
    assert dict(parse_qsl(urlsplit(started.headers["Location"]).query))["max_age"] == "600"
    login = portal.accounts(emulators, tenant)["admin"]
    back = urlsplit(portal.fake_signin(emulators, started.headers["Location"], login))
    answer = client.get(back.path, query_string=dict(parse_qsl(back.query)))
    assert answer.status_code == 303 and answer.headers["Location"] == "/deletion"
    assert abs(sealed_session(client)["a"] - time.time()) < 30
    accepted = post_deletion(client)
    assert accepted.status_code == 303 and support.store().tenants.get(tenant).status == "deleting"


def test_the_fake_entra_id_tells_auth_time_only_when_max_age_was_sent(emulators, tenant):
    login = portal.accounts(emulators, tenant)["admin"]
    for path, expected in (("/signin", False), ("/signin?next=/deletion&reauth=1", True)):
        client = make_client("tenant_portal")
        started = client.get(path)
        assert ("max_age=600" in started.headers["Location"]) is expected
        back = urlsplit(portal.fake_signin(emulators, started.headers["Location"], login))
        assert client.get(back.path, query_string=dict(parse_qsl(back.query))).status_code == 303
        assert ("a" in sealed_session(client)) is expected


@pytest.mark.parametrize("auth_time", [None, "an hour ago", "in an hour"])
def test_a_sign_in_for_the_deletion_without_a_recent_authentication_is_refused(
        client, emulators, tenant, log_lines, auth_time):
    """An identity provider that did not authenticate again (or says nothing, or a time to come): a 401 page
    with the reason, no session."""
    value = {None: None, "an hour ago": int(time.time()) - 3600, "in an hour": int(time.time()) + 3600}[auth_time]
    FakeMicrosoftControl(emulators).configure(tenant=tenant, id_token_claims={"auth_time": value})
    started = client.get("/signin?next=/deletion&reauth=1")
    login = portal.accounts(emulators, tenant)["admin"]
    back = urlsplit(portal.fake_signin(emulators, started.headers["Location"], login))
    answer = client.get(back.path, query_string=dict(parse_qsl(back.query)), headers=HTML)
    assert answer.status_code == 401, answer.get_data(as_text=True)[:300]
    assert "within the last 10 minutes" in answer.get_data(as_text=True)
    assert client.get_cookie(cookies.SESSION_COOKIE) is None
    assert refusal_reasons(log_lines)[-1] == "signin-not-recent"


def test_an_authentication_older_than_ten_minutes_deletes_nothing(client, emulators, tenant):
    """A session whose sign-in authenticated recently once, but more than 10 minutes ago (12 minutes)."""
    keeper = cookies.SessionKeeper(support.store().portal_sessions,
                                   cookies.Sealer(support.settings().portal_session_key), support_clock())
    _, sealed = keeper.start(tenant, "Global Administrator", int(time.time()) - 12 * 60)
    client.set_cookie(cookies.SESSION_COOKIE, sealed)
    before = support.firestore_snapshot()
    refused = post_deletion(client)
    assert refused.status_code == 401 and "reauth=1" in refused.get_data(as_text=True)
    assert support.firestore_snapshot() == before
    _, sealed = keeper.start(tenant, "Global Administrator", int(time.time()) - 9 * 60)
    client.set_cookie(cookies.SESSION_COOKIE, sealed)
    assert post_deletion(client).status_code == 303


def support_clock():
    from shared.clock import utc_now

    return utc_now
