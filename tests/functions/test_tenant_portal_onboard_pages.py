"""Onboarding and /privacy through tenant_portal's real entry point (Flask test client) against the
emulators and the fake Entra ID (its sign-in and admin-consent pages over HTTPS): every refusal is a clear
page in German or English and creates nothing; success leads to the overview, at once visible to operators.

The decisions themselves are tested in test_tenant_portal_onboarding.py (the service); here: the routes,
the sealed onboarding cookie (set on POST /onboard, cleared on the callback whatever the outcome), CSRF,
the pages and their status codes."""
from __future__ import annotations

import re
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest

from functions.tenant_portal import session as cookies
from functions.tenant_portal.onboarding import OnboardingOutcome
from functions.tenant_portal.views.onboarding import ONBOARDING_REFUSALS
from tests import portal, support
from tests.conftest import make_client

HTML = {"Accept": "text/html"}
NAME = "Northwind Traders AG"


@pytest.fixture
def client(emulators):
    return make_client("tenant_portal")


@pytest.fixture
def newcomer(fake):
    """A Microsoft 365 organisation that has never consented to the app (as a new customer's is)."""
    tenant_id = str(uuid.uuid4())
    fake.consent(tenant_id, "not_consented")
    return tenant_id


def page(client, path, **kwargs):
    answer = client.get(path, headers=HTML, **kwargs)
    return answer, answer.get_data(as_text=True)


def sign_in(client, stack, tenant_id, role="admin"):
    answer = portal.sign_in(client, stack, portal.accounts(stack, tenant_id)[role])
    assert answer.status_code == 303, answer.get_data(as_text=True)[:300]


def begin(client, name=NAME, lang=None):
    """Opens the name form, submits it; the POST's answer (a 302 to the consent page when all is well)."""
    query = {"lang": lang} if lang else {}
    form, body = page(client, "/onboard", query_string=query)
    assert form.status_code == 200, body[:300]
    return client.post("/onboard", data={"csrf": portal.csrf_of(body), "name": name}, query_string=query,
                       headers=HTML)


def consent(fake, consent_url: str, decision="accept") -> tuple[str, dict[str, str]]:
    """The admin answers the fake Entra ID's consent page: the callback's path and query."""
    back = urlsplit(fake.answer_consent_page(consent_url, decision))
    return back.path, dict(parse_qsl(back.query, keep_blank_values=True))


def callback(client, path, query, headers=HTML):
    answer = client.get(path, query_string=query, headers=headers)
    return answer, answer.get_data(as_text=True)


def cleared_onboarding_cookie(answer) -> bool:
    return any(h.startswith(cookies.ONBOARDING_COOKIE + "=;") and "Max-Age=0" in h
               for h in answer.headers.getlist("Set-Cookie"))


def outcome_of(body: str) -> str | None:
    match = re.search(r'data-outcome="([a-z-]+)"', body)
    return match.group(1) if match else None


def stored(tenant_id):
    snapshot = support.db().document(f"tenants/{tenant_id}").get()
    return snapshot.to_dict() if snapshot.exists else None


def sealed_pending(tenant_id, state="s" * 43, issued_at=None, name=NAME) -> str:
    """An onboarding cookie as the portal seals it (the test holds PORTAL_SESSION_KEY, as the deployment)."""
    sealer = cookies.Sealer(support.settings().portal_session_key)
    return sealer.seal(cookies.ONBOARDING_COOKIE, {"pending": {
        "state": state, "tid": tenant_id, "name": name, "iat": int(issued_at or time.time())}, "lang": None})


# -- the path ------------------------------------------------------------------------------------------
def test_signed_out_visitor_signs_in_first_and_comes_back(client, emulators, newcomer):
    answer = client.get("/onboard", headers=HTML)
    assert answer.status_code == 303 and answer.headers["Location"] == "/signin?next=%2Fonboard"
    started = client.get(answer.headers["Location"])
    back = urlsplit(portal.fake_signin(emulators, started.headers["Location"],
                                       portal.accounts(emulators, newcomer)["admin"]))
    returned = client.get(back.path, query_string=dict(parse_qsl(back.query)))
    assert returned.status_code == 303 and returned.headers["Location"] == "/onboard"
    form, body = page(client, "/onboard")
    assert form.status_code == 200 and 'name="name"' in body and "Continue to Microsoft" in body
    assert stored(newcomer) is None  # looking stores nothing


