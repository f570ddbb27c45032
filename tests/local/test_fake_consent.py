"""Admin consent in the fake Entra ID (consent page, redirects, what consent changes), over HTTPS through
real clients (`requests`, `msal`)."""
from __future__ import annotations

import html
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import msal
import pytest
import requests

from local.fake_microsoft import start_servers
from local.fake_microsoft.client import FakeMicrosoftClient, FakeMicrosoftError

# The application permissions the fake app registration holds (relay: users, group scope, photos).
APP_ROLES = ("User.Read.All", "GroupMember.Read.All", "ProfilePhoto.Read.All")

CLIENT_ID = "6f1c0d2e-3b4a-4c5d-9e8f-0a1b2c3d4e5f"
SECRET = "fake-secret-for-consent-tests"
TENANT = "5b0d3c1e-8a7f-4e6d-9c2b-1a0f9e8d7c6b"
OTHER_TENANT = "2e4c6a8b-0d1f-4a3c-8e5b-7d9f1b3d5f7a"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
CALLBACK = "https://portal.example/onboard/callback"


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    servers = start_servers(tmp_path_factory.mktemp("fake-consent"), client_id=CLIENT_ID, client_secret=SECRET)
    with pytest.MonkeyPatch.context() as patch:  # MSAL's requests session trusts the fakes' CA through this
        patch.setenv("REQUESTS_CA_BUNDLE", servers.ca_pem)
        yield servers
    servers.stop()


@pytest.fixture
def fake(fakes):
    client = FakeMicrosoftClient(fakes.entra_url, fakes.ca_pem, timeout=10)
    client.reset()
    return client


@pytest.fixture
def http(fakes):
    with requests.Session() as session:
        session.verify = fakes.ca_pem
        session.trust_env = False
        yield session


def consent_url(fakes, tenant=TENANT, v2=True, **overrides) -> str:
    query = {"client_id": CLIENT_ID, "scope": GRAPH_SCOPE, "redirect_uri": CALLBACK, "state": "st-123"}
    if not v2:
        query.pop("scope")
    query.update(overrides)
    query = {k: v for k, v in query.items() if v is not None}
    return f"{fakes.entra_url}/{tenant}/{'v2.0/' if v2 else ''}adminconsent?{urlencode(query)}"


