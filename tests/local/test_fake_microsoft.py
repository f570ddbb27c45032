"""The fakes of Entra ID and Graph, through real clients (`requests`, `msal`, PyJWT) over HTTPS."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import certifi
import jwt
import msal
import phonenumbers
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from local.fake_microsoft import DEFAULT_PROPERTIES, Directory, start_servers
from local.fake_microsoft.client import FakeMicrosoftClient
from local.fake_microsoft.keys import b64url_decode

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "6f1c0d2e-3b4a-4c5d-9e8f-0a1b2c3d4e5f"
SECRET = "fake-secret-for-tests"
APP_CLIENT_ID = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"  # the mobile app: a public client
TENANT = "7c1e4b2a-9d3f-4e8a-b6c5-2f1a0e9d8c7b"
OTHER_TENANT = "1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
API_SCOPE = f"api://{CLIENT_ID}/access_as_user"


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    servers = start_servers(tmp_path_factory.mktemp("fake-microsoft"), client_id=CLIENT_ID, client_secret=SECRET)
    with pytest.MonkeyPatch.context() as patch:
        # The real trust path: requests reads REQUESTS_CA_BUNDLE, urllib (PyJWKClient) SSL_CERT_FILE.
        patch.setenv("REQUESTS_CA_BUNDLE", servers.ca_pem)
        patch.setenv("SSL_CERT_FILE", servers.ca_pem)
        yield servers
    servers.stop()


@pytest.fixture
def http(fakes):
    FakeMicrosoftClient(fakes.entra_url, fakes.ca_pem).reset(keys=True)
    fakes.state.register_app(APP_CLIENT_ID, None, "Contact Sync App")
    with requests.Session() as session:
        yield session


def control(fakes, method: str, path: str, body: dict | None = None) -> dict:
    """A control-API call through the shared client (it fails unless the fake answers 200)."""
    return FakeMicrosoftClient(fakes.entra_url, fakes.ca_pem, timeout=10).call(method, path, body)


def graph_token(fakes, tenant: str = TENANT) -> str:
    response = requests.post(f"{fakes.authority(tenant)}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": GRAPH_SCOPE})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def page_through(http, url: str, headers: dict) -> tuple[list[dict], list[dict]]:
    """All pages of a Graph collection: (items, pages)."""
    items, pages = [], []
    while url:
        response = http.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        items.extend(page["value"])
        url = page.get("@odata.nextLink")
    return items, pages


def delta_round(http, url: str, headers: dict) -> tuple[list[dict], str]:
    items, pages = page_through(http, url, headers)
    assert all("@odata.deltaLink" not in p for p in pages[:-1])
    assert "@odata.nextLink" not in pages[-1]
    return items, pages[-1]["@odata.deltaLink"]


def password_grant(fakes, username: str, password: str, scope: str = API_SCOPE, tenant: str = TENANT):
    return requests.post(f"{fakes.authority(tenant)}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "password", "client_id": APP_CLIENT_ID, "username": username, "password": password,
        "scope": f"{scope} openid profile offline_access", "client_info": "1"})


def assert_entra_error(response, status: int, error: str, code: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert "\r\nTrace ID: " in body["error_description"] and "\r\nCorrelation ID: " in body["error_description"]
    for name in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert body[name], name
    uuid.UUID(body["trace_id"])
    return body


def assert_graph_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    inner = error["innerError"]
    assert inner["date"] and inner["request-id"]
    return error


# ---- TLS ------------------------------------------------------------------------------------------
def test_served_over_https_trusted_only_through_the_throwaway_ca(fakes, http):
    url = f"{fakes.entra_url}/{TENANT}/v2.0/.well-known/openid-configuration"
    with pytest.raises(requests.exceptions.SSLError):
        http.get(url, verify=certifi.where(), timeout=10)  # public roots do not vouch for the fake
    assert http.get(url, timeout=10).status_code == 200
    assert fakes.entra_url.startswith("https://127.0.0.1:") and fakes.graph_url.startswith("https://127.0.0.1:")
    assert fakes.graph_url.endswith("/v1.0")
    cert = x509.load_pem_x509_certificate((Path(fakes.ca.server_cert)).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)


# ---- Entra ID metadata and keys -------------------------------------------------------------------
def test_openid_configuration_has_the_real_v2_shape(fakes, http):
    doc = http.get(f"{fakes.entra_url}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=10).json()
    base = fakes.entra_url
    assert doc["issuer"] == f"{base}/{TENANT}/v2.0"
    assert doc["token_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/authorize"
    assert doc["jwks_uri"] == f"{base}/{TENANT}/discovery/v2.0/keys"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "client_secret_post" in doc["token_endpoint_auth_methods_supported"]

    common = http.get(f"{base}/common/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert common["issuer"] == f"{base}/{{tenantid}}/v2.0"
    assert common["jwks_uri"] == f"{base}/common/discovery/v2.0/keys"

    control(fakes, "DELETE", f"tenants/{OTHER_TENANT}")
    gone = http.get(f"{base}/{OTHER_TENANT}/v2.0/.well-known/openid-configuration", timeout=10)
    assert_entra_error(gone, 400, "invalid_tenant", 90002)


def test_jwks_keys_carry_kid_x5t_x5c_and_the_issuer_template(fakes, http):
    before = control(fakes, "GET", "stats")["jwks_fetches"]
    keys = http.get(f"{fakes.entra_url}/common/discovery/v2.0/keys", timeout=10).json()["keys"]
    assert control(fakes, "GET", "stats")["jwks_fetches"] == before + 1
    assert len(keys) == 1
    key = keys[0]
    assert {"kty", "use", "kid", "x5t", "n", "e", "x5c", "issuer"} <= set(key)
    assert key["kty"] == "RSA" and key["use"] == "sig" and key["kid"] == key["x5t"]
    assert key["issuer"] == f"{fakes.entra_url}/{{tenantid}}/v2.0"
    cert = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    jwk_numbers = jwt.PyJWK(key, "RS256").key.public_numbers()
    assert cert.public_key().public_numbers() == jwk_numbers
    v1 = http.get(f"{fakes.entra_url}/common/discovery/keys", timeout=10).json()["keys"]
    assert v1[0]["kid"] == key["kid"] and "issuer" not in v1[0]


# ---- client credentials ---------------------------------------------------------------------------
def test_msal_client_credentials_against_the_fake_and_its_cache(fakes, http):
    app = msal.ConfidentialClientApplication(CLIENT_ID, client_credential=SECRET,
                                             authority=fakes.authority(TENANT), instance_discovery=False)
    first = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert first.get("token_source") == "identity_provider", first
    assert first["token_type"] == "Bearer" and first["expires_in"] == 3599
    second = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert control(fakes, "GET", "stats")["token_requests_by_grant"] == {"client_credentials": 1}

    with pytest.raises(jwt.PyJWTError):  # Graph's tokens "might not always be a JWT": nothing can decode them
        jwt.decode(first["access_token"], options={"verify_signature": False})
    claims = control(fakes, "POST", f"tenants/{TENANT}/graph-token", {"token": first["access_token"]})
    assert claims["aud"] == "https://graph.microsoft.com" and claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["tid"] == TENANT and claims["appid"] == CLIENT_ID
    assert claims["roles"] == ["User.Read.All", "GroupMember.Read.All", "ProfilePhoto.Read.All"]
    assert claims["ver"] == "1.0" and claims["idtyp"] == "app"
    users = http.get(f"{fakes.graph_url}/users", headers=auth(first["access_token"]), timeout=10)
    assert users.status_code == 200


def test_client_credentials_errors_have_the_real_bodies(fakes, http):
    url = f"{fakes.authority(TENANT)}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": GRAPH_SCOPE}
    body = assert_entra_error(http.post(url, data={**form, "client_secret": "wrong"}, timeout=10),
                              401, "invalid_client", 7000215)
    assert f"for a secret added to app '{CLIENT_ID}'" in body["error_description"]
    assert_entra_error(http.post(url, data={**form, "scope": "https://graph.microsoft.com/.default openid"},
                                 timeout=10), 400, "invalid_scope", 70011)
    assert_entra_error(http.post(url, data={**form, "scope": "https://graph.microsoft.com/User.Read.All"},
                                 timeout=10), 400, "invalid_scope", 1002012)
    assert_entra_error(http.post(url, data={**form, "client_id": str(uuid.uuid4())}, timeout=10),
                       400, "unauthorized_client", 700016)
    control(fakes, "DELETE", f"tenants/{OTHER_TENANT}")
    assert_entra_error(http.post(f"{fakes.authority(OTHER_TENANT)}/oauth2/v2.0/token", data=form, timeout=10),
                       400, "invalid_request", 90002)
    assert_entra_error(http.post(f"{fakes.authority('common')}/oauth2/v2.0/token", data=form, timeout=10),
                       400, "invalid_request", 50059)

    app = msal.ConfidentialClientApplication(CLIENT_ID, client_credential="wrong",
                                             authority=fakes.authority(TENANT), instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]


def test_revoked_consent_fails_like_entra_and_graph(fakes, http):
    control(fakes, "POST", f"tenants/{TENANT}/revoke-consent", {"mode": "service_principal"})
    url = f"{fakes.authority(TENANT)}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": GRAPH_SCOPE}
    assert_entra_error(http.post(url, data=form, timeout=10), 400, "invalid_client", 7000229)

    control(fakes, "POST", f"tenants/{TENANT}/revoke-consent", {"mode": "roles"})
    token = http.post(url, data=form, timeout=10).json()["access_token"]
    assert "roles" not in control(fakes, "POST", f"tenants/{TENANT}/graph-token", {"token": token})
    denied = http.get(f"{fakes.graph_url}/users", headers=auth(token), timeout=10)
    error = assert_graph_error(denied, 403, "Authorization_RequestDenied")
    assert error["message"] == "Insufficient privileges to complete the operation."

    control(fakes, "POST", f"tenants/{TENANT}/grant-consent")
    token = http.post(url, data=form, timeout=10).json()["access_token"]
    assert http.get(f"{fakes.graph_url}/users", headers=auth(token), timeout=10).status_code == 200


# ---- password grant (users of a tenant sign in to our API) ----------------------------------------
def test_password_grant_issues_v2_tokens_for_our_api(fakes, http):
    demo = control(fakes, "GET", f"tenants/{TENANT}/demo-user")
    response = password_grant(fakes, demo["username"], demo["password"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["scope"] == API_SCOPE
    assert {"access_token", "refresh_token", "id_token", "client_info", "expires_in"} <= set(body)
    assert 3600 <= body["expires_in"] < 5400

    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header == {"typ": "JWT", "alg": "RS256", "kid": header["kid"]}
    jwks = jwt.PyJWKClient(f"{fakes.entra_url}/common/discovery/v2.0/keys")
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=CLIENT_ID,
                        issuer=f"{fakes.entra_url}/{TENANT}/v2.0",
                        options={"require": ["exp", "nbf", "iat", "tid", "scp", "oid", "sub"]})
    assert key._jwk_data["issuer"].replace("{tenantid}", claims["tid"]) == claims["iss"]
    assert claims["ver"] == "2.0" and claims["scp"] == "access_as_user" and claims["tid"] == TENANT
    assert claims["azp"] == APP_CLIENT_ID and claims["azpacr"] == "0"
    assert claims["oid"] == demo["id"] and claims["preferred_username"] == demo["username"]
    assert claims["name"] == demo["displayName"] and claims["sub"] != claims["oid"]
    assert claims["nbf"] <= time.time() < claims["exp"] and claims["iat"] <= time.time()
    assert claims["uti"]

    refreshed = msal.PublicClientApplication(APP_CLIENT_ID, authority=fakes.authority(TENANT),
                                             instance_discovery=False).acquire_token_by_refresh_token(
        body["refresh_token"], [API_SCOPE])
    assert refreshed["token_source"] == "identity_provider" and "access_token" in refreshed


def test_password_grant_errors(fakes, http):
    demo = control(fakes, "GET", f"tenants/{TENANT}/demo-user")
    assert_entra_error(password_grant(fakes, demo["username"], "wrong"), 400, "invalid_grant", 50126)
    directory = control(fakes, "GET", f"tenants/{TENANT}")
    assert_entra_error(password_grant(fakes, f"nobody.here@{directory['domain']}", demo["password"]),
                       400, "invalid_grant", 50034)
    assert_entra_error(password_grant(fakes, demo["username"], demo["password"], scope=f"api://{CLIENT_ID}/admin"),
                       400, "invalid_scope", 70011)
    # A user of another tenant does not exist here.
    other = control(fakes, "GET", f"tenants/{OTHER_TENANT}/demo-user")
    assert_entra_error(password_grant(fakes, other["username"], other["password"]), 400, "invalid_grant", 50034)


# ---- Graph: users and paging ----------------------------------------------------------------------
def test_users_pages_by_top_and_absolute_next_links(fakes, http):
    headers = auth(graph_token(fakes))
    items, pages = page_through(http, f"{fakes.graph_url}/users?$top=60", headers)
    assert [len(p["value"]) for p in pages] == [60, 60, 60, 60, 10]  # 250 users by default
    for page in pages[:-1]:
        link = page["@odata.nextLink"]
        assert link.startswith(f"{fakes.graph_url}/users?") and "$skiptoken=" in link and "$top=60" in link
    assert pages[0]["@odata.context"] == f"{fakes.graph_url}/$metadata#users"
    assert len({u["id"] for u in items}) == 250
    assert all(list(u) == list(DEFAULT_PROPERTIES) for u in items)  # no department/companyName by default

    default_page = http.get(f"{fakes.graph_url}/users", headers=headers, timeout=10)
    assert len(default_page.json()["value"]) == 100
    assert default_page.headers["x-ms-resource-unit"] == "2"
    assert default_page.headers["Content-Type"].startswith("application/json")
    assert_graph_error(http.get(f"{fakes.graph_url}/users?$top=1000", headers=headers, timeout=10),
                       400, "Request_UnsupportedQuery")
    assert_graph_error(http.get(f"{fakes.graph_url}/users?$top=0", headers=headers, timeout=10),
                       400, "Request_UnsupportedQuery")
    assert len(http.get(f"{fakes.graph_url}/users?$top=999", headers=headers, timeout=10).json()["value"]) == 250
    assert_graph_error(http.get(f"{fakes.graph_url}/users?$skip=5", headers=headers, timeout=10),
                       400, "Request_BadRequest")
    tampered = pages[0]["@odata.nextLink"][:-4] + "AAAA"
    assert http.get(tampered, headers=headers, timeout=10).status_code == 400


def test_users_by_id_filter_answers_like_graph(fakes, http):
    """`$filter=id in (…)` (up to 15 values without advanced queries) and `id eq '…'`: the existing users
    only, one resource unit with $select; a single user costs the same; other filters are refused."""
    headers = auth(graph_token(fakes))
    ids = [u["id"] for u in http.get(f"{fakes.graph_url}/users?$top=20&$select=id", headers=headers,
                                     timeout=10).json()["value"]]
    control(fakes, "POST", f"tenants/{TENANT}/changes", {"remove": [{"id": ids[3], "reason": "deleted"}]})
    unknown = str(uuid.uuid4())
    wanted = ",".join(f"'{i}'" for i in [*ids[:5], unknown])
    response = http.get(f"{fakes.graph_url}/users", params={"$filter": f"id in ({wanted})",
                                                            "$select": "id,displayName"}, headers=headers, timeout=10)
    assert response.status_code == 200 and response.headers["x-ms-resource-unit"] == "1"
    page = response.json()
    assert [u["id"] for u in page["value"]] == [ids[0], ids[1], ids[2], ids[4]]  # deleted and unknown left out
    assert all(list(u) == ["id", "displayName"] for u in page["value"]) and "@odata.nextLink" not in page
    one = http.get(f"{fakes.graph_url}/users", params={"$filter": f"id eq '{ids[1]}'"}, headers=headers, timeout=10)
    assert [u["id"] for u in one.json()["value"]] == [ids[1]] and one.headers["x-ms-resource-unit"] == "2"
    single = http.get(f"{fakes.graph_url}/users/{ids[1]}?$select=id", headers=headers, timeout=10)
    assert single.status_code == 200 and single.headers["x-ms-resource-unit"] == "1"

    sixteen = ",".join(f"'{uuid.uuid4()}'" for _ in range(16))
    error = assert_graph_error(http.get(f"{fakes.graph_url}/users", params={"$filter": f"id in ({sixteen})"},
                                        headers=headers, timeout=10), 400, "Request_UnsupportedQuery")
    assert "Max allowed: 15" in error["message"]
    for other in ("displayName eq 'Anna'", "id in (1,2)"):
        assert http.get(f"{fakes.graph_url}/users", params={"$filter": other}, headers=headers,
                        timeout=10).status_code == 400
    assert_graph_error(http.get(f"{fakes.graph_url}/users/delta", params={"$filter": f"id eq '{ids[0]}'"},
                                headers=headers, timeout=10), 400, "Request_UnsupportedQuery")


def test_select_is_honoured(fakes, http):
    headers = auth(graph_token(fakes))
    response = http.get(f"{fakes.graph_url}/users", params={"$select": "displayName,department,mobilePhone",
                                                            "$top": "5"}, headers=headers, timeout=10)
    page = response.json()
    assert response.headers["x-ms-resource-unit"] == "1"
    assert page["@odata.context"].endswith("$metadata#users(displayName,department,mobilePhone)")
    assert all(list(u) == ["displayName", "department", "mobilePhone"] for u in page["value"])
    next_page = http.get(page["@odata.nextLink"], headers=headers, timeout=10).json()
    assert all(list(u) == ["displayName", "department", "mobilePhone"] for u in next_page["value"])

    delta = http.get(f"{fakes.graph_url}/users/delta", params={"$select": "companyName"}, headers=headers,
                     timeout=10).json()
    # delta always sends id, and leaves out a property that was never set
    assert all(set(u) == {"companyName", "id"} if u.get("companyName") else set(u) == {"id"} for u in delta["value"])
    assert any(set(u) == {"id"} for u in delta["value"]) and any("companyName" in u for u in delta["value"])
    assert_graph_error(http.get(f"{fakes.graph_url}/users", params={"$select": "displayName,shoeSize"},
                                headers=headers, timeout=10), 400, "BadRequest")


# ---- Graph: delta ---------------------------------------------------------------------------------
def test_delta_round_trip_with_changes_and_removals(fakes, http):
    control(fakes, "POST", f"tenants/{TENANT}/directory", {"size": 30})
    headers = auth(graph_token(fakes))
    first = http.get(f"{fakes.graph_url}/users/delta?$select=displayName,mobilePhone,jobTitle",
                     headers={**headers, "Prefer": "odata.maxpagesize=7"}, timeout=10)
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=7"
    assert len(first.json()["value"]) == 7
    items, delta_link = delta_round(http, f"{fakes.graph_url}/users/delta?$select=displayName,mobilePhone,jobTitle",
                                    {**headers, "Prefer": "odata.maxpagesize=7"})
    selected = {"displayName", "mobilePhone", "jobTitle", "id"}
    assert len(items) == 30 and all(set(u) == {k for k in selected if k == "id" or u.get(k) is not None}
                                    for u in items)
    assert any(set(u) != selected for u in items)  # never-set properties are left out, not null
    assert delta_link.startswith(f"{fakes.graph_url}/users/delta?$deltatoken=")

    ids = [u["id"] for u in items]
    changed = control(fakes, "POST", f"tenants/{TENANT}/changes", {
        "update": [{"id": ids[0], "fields": {"mobilePhone": "+49 151 11111111"}},
                   {"id": ids[1], "fields": {"department": "Legal"}}],  # not selected: not reported
        "remove": [{"id": ids[2], "reason": "deleted"}, {"id": ids[3], "reason": "changed"}],
        "add": [{"fields": {"displayName": "Neu Angestellte"}}]})
    added = changed["added"][0]

    minimal, _ = delta_round(http, delta_link, {**headers, "Prefer": "return=minimal"})
    assert {"id": ids[0], "mobilePhone": "+49 151 11111111"} in minimal  # return=minimal: only what changed
    changes, next_link = delta_round(http, delta_link, headers)
    by_id = {c["id"]: c for c in changes}
    # Without return=minimal: every selected property that is set
    assert by_id[ids[0]] == {**items[0], "mobilePhone": "+49 151 11111111"}
    assert ids[1] not in by_id
    assert by_id[ids[2]] == {"id": ids[2], "@removed": {"reason": "deleted"}}
    assert by_id[ids[3]] == {"id": ids[3], "@removed": {"reason": "changed"}}
    new_user = {"displayName": "Neu Angestellte", "mobilePhone": added["mobilePhone"], "jobTitle": added["jobTitle"],
                "id": added["id"]}
    assert by_id[added["id"]] == {k: v for k, v in new_user.items() if v is not None}
    assert len(changes) == 4

    quiet, _ = delta_round(http, next_link, headers)
    assert quiet == []
    control(fakes, "POST", f"tenants/{TENANT}/changes", {"restore": [{"id": ids[3]}]})
    restored, _ = delta_round(http, next_link, headers)
    assert [r["id"] for r in restored] == [ids[3]] and restored[0] == items[3]
    latest = http.get(f"{fakes.graph_url}/users/delta?$deltatoken=latest", headers=headers, timeout=10).json()
    assert latest["value"] == [] and "@odata.deltaLink" in latest


def test_delta_first_round_removed_items_and_repeats(fakes, http):
    control(fakes, "POST", f"tenants/{TENANT}/directory", {"size": 20})
    ids = [u["user"]["id"] for u in control(fakes, "GET", f"tenants/{TENANT}/users?limit=20")["users"]]
    control(fakes, "POST", f"tenants/{TENANT}/changes", {"remove": [{"id": ids[5]}]})
    headers = auth(graph_token(fakes))
    items, _ = delta_round(http, f"{fakes.graph_url}/users/delta?$top=6", headers)
    assert {"id": ids[5], "@removed": {"reason": "deleted"}} in items and len(items) == 20

    control(fakes, "POST", "config", {"delta_initial_removed": False, "repeat_items": True})
    items, _ = delta_round(http, f"{fakes.graph_url}/users/delta?$top=6", headers)
    seen = [i["id"] for i in items]
    assert len(seen) > len(set(seen))  # items repeat: clients must de-duplicate by id
    assert set(seen) == set(ids) - {ids[5]}
    listed, _ = page_through(http, f"{fakes.graph_url}/users?$top=6", headers)
    assert ids[5] not in {u["id"] for u in listed}


def test_expired_delta_token_answers_sync_state_not_found_or_410(fakes, http):
    control(fakes, "POST", f"tenants/{TENANT}/directory", {"size": 12})
    headers = auth(graph_token(fakes))
    _, delta_link = delta_round(http, f"{fakes.graph_url}/users/delta?$select=displayName", headers)
    control(fakes, "POST", f"tenants/{TENANT}/expire-delta-tokens")
    error = assert_graph_error(http.get(delta_link, headers=headers, timeout=10), 400, "syncStateNotFound")
    assert "delta token is expired" in error["message"]

    _, delta_link = delta_round(http, f"{fakes.graph_url}/users/delta?$select=displayName", headers)
    control(fakes, "POST", "config", {"tenant": TENANT, "delta_expired_mode": "410", "delta_token_ttl_seconds": 0})
    gone = http.get(delta_link, headers=headers, timeout=10, allow_redirects=False)
    assert gone.status_code == 410
    location = gone.headers["Location"]
    assert location.startswith(f"{fakes.graph_url}/users/delta?") and location.endswith("$deltatoken=")
    restarted, _ = delta_round(http, location, headers)  # a full round again
    assert len(restarted) == 12 and all(set(u) == {"displayName", "id"} for u in restarted)


# ---- Graph: failures ------------------------------------------------------------------------------
def test_throttling_429_with_fractional_retry_after(fakes, http):
    headers = auth(graph_token(fakes))
    control(fakes, "POST", "config", {"faults": [{"target": "graph", "status": 429, "retry_after": 2.128,
                                                  "count": 2}]})
    for _ in range(2):
        throttled = http.get(f"{fakes.graph_url}/users", headers=headers, timeout=10)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "2.128"
        assert float(throttled.headers["Retry-After"]) == pytest.approx(2.128)
        assert throttled.headers["x-ms-throttle-scope"] == f"Tenant_Application/ReadOnly/{CLIENT_ID}/{TENANT}"
        assert throttled.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
        assert throttled.headers["x-ms-resource-unit"]
        error = throttled.json()["error"]
        assert error["code"] == "TooManyRequests" and error["message"] == "Please retry again later."
        inner = error["innerError"]
        assert inner["code"] == "429" and inner["status"] == "429" and inner["message"] == "Please retry after"
        assert inner["date"] and inner["request-id"]
    assert http.get(f"{fakes.graph_url}/users", headers=headers, timeout=10).status_code == 200

    control(fakes, "POST", "config", {"faults": [{"status": 503, "retry_after": 1}, {"status": 504}]})
    unavailable = http.get(f"{fakes.graph_url}/users", headers=headers, timeout=10)
    assert_graph_error(unavailable, 503, "serviceNotAvailable")
    assert unavailable.headers["Retry-After"] == "1"
    timeout = http.get(f"{fakes.graph_url}/users", headers=headers, timeout=10)
    assert timeout.status_code == 504 and "Retry-After" not in timeout.headers
    assert control(fakes, "GET", "stats")["faults_injected"] == 4


def test_resource_unit_budget_throttles_per_tenant(fakes, http):
    control(fakes, "POST", "config", {"tenant": TENANT, "ru_limit_per_10s": 5})
    headers = auth(graph_token(fakes))
    statuses = [http.get(f"{fakes.graph_url}/users", headers=headers, timeout=10) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]  # 2 RU each without $select
    assert 0 < float(statuses[2].headers["Retry-After"]) <= 10
    other = http.get(f"{fakes.graph_url}/users", headers=auth(graph_token(fakes, OTHER_TENANT)), timeout=10)
    assert other.status_code == 200


def test_failure_mid_stream_after_n_pages_and_cut_connections(fakes, http):
    headers = auth(graph_token(fakes))
    control(fakes, "POST", "config", {"faults": [{"target": "users", "status": 503, "skip": 2, "pages": "next"}]})
    url, statuses = f"{fakes.graph_url}/users?$top=50", []
    while url:
        response = http.get(url, headers=headers, timeout=10)
        statuses.append(response.status_code)
        if response.status_code != 200:
            break
        url = response.json().get("@odata.nextLink")
    assert statuses == [200, 200, 200, 503]  # first page, two next pages, then the failure

    control(fakes, "POST", "config", {"faults": [{"target": "users", "status": "disconnect", "pages": "next"}]})
    first = http.get(f"{fakes.graph_url}/users?$top=50", headers=headers, timeout=10).json()
    with pytest.raises(requests.exceptions.RequestException):
        http.get(first["@odata.nextLink"], headers=headers, timeout=10).json()
    again = http.get(first["@odata.nextLink"], headers=headers, timeout=10)  # the fault fired once
    assert again.status_code == 200 and len(again.json()["value"]) == 50


def test_slow_pages(fakes, http):
    headers = auth(graph_token(fakes))
    control(fakes, "POST", "config", {"tenant": TENANT, "page_delay_seconds": 0.3})
    started = time.perf_counter()
    assert http.get(f"{fakes.graph_url}/users", headers=headers, timeout=10).status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    http.get(f"{fakes.graph_url}/users", headers=auth(graph_token(fakes, OTHER_TENANT)), timeout=10)
    assert time.perf_counter() - started < 0.3


# ---- Graph: authentication ------------------------------------------------------------------------
def test_unauthenticated_requests_get_graphs_401_envelope(fakes, http):
    response = http.get(f"{fakes.graph_url}/users", headers={"client-request-id": "abc-123"}, timeout=10)
    error = assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert error["message"] == "Access token is empty."
    assert error["innerError"]["client-request-id"] == "abc-123"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm=""')

    now = int(time.time())
    bad_tokens = {
        "garbage": "not-a-jwt",
        "expired": fakes.mint("graph", TENANT, claims={"exp": now - 3600, "nbf": now - 7200, "iat": now - 7200}),
        "api token, not Graph": fakes.mint("user", TENANT),
        "outside key": fakes.mint("graph", TENANT, key="outside"),
        "alg none": fakes.mint("graph", TENANT, key="none"),
        "hs256 with public key": fakes.mint("graph", TENANT, key="hs256-public"),
        "issuer of another tenant": fakes.mint("graph", TENANT, claims={"iss": f"https://sts.windows.net/{OTHER_TENANT}/"}),
    }
    for name, token in bad_tokens.items():
        rejected = http.get(f"{fakes.graph_url}/users", headers=auth(token), timeout=10)
        assert rejected.status_code == 401, name
        assert rejected.json()["error"]["code"] == "InvalidAuthenticationToken", name
    assert http.get(f"{fakes.graph_url}/users", headers=auth(fakes.mint("graph", TENANT)),
                    timeout=10).status_code == 200


def test_tenant_comes_from_the_token(fakes, http):
    mine = http.get(f"{fakes.graph_url}/users?$top=3", headers=auth(graph_token(fakes)), timeout=10).json()
    theirs = http.get(f"{fakes.graph_url}/users?$top=3", headers=auth(graph_token(fakes, OTHER_TENANT)),
                      timeout=10).json()
    assert {u["id"] for u in mine["value"]}.isdisjoint(u["id"] for u in theirs["value"])
    domain = control(fakes, "GET", f"tenants/{TENANT}")["domain"]
    assert all(u["userPrincipalName"].endswith("@" + domain) for u in mine["value"])
    # A skip token of one tenant is refused for another.
    foreign = http.get(mine["@odata.nextLink"], headers=auth(graph_token(fakes, OTHER_TENANT)), timeout=10)
    assert foreign.status_code == 400


# ---- keys -----------------------------------------------------------------------------------------
def test_key_rotation(fakes, http):
    keys_url = f"{fakes.entra_url}/common/discovery/v2.0/keys"
    old_kid = http.get(keys_url, timeout=10).json()["keys"][0]["kid"]
    old_token = fakes.mint("graph", TENANT)  # a JWT for Graph (Graph takes those too)
    rotated = control(fakes, "POST", "rotate-keys")
    new_kid = rotated["new_kid"]
    assert rotated["current_kid"] == new_kid != old_kid
    assert {k["kid"] for k in http.get(keys_url, timeout=10).json()["keys"]} == {old_kid, new_kid}
    new_token = fakes.mint("graph", TENANT)
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    for token in (old_token, new_token):  # both published: both accepted
        assert http.get(f"{fakes.graph_url}/users", headers=auth(token), timeout=10).status_code == 200

    # A verifier that cached only the old key finds the new kid after one refetch.
    fetches = control(fakes, "GET", "stats")["jwks_fetches"]
    client = jwt.PyJWKClient(keys_url)
    assert client.get_signing_key(new_kid).key_id == new_kid
    assert control(fakes, "GET", "stats")["jwks_fetches"] == fetches + 1

    assert control(fakes, "POST", "retire-keys")["retired"] == [old_kid]
    assert [k["kid"] for k in http.get(keys_url, timeout=10).json()["keys"]] == [new_kid]
    assert_graph_error(http.get(f"{fakes.graph_url}/users", headers=auth(old_token), timeout=10),
                       401, "InvalidAuthenticationToken")
    retired_signed = fakes.mint("graph", TENANT, key=old_kid)
    assert jwt.get_unverified_header(retired_signed)["kid"] == old_kid

    staged = control(fakes, "POST", "rotate-keys", {"publish_only": True})
    assert staged["current_kid"] == new_kid and staged["new_kid"] in staged["published_kids"]


def test_mint_endpoint_makes_good_and_bad_tokens(fakes, http):
    keys = http.get(f"{fakes.entra_url}/common/discovery/v2.0/keys", timeout=10).json()["keys"]
    public_key = jwt.PyJWK(keys[0], "RS256").key
    now = int(time.time())
    claims = {"iss": f"{fakes.entra_url}/{TENANT}/v2.0", "aud": CLIENT_ID, "tid": TENANT, "scp": "access_as_user",
              "exp": now + 600, "nbf": now, "iat": now}

    def mint(**body):
        response = http.post(f"{fakes.entra_url}/_fake/mint", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["token"]

    good = mint(claims=claims, header={})
    assert jwt.decode(good, public_key, algorithms=["RS256"], audience=CLIENT_ID)["tid"] == TENANT
    assert jwt.get_unverified_header(good)["kid"] == keys[0]["kid"]

    outside = mint(claims=claims, key="outside")
    assert jwt.get_unverified_header(outside)["kid"] == keys[0]["kid"]  # looks right, signed by another key
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(outside, public_key, algorithms=["RS256"], audience=CLIENT_ID)

    unsigned = mint(claims=claims, key="none")
    assert jwt.get_unverified_header(unsigned)["alg"] == "none" and unsigned.endswith(".")

    confused = mint(claims=claims, key="hs256-public")
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input, _, signature = confused.rpartition(".")
    expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert b64url_decode(signature) == expected
    assert jwt.get_unverified_header(confused)["alg"] == "HS256"

    no_exp = mint(kind="user", tenant=TENANT, claims={"exp": None}, header={"kid": "unknown-kid"})
    assert "exp" not in jwt.decode(no_exp, options={"verify_signature": False})
    assert jwt.get_unverified_header(no_exp)["kid"] == "unknown-kid"
    user = jwt.decode(mint(kind="user", tenant=TENANT), public_key, algorithms=["RS256"], audience=CLIENT_ID)
    assert user["ver"] == "2.0" and user["iss"] == f"{fakes.entra_url}/{TENANT}/v2.0"
    assert http.post(f"{fakes.entra_url}/_fake/mint", json={"kind": "user"}, timeout=10).status_code == 400


# ---- the synthetic directory ----------------------------------------------------------------------
def test_directory_is_deterministic_lazy_and_invertible():
    first, again = Directory(TENANT, 500), Directory(TENANT, 500)
    assert [first.generate(i) for i in range(50)] == [again.generate(i) for i in range(50)]
    assert first.generate(0)["id"] != Directory(OTHER_TENANT, 500).generate(0)["id"]

    tracemalloc.start()
    big = Directory(TENANT, 100_000)
    last = big.user(99_999)
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size < 512 * 1024  # no per-user storage
    assert big.index_of(last["id"]) == 99_999
    assert big.index_of_upn(last["userPrincipalName"].upper()) == 99_999
    assert big.user(100_000) is None and big.index_of(str(uuid.uuid4())) is None
    upns = [big.generate(i)["userPrincipalName"] for i in range(0, 100_000, 7)]
    assert len(set(upns)) == len(upns)


def test_directory_looks_like_a_real_mixed_company():
    users = [Directory(TENANT, 2000).generate(i) for i in range(2000)]
    assert len({u["surname"] for u in users}) > 150 and len({u["givenName"] for u in users}) > 150
    assert any(u["givenName"] is None for u in users)
    assert any("ü" in (u["surname"] or "") or "ö" in (u["surname"] or "") for u in users)
    mobiles = [u["mobilePhone"] for u in users]
    business = [n for u in users for n in u["businessPhones"]]
    assert 0.1 < mobiles.count(None) / len(users) < 0.3
    assert any(u["businessPhones"] == [] for u in users)
    numbers = [m for m in mobiles if m] + business
    assert any(n.startswith("+49 ") for n in numbers) and any(n.startswith("0") and "/" in n for n in numbers)
    assert any(n.startswith("+44") for n in numbers) and any(len(n) == 12 and n[3] == "-" for n in numbers)

    def valid(number: str) -> bool:
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(number, "DE"))
        except phonenumbers.NumberParseException:
            return False

    international = [n for n in numbers if n.startswith("+")]
    share_valid = sum(valid(n) for n in international) / len(international)
    assert 0.8 < share_valid < 1.0  # mostly valid, some deliberately invalid
    german_national = [n for n in numbers if n.startswith("0") and not n.startswith("00")]
    assert sum(valid(n) for n in german_national) > len(german_national) * 0.3


# ---- the command line ------------------------------------------------------------------------------
def test_cli_prints_one_ready_line_and_stops_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "local.fake_microsoft", "--state-dir", str(tmp_path), "--client-id", CLIENT_ID,
         "--client-secret", SECRET], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        ready = json.loads(process.stdout.readline())
        assert set(ready) == {"entra", "graph", "ca"}
        assert ready["ca"] == str(tmp_path / "ca.pem")
        doc = requests.get(f"{ready['entra']}/{TENANT}/v2.0/.well-known/openid-configuration",
                           verify=ready["ca"], timeout=10).json()
        assert doc["issuer"] == f"{ready['entra']}/{TENANT}/v2.0"
        token = requests.post(f"{ready['entra']}/{TENANT}/oauth2/v2.0/token", verify=ready["ca"], timeout=10, data={
            "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
            "scope": GRAPH_SCOPE}).json()["access_token"]
        users = requests.get(f"{ready['graph']}/users", headers=auth(token), verify=ready["ca"], timeout=10)
        assert users.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