def test_onboarding_creates_the_tenant_and_shows_the_overview(client, emulators, newcomer, fake, log_lines):
    sign_in(client, emulators, newcomer)
    started = begin(client, name=f"  {NAME} ")
    assert started.status_code == 302
    url = urlsplit(started.headers["Location"])
    assert f"{url.scheme}://{url.netloc}" == emulators.urls["entra"] and url.path == f"/{newcomer}/v2.0/adminconsent"
    query = dict(parse_qsl(url.query))
    assert query["redirect_uri"] == emulators.portal_url + "/onboard/callback"
    assert query["scope"] == "https://graph.microsoft.com/.default"
    set_cookie = next(h for h in started.headers.getlist("Set-Cookie") if h.startswith(cookies.ONBOARDING_COOKIE))
    assert all(part in set_cookie for part in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"))
    assert query["state"] not in set_cookie and NAME not in set_cookie  # sealed, not readable
    assert stored(newcomer) is None  # nothing before the consent

    path, answer_query = consent(fake, started.headers["Location"])
    assert path == "/onboard/callback" and answer_query["tenant"] == newcomer
    done, _ = callback(client, path, answer_query)
    assert done.status_code == 303 and done.headers["Location"] == "/?onboarded=1"
    assert cleared_onboarding_cookie(done)
    overview, body = page(client, done.headers["Location"])
    assert overview.status_code == 200 and NAME in body and newcomer in body and "Your organisation was added" in body
    tenant = stored(newcomer)
    assert tenant["name"] == NAME and tenant["status"] == "active"
    listed = make_client("manage_tenants").get("/tenants", query_string={"pageSize": 1000}).get_json()["tenants"]
    assert any(t["tenantId"] == newcomer and t["name"] == NAME and t["status"] == "active" for t in listed)

    # Replayed: the cookie is gone, so the same answer creates nothing and says why.
    before = support.world()
    assert client.get_cookie(cookies.ONBOARDING_COOKIE) is None
    replay, body = callback(client, path, answer_query)
    assert replay.status_code == 401 and outcome_of(body) == "no-session" and support.world() == before
    # Already onboarded: straight to the overview, the name form is not offered again.
    again = client.get("/onboard", headers=HTML)
    assert again.status_code == 303 and again.headers["Location"] == "/"
    # No state, name or token in a log line.
    text = "\n".join(log_lines)
    assert query["state"] not in text and NAME not in text and "eyJ" not in text


def test_german_onboarding_stays_german_through_microsoft(client, emulators, newcomer, fake):
    sign_in(client, emulators, newcomer)
    form, body = page(client, "/onboard", query_string={"lang": "de"})
    assert "Weiter zu Microsoft" in body and 'lang="de"' in body
    started = begin(client, lang="de")
    path, query = consent(fake, started.headers["Location"], "decline")
    refused, body = callback(client, path, query)  # Microsoft's redirect carries no language
    assert refused.status_code == 400 and "Zustimmung abgelehnt" in body and 'lang="de"' in body
    assert 'href="/onboard?lang=de"' in body  # "Neu beginnen"


# -- each refusal: a clear page, nothing created -------------------------------------------------------
def test_declined_consent(client, emulators, newcomer, fake):
    sign_in(client, emulators, newcomer)
    path, query = consent(fake, begin(client).headers["Location"], "decline")
    assert query["error"] == "access_denied"
    refused, body = callback(client, path, query)
    assert refused.status_code == 400 and outcome_of(body) == "declined"
    assert "<h1>Consent declined</h1>" in body and "nothing was stored" in body
    assert cleared_onboarding_cookie(refused) and stored(newcomer) is None
    assert 'href="/onboard"' in body  # start again


def test_consent_for_a_different_tenant(client, emulators, newcomer, fake):
    other = str(uuid.uuid4())
    fake.consent(other, "not_consented")
    sign_in(client, emulators, newcomer)
    consent_url = begin(client).headers["Location"]
    path, query = consent(fake, consent_url.replace(f"/{newcomer}/", f"/{other}/"))
    assert query["tenant"] == other
    refused, body = callback(client, path, query)
    assert refused.status_code == 403 and outcome_of(body) == "wrong-tenant"
    assert "another Microsoft 365 organisation" in body
    assert stored(newcomer) is None and stored(other) is None


def test_replayed_state_from_another_onboarding(client, emulators, newcomer, fake):
    sign_in(client, emulators, newcomer)
    first = begin(client).headers["Location"]
    path, query = consent(fake, first)
    begin(client)  # a second onboarding in this browser: its cookie (and state) replaces the first
    refused, body = callback(client, path, query)
    assert refused.status_code == 400 and outcome_of(body) == "state-mismatch"
    assert cleared_onboarding_cookie(refused) and stored(newcomer) is None
    # The cookie is used up: the same answer again is no longer an onboarding under way.
    again, body = callback(client, path, query)
    assert again.status_code == 401 and outcome_of(body) == "no-session" and stored(newcomer) is None


def test_expired_state(client, emulators, newcomer, fake):
    sign_in(client, emulators, newcomer)
    started = begin(client).headers["Location"]
    state = dict(parse_qsl(urlsplit(started).query))["state"]
    path, query = consent(fake, started)
    # The same onboarding, begun 11 minutes ago (a browser keeps a cookie past its Max-Age if it was slept).
    client.set_cookie(cookies.ONBOARDING_COOKIE, sealed_pending(newcomer, state, time.time() - 11 * 60))
    refused, body = callback(client, path, query)
    assert refused.status_code == 400 and outcome_of(body) == "state-expired" and "10 minutes" in body
    assert stored(newcomer) is None


def sealed_waiting(tenant_id, since, name=NAME) -> str:
    sealer = cookies.Sealer(support.settings().portal_session_key)
    return sealer.seal(cookies.WAITING_COOKIE, {"waiting": {"tid": tenant_id, "name": name, "since": int(since)}})


def waiting_page(answer, body) -> None:
    """The page that checks again by itself: portal.js asks /onboard/wait every few seconds, a refresh in
    <noscript> does without JavaScript (a timed refresh for everyone would fail WCAG 2.2.1, axe's meta-refresh)."""
    assert answer.status_code == 200 and outcome_of(body) == "awaiting-consent", body[:300]
    assert re.search(r'<noscript><meta http-equiv="refresh" content="\d+;url=/onboard/wait"></noscript>', body)
    assert 'data-wait="/onboard/wait"' in body and '<script src="/assets/portal.js" defer></script>' in body
    assert answer.headers["Cache-Control"] == "no-store"


def test_missing_user_read_all(client, emulators, newcomer, fake):
    fake.consent(newcomer, roles=["GroupMember.Read.All", "ProfilePhoto.Read.All"])  # the registration lacks it
    sign_in(client, emulators, newcomer)
    path, query = consent(fake, begin(client).headers["Location"])
    waiting_page(*callback(client, path, query))  # right after consent the roles may still be replicating
    waiting_page(*page(client, "/onboard/wait"))
    # After 5 minutes the page says why, and can still check again.
    client.set_cookie(cookies.WAITING_COOKIE, sealed_waiting(newcomer, time.time() - 5 * 60 - 5))
    refused, body = page(client, "/onboard/wait")
    assert refused.status_code == 403 and outcome_of(body) == "missing-permission" and "User.Read.All" in body
    assert 'href="/onboard/wait"' in body and "Check again" in body
    assert stored(newcomer) is None


def test_waiting_page_onboards_once_the_consent_has_replicated(client, emulators, newcomer, fake):
    fake.configure(tenant=newcomer, consent_replication_seconds=600)  # replicates only after the callback
    sign_in(client, emulators, newcomer)
    path, query = consent(fake, begin(client).headers["Location"])
    answer, body = callback(client, path, query)
    waiting_page(answer, body)
    assert any(h.startswith(cookies.WAITING_COOKIE + "=") and "Max-Age=86400" in h
               for h in answer.headers.getlist("Set-Cookie"))
    assert stored(newcomer) is None
    asked = client.get("/onboard/wait", headers={"Accept": "application/json"})  # the page's script
    assert asked.status_code == 200 and asked.get_json() == {"status": "awaiting-consent"}
    fake.configure(tenant=newcomer, consent_replication_seconds=0)  # Microsoft has caught up
    done = client.get("/onboard/wait", headers=HTML)
    assert done.status_code == 303 and done.headers["Location"] == "/?onboarded=1"
    assert any(h.startswith(cookies.WAITING_COOKIE + "=;") for h in done.headers.getlist("Set-Cookie"))
    assert stored(newcomer)["name"] == NAME
    events = [e.to_dict() for e in support.db().collection(f"tenants/{newcomer}/auditEvents").stream()]
    assert [(e["action"], e["actorKind"]) for e in events] == [("tenant.onboard", "admin")]  # as in one visit


def test_the_waiting_pages_script_is_told_where_to_go_on(client, emulators, newcomer, fake):
    fake.configure(tenant=newcomer, consent_replication_seconds=600)
    sign_in(client, emulators, newcomer)
    path, query = consent(fake, begin(client).headers["Location"])
    waiting_page(*callback(client, path, query))
    fake.configure(tenant=newcomer, consent_replication_seconds=0)
    done = client.get("/onboard/wait", headers={"Accept": "application/json"})
    assert done.status_code == 200 and done.get_json() == {"status": "onboarded", "location": "/?onboarded=1"}
    assert stored(newcomer)["status"] == "active"
    # A refusal after the wait is problem+json (the script then shows it as a page).
    other = str(uuid.uuid4())
    fake.consent(other, "not_consented")
    stranger = make_client("tenant_portal")
    sign_in(stranger, emulators, other)
    stranger.set_cookie(cookies.WAITING_COOKIE, sealed_waiting(other, time.time() - 6 * 60))
    refused = stranger.get("/onboard/wait", headers={"Accept": "application/json"})
    assert refused.status_code == 403 and refused.headers["Content-Type"].startswith("application/problem+json")
    assert refused.get_json()["type"].endswith("/consent-not-found")


def test_waiting_page_without_its_cookie_or_from_another_session(client, emulators, newcomer, fake):
    sign_in(client, emulators, newcomer)
    refused, body = page(client, "/onboard/wait")
    assert refused.status_code == 401 and outcome_of(body) == "no-session"
    client.set_cookie(cookies.WAITING_COOKIE, sealed_waiting(str(uuid.uuid4()), time.time()))
    refused, body = page(client, "/onboard/wait")
    assert refused.status_code == 400 and outcome_of(body) == "state-mismatch"
    client.set_cookie(cookies.WAITING_COOKIE, "not-sealed")
    assert page(client, "/onboard/wait")[0].status_code == 401
    assert stored(newcomer) is None


def test_entra_unavailable_says_try_again(client, emulators, newcomer, fake):
    sign_in(client, emulators, newcomer)
    path, query = consent(fake, begin(client).headers["Location"])
    fake.faults({"target": "token", "status": 503, "count": None, "tenant": newcomer})
    waiting_page(*callback(client, path, query))
    client.set_cookie(cookies.WAITING_COOKIE, sealed_waiting(newcomer, time.time() - 6 * 60))
    refused, body = page(client, "/onboard/wait")
    assert refused.status_code == 503 and outcome_of(body) == "entra-unavailable"
    assert refused.headers["Retry-After"] == "5" and "start again in a moment" in body
    assert stored(newcomer) is None


def test_callback_without_a_session(client, emulators, newcomer, fake):
    sign_in(client, emulators, newcomer)
    started = begin(client)
    path, query = consent(fake, started.headers["Location"])
    pending = client.get_cookie(cookies.ONBOARDING_COOKIE).value
    stranger = make_client("tenant_portal")  # another browser: the onboarding cookie, but nobody signed in
    stranger.set_cookie(cookies.ONBOARDING_COOKIE, pending)
    refused, body = callback(stranger, path, query)
    assert refused.status_code == 401 and outcome_of(body) == "no-session"
    assert 'href="/signin?next=%2Fonboard"' in body
    assert cleared_onboarding_cookie(refused) and stored(newcomer) is None
    # Clients that do not ask for HTML get problem+json.
    bare = make_client("tenant_portal").get(path, query_string=query, headers={"Accept": "application/json"})
    assert bare.status_code == 401 and bare.get_json()["type"] == "/problems/no-session"
    assert stored(newcomer) is None


def test_non_admin_cannot_onboard(client, emulators, newcomer, fake):
    sign_in(client, emulators, newcomer, role="user")
    answer, body = page(client, "/onboard")
    assert answer.status_code == 403 and outcome_of(body) == "not-admin"
    assert "no administrator role" in body and "Sign in with another account" in body
    csrf = portal.csrf_of(body)  # the sign-out form's
    posted = client.post("/onboard", data={"csrf": csrf, "name": NAME}, headers=HTML)
    assert posted.status_code == 403 and client.get_cookie(cookies.ONBOARDING_COOKIE) is None
    # Even a genuine consent answer with a matching onboarding cookie creates nothing for a non-admin.
    state = "t" * 43
    fake.consent(newcomer, "granted")
    client.set_cookie(cookies.ONBOARDING_COOKIE, sealed_pending(newcomer, state))
    refused, body = callback(client, "/onboard/callback",
                             {"admin_consent": "True", "tenant": newcomer, "scope": "x", "state": state})
    assert refused.status_code == 403 and outcome_of(body) == "not-admin" and stored(newcomer) is None


def test_tenant_being_deleted_is_told_to_wait(client, emulators, newcomer):
    portal.onboard(emulators, newcomer, name="Leaving GmbH")
    assert make_client("manage_tenants").delete(f"/tenants/{newcomer}").status_code == 202
    # No session starts while the deletion runs (it would miss it): the sign-in itself says why.
    answer = portal.sign_in(client, emulators, portal.accounts(emulators, newcomer)["admin"])
    assert answer.status_code == 409 and answer.get_json()["type"] == "/problems/tenant-deleting"
    assert client.get_cookie(cookies.SESSION_COOKIE) is None
    assert stored(newcomer)["status"] == "deleting"


def test_invalid_name_and_missing_csrf_change_nothing(client, emulators, newcomer):
    sign_in(client, emulators, newcomer)
    refused = begin(client, name="   ")
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and 'role="alert"' in body and 'aria-invalid="true"' in body
    assert client.get_cookie(cookies.ONBOARDING_COOKIE) is None
    forged = client.post("/onboard", data={"name": NAME}, headers=HTML)
    assert forged.status_code == 403 and client.get_cookie(cookies.ONBOARDING_COOKIE) is None
    signed_out = make_client("tenant_portal").post("/onboard", data={"name": NAME}, headers=HTML)
    assert signed_out.status_code == 401
    assert stored(newcomer) is None


def test_the_longest_name_fits_the_sealed_cookie(client, emulators, newcomer):
    name = "\U0001F3E2" * 256  # 256 characters outside the BMP: the longest name there is, in bytes
    sign_in(client, emulators, newcomer)
    started = begin(client, name=name)
    assert started.status_code == 302
    value = client.get_cookie(cookies.ONBOARDING_COOKIE).value
    assert len(value) < cookies.MAX_COOKIE_CHARS
    sealed = cookies.Sealer(support.settings().portal_session_key).unseal(cookies.ONBOARDING_COOKIE, value)
    assert sealed["pending"]["name"] == name and sealed["pending"]["tid"] == newcomer


def test_form_action_allows_the_consent_redirect(client, emulators):
    csp = client.get("/onboard").headers["Content-Security-Policy"]
    assert re.search(r"form-action 'self' " + re.escape(emulators.urls["entra"]) + r";", csp)


def test_every_refusal_has_a_status_and_texts():
    from functions.tenant_portal.pages import catalogues

    refusals = {o.value for o in OnboardingOutcome} - {"not-onboarded", "redirect-to-consent", "onboarded",
                                                       "already-onboarded", "name-invalid", "awaiting-consent"}
    assert set(ONBOARDING_REFUSALS) == refusals
    for lang in ("en", "de"):
        for outcome in refusals | {"awaiting-consent"}:
            assert catalogues()[lang][f"onboard.{outcome}.title"] and catalogues()[lang][f"onboard.{outcome}.text"]


# -- /privacy ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang, heading, switch_to", [
    ("en", "What we store, and what we never store", "Deutsch"),
    ("de", "Was wir speichern – und was nie", "English"),
])
def test_privacy_page_is_public_in_the_portal_layout(client, emulators, lang, heading, switch_to):
    from functions.tenant_portal.privacy import privacy_page
    from tests.functions.test_tenant_portal_privacy import named_fields

    answer, body = page(client, "/privacy", query_string={"lang": lang})
    assert answer.status_code == 200 and f'<html lang="{lang}">' in body and f"<h1>{heading}</h1>" in body
    assert '<link rel="stylesheet" href="/assets/portal.css">' in body  # the portal's layout
    assert f'href="/privacy?lang={"de" if lang == "en" else "en"}"' in body and f">{switch_to}</a>" in body
    rows = set(re.findall(r'<tr data-field="([^"]+)">', body))
    model = named_fields(privacy_page(lang))
    assert rows == {f"{collection}.{name}" for collection, names in model.items() for name in names}
    assert "<script" not in body and "style=" not in body
    assert "Content-Security-Policy" in answer.headers
    # Without ?lang=, the browser's language.
    assert client.get("/privacy", headers={**HTML, "Accept-Language": "de"}).get_data(as_text=True).count(
        "<h1>Was wir speichern") == 1
