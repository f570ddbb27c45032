"""What an adversarial test of the running portal found (issue 19), each reproduced here: requests anyone can
send that used to end in a 500, pages that echoed what the request brought, a language link that left the
site, and form bytes that were not UTF-8 saved as replacement characters. Each now gets its 4xx page in the
visitor's language, an INFO line with a reason code, and changes nothing."""
from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest

from functions.tenant_portal import session as cookies
from tests import portal, support
from tests.conftest import make_client
from tests.fake_ms import FakeMicrosoftControl

HTML = {"Accept": "text/html"}
GERMAN = {**HTML, "Accept-Language": "de-DE,de;q=0.9"}


@pytest.fixture
def client(emulators):
    return make_client("tenant_portal")


@pytest.fixture
def tenant(emulators):
    return portal.onboard(emulators, name="Fabrikam AG")


def refusals(log_lines) -> list[dict]:
    """The portal's 'request refused' lines (INFO), newest last."""
    lines = [json.loads(line) for line in log_lines]
    return [line for line in lines if line.get("message") == "request refused"]


def assert_refused(answer, log_lines, status: int, reason: str, german: bool = True) -> str:
    body = answer.get_data(as_text=True)
    assert answer.status_code == status, (answer.status_code, body[:300])
    assert answer.headers["Content-Type"].startswith("text/html")
    if german:
        assert answer.headers["Content-Language"] == "de" and '<html lang="de">' in body
    last = refusals(log_lines)[-1]
    assert last["severity"] == "INFO" and last["reason"] == reason and last["status"] == status, last
    return body


def callback_query(client, stack, tenant_id, role="admin", **extra) -> dict[str, str]:
    """The sign-in answer the fake Entra ID sends back for `role` (after /signin set the flow cookie)."""
    started = client.get("/signin")
    back = urlsplit(portal.fake_signin(stack, started.headers["Location"], portal.accounts(stack, tenant_id)[role]))
    return {**dict(parse_qsl(back.query)), **extra}


def signed_in_csrf(client, stack, tenant_id) -> str:
    assert portal.sign_in(client, stack, portal.accounts(stack, tenant_id)["admin"]).status_code == 303
    return portal.csrf_of(client.get("/settings", headers=HTML).get_data(as_text=True))


# -- 1. a malformed Origin (was 500), and malformed Referer and Host -----------------------------------------
@pytest.mark.parametrize("value", ["http://[::1", "https://[", "http://host:99999", "http://h:port"])
def test_a_malformed_origin_is_a_403_page_not_a_500(client, emulators, tenant, log_lines, value):
    csrf = signed_in_csrf(client, emulators, tenant)
    before = support.firestore_snapshot()
    answer = client.post("/settings", data={"csrf": csrf, "name": "Changed"}, headers={**GERMAN, "Origin": value},
                         query_string={"lang": "de"})
    assert_refused(answer, log_lines, 403, "cross-site")
    assert support.firestore_snapshot() == before


@pytest.mark.parametrize("header, value", [("Referer", "http://[::1"), ("Referer", "\x7f%%"),
                                           ("Host", "[::1"), ("Host", "a:b:c")])
def test_a_malformed_referer_or_host_is_never_a_500(client, emulators, tenant, header, value):
    csrf = signed_in_csrf(client, emulators, tenant)
    for method, path, data in (("GET", "/", None), ("GET", "/devices", None),
                               ("POST", "/settings", {"csrf": csrf, "name": "Fabrikam AG"})):
        answer = client.open(path, method=method, data=data, headers={**HTML, header: value})
        assert answer.status_code < 500, (method, path, answer.status_code)


# -- 2. the sign-in answer: another nonce (MSAL's RuntimeError, was 500), and every other way it is wrong ---
def test_an_id_token_with_another_nonce_is_a_401_page_not_a_500(client, emulators, tenant, log_lines):
    FakeMicrosoftControl(emulators).configure(tenant=tenant, id_token_claims={"nonce": "0" * 64})
    answer = client.get("/auth/callback", query_string=callback_query(client, emulators, tenant), headers=GERMAN)
    assert_refused(answer, log_lines, 401, "id-token-nonce")
    assert client.get_cookie(cookies.SESSION_COOKIE) is None


