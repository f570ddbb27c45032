"""The fake Entra ID's interactive sign-in (authorization endpoint + authorization_code grant with PKCE),
checked against the behaviour Entra ID documents: error pages vs. redirected errors, single-use codes,
redirect_uri and code_verifier checks, and the ID token's claims."""
from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from local.fake_microsoft.authorize import GLOBAL_ADMINISTRATOR, USER_ROLE
from local.stack import ENTRA_CLIENT_ID


@pytest.fixture
def fake(stack):
    session = requests.Session()
    session.verify = stack.urls["ca"]
    return session


def _authorize_url(stack, segment="organizations"):
    return f"{stack.urls['entra']}/{segment}/oauth2/v2.0/authorize"


def _params(stack, verifier, **overrides):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"client_id": ENTRA_CLIENT_ID, "response_type": "code",
              "redirect_uri": f"{stack.portal_url}/auth/callback",
              "scope": "openid profile", "state": "s-123", "nonce": "n-456", "code_challenge": challenge,
              "code_challenge_method": "S256", "response_mode": "query"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def _code(fake, stack, login, verifier, **overrides):
    answer = fake.post(_authorize_url(stack), data={**_params(stack, verifier, **overrides), "login": login},
                       allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text[:300]
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["s-123"] and query["session_state"]
    return query["code"][0]


def _redeem(fake, stack, code, verifier, **overrides):
    form = {"grant_type": "authorization_code", "client_id": ENTRA_CLIENT_ID, "code": code,
            "client_secret": stack.env["ENTRA_CLIENT_SECRET"], "redirect_uri": f"{stack.portal_url}/auth/callback",
            "code_verifier": verifier, "scope": "openid profile"}
    form.update(overrides)
    return fake.post(f"{stack.urls['entra']}/organizations/oauth2/v2.0/token",
                     data={k: v for k, v in form.items() if v is not None}, timeout=30)


def _login(stack, tenant_id, role):
    return stack.portal_accounts(tenant_id)[tenant_id][role]


def test_the_sign_in_page_lists_demo_accounts(fake, stack):
    tenant_id = str(uuid.uuid4())
    admin = _login(stack, tenant_id, "admin")
    page = fake.get(_authorize_url(stack), params=_params(stack, "v" * 43), timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert admin in page.text and "Global Administrator" in page.text


@pytest.mark.parametrize("overrides, code", [
    ({"client_id": str(uuid.uuid4())}, "AADSTS700016"),
    ({"redirect_uri": "https://evil.example/callback"}, "AADSTS50011"),
    ({"client_id": None}, "AADSTS900144"),
])
def test_errors_entra_shows_instead_of_redirecting(fake, stack, overrides, code):
    answer = fake.get(_authorize_url(stack), params=_params(stack, "v" * 43, **overrides), allow_redirects=False,
                      timeout=30)
    assert answer.status_code == 400 and "Location" not in answer.headers and code in answer.text


@pytest.mark.parametrize("overrides, error, code", [
    ({"response_type": None}, "invalid_request", "AADSTS900144"),
    ({"response_type": "token"}, "unsupported_response_type", "AADSTS700054"),
    ({"scope": "profile"}, "invalid_request", "AADSTS90014"),
    ({"code_challenge_method": "MD5"}, "invalid_request", "AADSTS5000837"),
])
def test_other_errors_are_redirected_with_state(fake, stack, overrides, error, code):
    answer = fake.get(_authorize_url(stack), params=_params(stack, "v" * 43, **overrides), allow_redirects=False,
                      timeout=30)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["error"] == [error] and query["error_description"][0].startswith(code)
    assert query["state"] == ["s-123"]


def test_cancel_and_unknown_user(fake, stack):
    cancelled = fake.post(_authorize_url(stack), data={**_params(stack, "v" * 43), "cancel": "1"},
                          allow_redirects=False, timeout=30)
    assert parse_qs(urlsplit(cancelled.headers["Location"]).query)["error"] == ["access_denied"]
    unknown = fake.post(_authorize_url(stack), data={**_params(stack, "v" * 43), "login": "nobody@nowhere.example"},
                        allow_redirects=False, timeout=30)
    assert unknown.status_code == 200 and "AADSTS50034" in unknown.text


def test_code_with_pkce_gives_an_id_token_with_nonce_tid_and_roles(fake, stack):
    tenant_id = str(uuid.uuid4())
    verifier = secrets.token_urlsafe(48)
    answer = _redeem(fake, stack, _code(fake, stack, _login(stack, tenant_id, "admin"), verifier), verifier)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    assert body["access_token"].count(".") != 2  # Graph's token is opaque (not always a JWT, Microsoft says)
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == "n-456" and claims["tid"] == tenant_id and claims["aud"] == ENTRA_CLIENT_ID
    assert claims["iss"] == f"{stack.urls['entra']}/{tenant_id}/v2.0"
    assert GLOBAL_ADMINISTRATOR in claims["wids"]
    user = jwt.decode(_redeem(fake, stack, _code(fake, stack, _login(stack, tenant_id, "user"), verifier),
                              verifier).json()["id_token"], options={"verify_signature": False})
    assert user["wids"] == [USER_ROLE] and "roles" not in user
    app_admin = jwt.decode(_redeem(fake, stack, _code(fake, stack, _login(stack, tenant_id, "app-admin"), verifier),
                                   verifier).json()["id_token"], options={"verify_signature": False})
    assert app_admin["roles"] == ["Tenant.Admin"] and GLOBAL_ADMINISTRATOR not in app_admin["wids"]


def test_token_endpoint_refusals(fake, stack):
    tenant_id = str(uuid.uuid4())
    login = _login(stack, tenant_id, "admin")
    verifier = secrets.token_urlsafe(48)

    def refused(answer, status, error, code):
        assert answer.status_code == status, answer.text
        body = answer.json()
        assert body["error"] == error and body["error_codes"] == [code]
        assert body["error_description"].startswith(f"AADSTS{code}:")

    refused(_redeem(fake, stack, _code(fake, stack, login, verifier), "x" * 43), 400, "invalid_grant", 501481)
    refused(_redeem(fake, stack, _code(fake, stack, login, verifier), verifier,
                    redirect_uri="http://127.0.0.1:1/auth/callback"), 400, "invalid_grant", 70000)
    refused(_redeem(fake, stack, _code(fake, stack, login, verifier), verifier, client_secret=None),
            401, "invalid_client", 7000218)
    refused(_redeem(fake, stack, "1.fake.forged", verifier), 400, "invalid_grant", 9002313)
    code = _code(fake, stack, login, verifier)
    assert _redeem(fake, stack, code, verifier).status_code == 200
    refused(_redeem(fake, stack, code, verifier), 400, "invalid_grant", 54005)  # single use