def answer(location: str) -> list[tuple[str, str]]:
    """The callback's query as (name, value) pairs in order, after checking it goes to the redirect URI."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return parse_qsl(parts.query, keep_blank_values=True)


def client_credentials(http, fakes, tenant=TENANT) -> requests.Response:
    return http.post(f"{fakes.authority(tenant)}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": GRAPH_SCOPE})


def graph_users(http, fakes, token: str) -> requests.Response:
    return http.get(f"{fakes.graph_url}/users?$top=1", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def assert_unauthorized_client(response: requests.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "unauthorized_client" and body["error_codes"] == [700016]
    assert body["error_description"].startswith(f"AADSTS700016: Application with identifier '{CLIENT_ID}' was not "
                                                "found in the directory")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)


def test_every_tenant_starts_consented_so_existing_tenants_keep_working(fakes, fake, http):
    response = client_credentials(http, fakes)
    assert response.status_code == 200, response.text
    claims = fake.graph_claims(TENANT, response.json()["access_token"])
    assert claims["roles"] == list(APP_ROLES)
    assert fake.call("GET", f"tenants/{TENANT}")["consent"] == "granted"


def test_unconsented_tenant_is_refused_by_entra_and_graph(fakes, fake, http):
    fake.consent(TENANT, "not_consented")
    assert_unauthorized_client(client_credentials(http, fakes))
    # MSAL sees the same refusal.
    app = msal.ConfidentialClientApplication(CLIENT_ID, client_credential=SECRET, authority=fakes.authority(TENANT),
                                             instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["error"] == "unauthorized_client" and result["error_codes"] == [700016]
    # An app token of that tenant (minted, or issued before consent was withdrawn) is refused by Graph.
    token = fake.mint("graph", TENANT)
    denied = graph_users(http, fakes, token)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    # Another tenant is untouched.
    assert client_credentials(http, fakes, OTHER_TENANT).status_code == 200


def test_consent_page_shows_the_request_and_accept_redirects_with_the_success_shape(fakes, fake, http):
    fake.consent(TENANT, "not_consented")
    company = fake.call("GET", f"tenants/{TENANT}")["company"]
    page = http.get(consent_url(fakes), timeout=10, allow_redirects=False)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    text = page.text
    assert '<html lang="en">' in text and "<h1>Permissions requested</h1>" in text
    assert html.escape(company) in text and "<code>User.Read.All</code>" in text
    assert '<button type="submit" name="decision" value="accept">Accept</button>' in text
    assert '<button type="submit" name="decision" value="decline">Cancel</button>' in text
    assert "<script" not in text

    location = fake.answer_consent_page(consent_url(fakes), "accept")
    assert answer(location) == [("admin_consent", "True"), ("tenant", TENANT), ("scope", GRAPH_SCOPE),
                                ("state", "st-123")]
    assert fake.call("GET", f"tenants/{TENANT}")["consent"] == "granted"
    # Now a fresh MSAL client gets a token that carries the granted role, and Graph answers.
    app = msal.ConfidentialClientApplication(CLIENT_ID, client_credential=SECRET, authority=fakes.authority(TENANT),
                                             instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert "access_token" in result, result
    assert fake.graph_claims(TENANT, result["access_token"])["roles"] == list(APP_ROLES)
    assert graph_users(http, fakes, result["access_token"]).status_code == 200
    assert fake.stats()["per_tenant"][TENANT]["admin_consents"] == 1


def test_cancel_redirects_with_entras_error_shape_and_grants_nothing(fakes, fake, http):
    fake.consent(TENANT, "not_consented")
    location = fake.answer_consent_page(consent_url(fakes), "decline")
    pairs = answer(location)
    assert [name for name, _ in pairs] == ["error", "error_description", "error_uri", "admin_consent", "state"]
    values = dict(pairs)
    assert values["error"] == "access_denied" and values["admin_consent"] == "True"
    assert values["state"] == "st-123" and "tenant" not in values
    assert values["error_description"].startswith("AADSTS65004: User declined to consent to access the app.\r\n"
                                                  "Trace ID: ")
    assert values["error_uri"] == f"{fakes.entra_url}/error?code=65004"
    assert fake.call("GET", f"tenants/{TENANT}")["consent"] == "not_consented"
    assert_unauthorized_client(client_credentials(http, fakes))


def test_v1_endpoint_and_a_missing_state(fakes, fake):
    fake.consent(TENANT, "not_consented")
    location = fake.answer_consent_page(consent_url(fakes, v2=False, state=None), "accept")
    assert answer(location) == [("admin_consent", "True"), ("tenant", TENANT)]


def test_a_domain_names_the_tenant(fakes, fake):
    fake.consent(TENANT, "not_consented")
    domain = fake.call("GET", f"tenants/{TENANT}")["domain"]
    location = fake.answer_consent_page(consent_url(fakes, tenant=domain), "accept")
    assert dict(answer(location))["tenant"] == TENANT


def test_granted_roles_come_from_the_tenants_consent(fakes, fake, http):
    # Consent given while the registration lacked User.Read.All: the token carries only what was granted.
    fake.consent(TENANT, "not_consented", roles=["GroupMember.Read.All"])
    fake.answer_consent_page(consent_url(fakes), "accept")
    token = client_credentials(http, fakes).json()["access_token"]
    assert fake.graph_claims(TENANT, token)["roles"] == ["GroupMember.Read.All"]
    assert graph_users(http, fakes, token).status_code == 403
    fake.consent(TENANT, roles=None)  # back to the app's own roles
    token = client_credentials(http, fakes).json()["access_token"]
    assert fake.graph_claims(TENANT, token)["roles"] == list(APP_ROLES)


def test_phone_tokens_only_where_the_consent_covers_access_as_user(fakes, fake, http):
    demo = fake.demo_user(TENANT)

    def phone() -> requests.Response:
        return http.post(f"{fakes.authority(TENANT)}/oauth2/v2.0/token", timeout=10, data={
            "grant_type": "password", "client_id": CLIENT_ID, "client_secret": SECRET,
            "username": demo["username"], "password": demo["password"], "scope": f"api://{CLIENT_ID}/access_as_user"})

    assert phone().status_code == 200, phone().text
    fake.consent(TENANT, scopes=[])  # consented while the registration did not list access_as_user as required
    refused = phone()
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert refused.json()["error_codes"] == [65001]
    assert client_credentials(http, fakes).status_code == 200  # the application permissions are unaffected
    fake.consent(TENANT, scopes=None)
    assert phone().status_code == 200


def test_consent_replication_delay(fakes, fake, http):
    fake.consent(TENANT, "not_consented")
    fake.configure(tenant=TENANT, consent_replication_seconds=1.0)
    fake.answer_consent_page(consent_url(fakes), "accept")
    assert_unauthorized_client(client_credentials(http, fakes))
    time.sleep(1.1)
    assert client_credentials(http, fakes).status_code == 200


def test_consent_by_default_off_makes_new_tenants_unconsented(fakes, fake, http):
    fake.configure(consent_by_default=False)
    assert_unauthorized_client(client_credentials(http, fakes, OTHER_TENANT))
    fake.answer_consent_page(consent_url(fakes, tenant=OTHER_TENANT), "accept")
    assert client_credentials(http, fakes, OTHER_TENANT).status_code == 200


def test_a_decision_cannot_be_tampered_with_or_moved_to_another_tenant(fakes, fake, http):
    fake.consent(TENANT, "not_consented")
    fake.consent(OTHER_TENANT, "not_consented")
    page = http.get(consent_url(fakes), timeout=10).text
    sealed = page.split('name="request" value="', 1)[1].split('"', 1)[0]
    moved = http.post(f"{fakes.entra_url}/{OTHER_TENANT}/v2.0/adminconsent",
                      data={"request": sealed, "decision": "accept"}, timeout=10, allow_redirects=False)
    tampered = http.post(f"{fakes.entra_url}/{TENANT}/v2.0/adminconsent",
                         data={"request": sealed[:-4] + "AAAA", "decision": "accept"}, timeout=10,
                         allow_redirects=False)
    undecided = http.post(f"{fakes.entra_url}/{TENANT}/v2.0/adminconsent", data={"request": sealed},
                          timeout=10, allow_redirects=False)
    for response in (moved, tampered, undecided):
        assert response.status_code == 400 and "Location" not in response.headers
        assert "AADSTS" in response.text
    assert fake.call("GET", f"tenants/{TENANT}")["consent"] == "not_consented"
    assert fake.call("GET", f"tenants/{OTHER_TENANT}")["consent"] == "not_consented"


@pytest.mark.parametrize("tenant, overrides, code", [
    (TENANT, {"client_id": None}, "AADSTS900144"),
    (TENANT, {"redirect_uri": None}, "AADSTS900144"),
    (TENANT, {"redirect_uri": "javascript:alert(1)"}, "AADSTS50011"),
    (TENANT, {"client_id": "00000000-0000-4000-8000-000000000000"}, "AADSTS700016"),
    ("common", {}, "AADSTS90130"),
    ("nowhere.example", {}, "AADSTS90002"),
])
def test_requests_that_cannot_be_answered_get_an_error_page(fakes, fake, http, tenant, overrides, code):
    response = http.get(consent_url(fakes, tenant=tenant, **overrides), timeout=10, allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html") and code in response.text
    assert "<script" not in response.text


def test_deleted_tenant_gets_an_error_page(fakes, fake, http):
    fake.call("DELETE", f"tenants/{TENANT}")
    response = http.get(consent_url(fakes), timeout=10, allow_redirects=False)
    assert response.status_code == 400 and "AADSTS90002" in response.text


@pytest.mark.parametrize("scope, error, code", [
    ("", "invalid_request", "AADSTS900144"),
    ("https://graph.microsoft.com/Mail.Send", "invalid_scope", "AADSTS70011"),
])
def test_bad_scope_redirects_with_an_error(fakes, fake, http, scope, error, code):
    response = http.get(consent_url(fakes, scope=scope), timeout=10, allow_redirects=False)
    assert response.status_code == 302
    values = dict(answer(response.headers["Location"]))
    assert values["error"] == error and values["error_description"].startswith(code)
    assert values["admin_consent"] == "True" and values["state"] == "st-123"


def test_control_api_refuses_bad_consent_bodies(fakes, fake):
    with pytest.raises(FakeMicrosoftError, match="400"):
        fake.consent(TENANT, "maybe")
    with pytest.raises(FakeMicrosoftError, match="400"):
        fake.consent(TENANT, roles="User.Read.All")
    with pytest.raises(FakeMicrosoftError, match="400"):
        fake.call("POST", f"tenants/{TENANT}/consent", {"state": "granted", "extra": 1})
    with pytest.raises(FakeMicrosoftError, match="400"):
        fake.configure(consent_replication_seconds=-1)
    described = fake.consent(TENANT, "granted", roles=["User.Read.All", "GroupMember.Read.All"])
    assert described["consent"] == "granted" and described["granted_roles"] == ["User.Read.All",
                                                                                "GroupMember.Read.All"]


def test_a_redirect_uri_the_app_has_not_registered_gets_an_error_page(fakes, fake, http):
    fake.call("POST", "apps", {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uris": [CALLBACK]})
    try:
        listed = http.get(consent_url(fakes), timeout=10, allow_redirects=False)
        assert listed.status_code == 200 and "Permissions requested" in listed.text
        other = http.get(consent_url(fakes, redirect_uri="https://evil.example/onboard/callback"), timeout=10,
                         allow_redirects=False)
        assert other.status_code == 400 and "Location" not in other.headers and "AADSTS50011" in other.text
    finally:
        fake.call("POST", "apps", {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uris": []})