@pytest.mark.parametrize("claims, reason", [
    ({"aud": [str(uuid.uuid4()), str(uuid.uuid4())]}, "id-token-invalid"),  # an audience list without us
    ({"tid": "{other}"}, "id-token-issuer"),  # another tenant than its issuer names
    ({"tid": "{other}", "iss": "https://sts.windows.net/{other}/"}, "id-token-issuer"),
    ({"tid": "not-a-tenant"}, "id-token-tenant"),
    ({"exp": 1}, "id-token-invalid"),
])
def test_a_wrong_id_token_is_a_401_page(client, emulators, tenant, log_lines, claims, reason):
    other = str(uuid.uuid4())
    claims = {k: v.replace("{other}", other) if isinstance(v, str) else v for k, v in claims.items()}
    FakeMicrosoftControl(emulators).configure(tenant=tenant, id_token_claims=claims)
    answer = client.get("/auth/callback", query_string=callback_query(client, emulators, tenant), headers=GERMAN)
    assert_refused(answer, log_lines, 401, reason)
    assert client.get_cookie(cookies.SESSION_COOKIE) is None


def test_a_forged_state_is_a_401_that_echoes_nothing(client, emulators, tenant, log_lines):
    query = callback_query(client, emulators, tenant, state="forged-state-1234", session_state="sess-9876")
    answer = client.get("/auth/callback", query_string=query, headers=GERMAN)
    body = assert_refused(answer, log_lines, 401, "signin-state")
    for brought in (query["code"], "forged-state-1234", "sess-9876", "code=", "state="):
        assert brought not in body, brought
    assert client.get_cookie(cookies.SESSION_COOKIE) is None


@pytest.mark.parametrize("query, status, reason", [
    ({"error": "access_denied", "error_description": "AADSTS65004: <b>declined</b>", "state": "s-1234"},
     401, "signin-declined"),
    ({"error": "server_error", "error_subcode": "cancel", "error_uri": "https://evil.example/"}, 401,
     "signin-declined"),
    ({"state": "{state}"}, 401, "signin-state"),  # the right state, but no code
    ({"state": "{state}", "code": ""}, 401, "signin-state"),
    ({"state": "{state}", "code": "1.fake.forged-code", "session_state": "s-5678"}, 401, "signin-failed"),
    ({}, 401, "signin-state"),
])
def test_sign_in_answers_with_errors_or_without_a_code_are_401_pages_that_echo_nothing(
        client, emulators, tenant, log_lines, query, status, reason):
    real = callback_query(client, emulators, tenant)
    query = {k: v.replace("{state}", real["state"]) for k, v in query.items()}
    answer = client.get("/auth/callback", query_string=query, headers=GERMAN)
    body = assert_refused(answer, log_lines, status, reason)
    for value in [*query.values(), real["code"]]:
        if value:
            assert value not in body, value
    assert "evil.example" not in body and "AADSTS" not in body
    assert client.get_cookie(cookies.SESSION_COOKIE) is None


def test_a_refused_sign_in_answers_in_the_language_chosen_before_leaving(client, emulators, tenant, log_lines):
    started = client.get("/signin", query_string={"lang": "de"})
    back = urlsplit(portal.fake_signin(emulators, started.headers["Location"],
                                       portal.accounts(emulators, tenant)["admin"]))
    query = {**dict(parse_qsl(back.query)), "state": "forged"}
    answer = client.get("/auth/callback", query_string=query, headers={**HTML, "Accept-Language": "en"})
    body = assert_refused(answer, log_lines, 401, "signin-state")
    assert 'href="/?lang=en"' in body and query["code"] not in body  # the callback cannot be loaded again


def test_the_onboarding_callback_echoes_nothing_it_brought(client, emulators, tenant):
    portal.sign_in(client, emulators, portal.accounts(emulators, tenant)["admin"])
    foreign = str(uuid.uuid4())
    query = {"admin_consent": "True", "tenant": foreign, "state": "st-4321", "code": "c-8765", "session_state": "x-1"}
    answer = client.get("/onboard/callback", query_string=query, headers=GERMAN)
    body = answer.get_data(as_text=True)
    assert 400 <= answer.status_code < 500
    for value in query.values():
        if value != "True":
            assert value not in body, value


# -- 3. links built from the request path stay on the site ----------------------------------------------------
@pytest.mark.parametrize("path, encoded", [
    ("/\\evil.example", "/%5Cevil.example"),
    ("/\\/evil.example/x", "/%5C/evil.example/x"),
    ("/%5Cevil.example", "/%5Cevil.example"),
    ('/"><script>', "/%22%3E%3Cscript%3E"),
])
def test_language_links_from_the_path_stay_on_the_site(client, path, encoded):
    answer = client.get(path, headers=HTML)
    body = answer.get_data(as_text=True)
    assert answer.status_code == 404
    assert f'href="{encoded}?lang=de"' in body and f'href="{encoded}?lang=en"' in body
    hrefs = [part.split('"', 1)[0] for part in body.split('href="')[1:]]
    for href in hrefs:
        assert href.startswith(("/", "#")) and not href.startswith("//") and "\\" not in href, href


def test_site_paths_never_name_another_host():
    from functions.tenant_portal.pages import site_path

    assert site_path("//evil.example") == "/%2Fevil.example"
    assert site_path("/\\evil.example") == "/%5Cevil.example"
    assert site_path("evil") == "/evil"
    assert site_path("/devices") == "/devices"


def test_language_links_keep_only_the_pages_own_query(client, emulators, tenant):
    portal.sign_in(client, emulators, portal.accounts(emulators, tenant)["admin"])
    body = client.get("/settings", query_string={"saved": "1"}, headers=HTML).get_data(as_text=True)
    assert 'href="/settings?saved=1&amp;lang=de"' in body


# -- 4. form bodies: UTF-8 only (was saved as U+FFFD), and never truncated ------------------------------------
@pytest.mark.parametrize("raw", ["name=%FF%FE", "name=Fabrikam%C3", "name=%ED%A0%80", "name=%C0%AF"])
def test_form_bytes_that_are_not_utf8_are_a_400_and_nothing_is_saved(client, emulators, tenant, log_lines, raw):
    csrf = signed_in_csrf(client, emulators, tenant)
    before = support.firestore_snapshot()
    answer = client.post("/settings", data=f"csrf={csrf}&{raw}", content_type="application/x-www-form-urlencoded",
                         headers=GERMAN, query_string={"lang": "de"})
    assert_refused(answer, log_lines, 400, "malformed-form")
    assert support.firestore_snapshot() == before
    assert "\ufffd" not in support.store().tenants.get(tenant).name


def test_raw_bytes_that_are_not_utf8_are_a_400(client, emulators, tenant, log_lines):
    csrf = signed_in_csrf(client, emulators, tenant)
    before = support.firestore_snapshot()
    answer = client.post("/settings", data=f"csrf={csrf}&name=".encode() + b"\xff\xfe",
                         content_type="application/x-www-form-urlencoded", headers=GERMAN)
    assert_refused(answer, log_lines, 400, "malformed-form")
    assert support.firestore_snapshot() == before


def test_a_truncated_body_is_a_400_and_nothing_is_saved(client, emulators, tenant, log_lines):
    import io

    csrf = signed_in_csrf(client, emulators, tenant)
    before = support.firestore_snapshot()
    sent = f"csrf={csrf}&name=Renamed".encode()
    answer = client.post("/settings", input_stream=io.BytesIO(sent), content_type="application/x-www-form-urlencoded",
                         headers=GERMAN, environ_overrides={"CONTENT_LENGTH": str(len(sent) + 40)})
    assert_refused(answer, log_lines, 400, "truncated-body")
    assert support.firestore_snapshot() == before
