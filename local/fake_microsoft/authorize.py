"""Interactive sign-in of the fake Entra ID: the authorization endpoint (a sign-in page where a person or
a test picks a directory user) and the `authorization_code` grant of the token endpoint, with PKCE.

As Entra ID does (identity platform docs, "OAuth 2.0 authorization code flow" and the AADSTS error
reference): an unknown `client_id` or a `redirect_uri` that is not registered for the app is shown as an
error page and never redirected; other authorization errors are redirected as `?error=…&error_description=
AADSTSnnnn: …&state=…`; codes are single use and live 10 minutes; at the token endpoint the
`redirect_uri` must equal the one of the authorization request (AADSTS70000), a reused code is
AADSTS54005, an expired one AADSTS70008, and a `code_verifier` that does not match the `code_challenge`
is AADSTS501481 — all `invalid_grant`. The ID token carries `nonce` (when the request sent one), `tid`,
`iss` `{base}/{tid}/v2.0`, `wids` (directory role template IDs, as with `groupMembershipClaims`
including `DirectoryRole`) and `roles` (app roles assigned to the user).

`max_age` (OpenID Connect Core 3.1.2.1, which Entra ID honours and MSAL sends): the fake keeps no single
sign-on session, so every authorization request shows its sign-in page again — a fresh authentication,
whatever `max_age` says — and a request that sent `max_age` gets an ID token with `auth_time`, the moment
the account was picked on that page (Entra ID v2.0 ID tokens carry `auth_time` only then, or as an optional
claim the fake does not model). The control API's `id_token_claims` can backdate it (an identity provider
that did not re-authenticate).

Demo roles in every synthetic directory: user 0 is a Global Administrator, user 2 holds the app role
`Tenant.Admin`, every other user is a plain member (`wids` = the "User" role template only). The control
API's settings change them per tenant (`user_roles`: a role removed in Entra ID between two sign-ins) and
replace claims of the ID tokens (`id_token_claims`: another nonce, audience or tenant).
"""
from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode

from .httpd import Request, Response
from .state import GUID_RE, FakeMicrosoft, TenantState

GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
USER_ROLE = "b79fbf4d-3ef9-4689-8143-76b194e85509"  # the default "User" role template every member has
APP_ADMIN_ROLE = "Tenant.Admin"
CODE_LIFETIME_SECONDS = 600
AUTHORIZE_PARAMS = ("client_id", "response_type", "redirect_uri", "scope", "state", "nonce", "response_mode",
                    "code_challenge", "code_challenge_method", "prompt", "login_hint", "domain_hint",
                    "client_info", "claims", "max_age")
DEMO_TENANTS_LISTED = 6  # the directories used last (the local stack's two come first: they are the only ones)


def demo_role(index: int) -> str:
    """The demo role of directory user `index`: "admin", "app-admin" or "user"."""
    return {0: "admin", 2: "app-admin"}.get(index, "user")


def role_claims(index: int) -> dict[str, Any]:
    role = demo_role(index)
    claims: dict[str, Any] = {"wids": [GLOBAL_ADMINISTRATOR, USER_ROLE] if role == "admin" else [USER_ROLE]}
    if role == "app-admin":
        claims["roles"] = [APP_ADMIN_ROLE]
    return claims


class Authorization:
    def __init__(self, state: FakeMicrosoft, error) -> None:
        self.state = state
        self._error = error  # EntraApp._error: the token endpoint's error body

    # ---- GET/POST /{tenant}/oauth2/v2.0/authorize ----------------------------------------------------
    def authorize(self, request: Request, segment: str) -> Response:
        params = dict(request.query)
        if request.method == "POST":
            # The page's account buttons and its username field share the name `login`: the first filled wins.
            params.update({k: next((x for x in v if x), "") for k, v in parse_qs(
                request.body.decode("utf-8", "replace"), keep_blank_values=True).items()})
        self.state.stats.inc("authorize_requests")
        client_id = params.get("client_id", "")
        if not client_id:
            return _error_page(400, 900144, "The request body must contain the following parameter: 'client_id'.")
        app = self.state.app(client_id)
        if app is None:
            return _error_page(400, 700016, f"Application with identifier '{html.escape(client_id)}' was not "
                                            "found in the directory.")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri:
            return _error_page(400, 900144, "The request body must contain the following parameter: 'redirect_uri'.")
        if redirect_uri not in app.redirect_uris:
            return _error_page(400, 50011, f"The redirect URI '{html.escape(redirect_uri)}' specified in the request "
                                           f"does not match the redirect URIs configured for the application "
                                           f"'{app.client_id}'.")
        state_param = params.get("state")
        fail = lambda error, code, text: _redirect(redirect_uri, {  # noqa: E731 - a one-line closure over the request
            "error": error, "error_description": _description(code, text), "state": state_param})
        if segment.lower() not in ("organizations", "common") and self._tenant_of(segment) is None:
            return fail("invalid_request", 90002, f"Tenant '{segment}' not found.")
        if params.get("response_type", "") != "code":
            if not params.get("response_type"):
                return fail("invalid_request", 900144, "The request body must contain the following parameter: "
                                                       "'response_type'.")
            return fail("unsupported_response_type", 700054, "response_type is not enabled for the application.")
        if params.get("response_mode", "query") != "query":
            return fail("invalid_request", 900144, "This fake supports response_mode=query only.")
        scopes = params.get("scope", "").split()
        if not scopes:
            return fail("invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        if "openid" not in scopes:
            return fail("invalid_request", 90014, "The 'openid' scope is required for an ID token.")
        method = params.get("code_challenge_method", "plain" if params.get("code_challenge") else "")
        if params.get("code_challenge") and method not in ("S256", "plain"):
            return fail("invalid_request", 5000837, "The code_challenge_method is not supported; use S256.")
        if request.method == "POST" and params.get("cancel"):
            return fail("access_denied", 65004, "User declined to consent to access the app.")
        login = params.get("login", "").strip().lower()
        if request.method == "GET" or not login:
            return self._page(segment, params, None)
        tenant, index = self._user(login)
        if tenant is None or index is None:
            return self._page(segment, params, "AADSTS50034: This user account does not exist.")
        if GUID_RE.match(segment) and segment.lower() != tenant.tenant_id:
            return self._page(segment, params, f"AADSTS50020: The account is not from tenant {segment}.")
        code = self.state.seal({"k": "code", "t": tenant.tenant_id, "i": index, "c": app.client_id,
                                "r": redirect_uri, "s": " ".join(scopes), "n": params.get("nonce"),
                                "ch": params.get("code_challenge"), "m": method,
                                "e": time.time() + CODE_LIFETIME_SECONDS, "j": uuid.uuid4().hex,
                                # the authentication just made on the sign-in page, told when max_age was asked
                                "at": int(time.time()) if _max_age(params.get("max_age")) is not None else None})
        self.state.stats.inc("authorization_codes", tenant.tenant_id)
        return _redirect(redirect_uri, {"code": "1.fake." + code, "state": state_param,
                                        "session_state": str(uuid.uuid4())})

    def _tenant_of(self, segment: str) -> TenantState | None:
        return self.state.known_tenant(segment) if GUID_RE.match(segment) else self.state.tenant_by_domain(segment)

    def _user(self, login: str) -> tuple[TenantState | None, int | None]:
        _, _, domain = login.partition("@")
        tenant = self.state.tenant_by_domain(domain) if domain else None
        if tenant is None:
            return None, None
        index = tenant.directory.index_of_upn(login)
        if index is None or tenant.directory.user(index) is None:
            return tenant, None
        return tenant, index

    def _page(self, segment: str, params: dict[str, str], problem: str | None) -> Response:
        """The sign-in page: one button per demo account of the known tenants, and a username field."""
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items() if k in AUTHORIZE_PARAMS)
        action = html.escape(f"{self.state.entra_base}/{segment}/oauth2/v2.0/authorize")
        accounts = []
        for tenant in [t for t in self.state.tenants.values() if t.exists][::-1][:DEMO_TENANTS_LISTED]:  # newest
            for index in (0, 1, 2):
                user = tenant.directory.user(index)
                if user is None:
                    continue
                label = {"admin": "Global Administrator", "app-admin": "Tenant.Admin app role",
                         "user": "member, no admin role"}[demo_role(index)]
                accounts.append(
                    f'<li><button type="submit" name="login" value="{html.escape(user["userPrincipalName"])}">'
                    f'{html.escape(user["displayName"])} — {html.escape(user["userPrincipalName"])}</button> '
                    f'<span>{label}, {html.escape(tenant.directory.company)} ({tenant.tenant_id})</span></li>')
        error = f'<p role="alert" class="err">{html.escape(problem)}</p>' if problem else ""
        body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to your account (fake Entra ID)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}
li{{margin:.4rem 0}} button{{font:inherit;padding:.3rem .7rem}} .err{{color:#a4262c;font-weight:600}}
span{{color:#555;font-size:.9rem}}</style></head><body><main>
<h1>Sign in (fake Entra ID)</h1><p>Pick a demo account, or type the user principal name of any directory user.</p>
{error}<form method="post" action="{action}">{hidden}<ul>{''.join(accounts)}</ul>
<p><label for="login-name">User principal name</label><br>
<input id="login-name" name="login" type="email" autocomplete="off">
<button type="submit">Sign in</button> <button type="submit" name="cancel" value="1">Cancel</button></p></form>
</main></body></html>"""
        return Response(200, body.encode(), "text/html; charset=utf-8",
                        [("Cache-Control", "no-store"), ("X-Frame-Options", "DENY")])

    # ---- POST /{tenant}/oauth2/v2.0/token, grant_type=authorization_code -----------------------------
    def redeem(self, request: Request, form: dict[str, str], app, secret: str | None) -> Response:
        if app.secret is not None and secret is None:
            return self._error(request, 401, "invalid_client", 7000218, "The request body must contain the "
                               "following parameter: 'client_assertion' or 'client_secret'.")
        for name in ("code", "redirect_uri"):
            if not form.get(name):
                return self._error(request, 400, "invalid_request", 900144,
                                   f"The request body must contain the following parameter: '{name}'.")
        raw = form["code"]
        data = self.state.unseal(raw[len("1.fake."):]) if raw.startswith("1.fake.") else None
        if data is None or data.get("k") != "code" or data.get("c") != app.client_id:
            return self._error(request, 400, "invalid_grant", 9002313,
                               "Invalid request. Request is malformed or invalid.")
        if data["e"] < time.time():
            return self._error(request, 400, "invalid_grant", 70008, "The provided authorization code or refresh "
                               "token has expired due to inactivity. Send a new interactive authorization request "
                               "for this user and resource.")
        if not self.state.redeem_code(data["j"]):
            return self._error(request, 400, "invalid_grant", 54005, "OAuth2 Authorization code was already "
                               "redeemed, please retry with a new valid code or use an existing refresh token.")
        if form["redirect_uri"] != data["r"]:
            return self._error(request, 400, "invalid_grant", 70000, "The provided value for the 'redirect_uri' is "
                               "not valid. The value must exactly match the redirect URI used to obtain the "
                               "authorization code.")
        if data.get("ch") and not _pkce_matches(data["ch"], data.get("m") or "plain", form.get("code_verifier", "")):
            return self._error(request, 400, "invalid_grant", 501481, "The Code_Verifier does not match the "
                               "code_challenge supplied in the authorization request.")
        tenant = self.state.known_tenant(data["t"])
        user = tenant.directory.user(int(data["i"])) if tenant else None
        if tenant is None or user is None:
            return self._error(request, 400, "invalid_grant", 50034,
                               "The user account does not exist in the directory.")
        return self._tokens(request, tenant, app, user, int(data["i"]), data)

    def _tokens(self, request: Request, tenant: TenantState, app, user: dict[str, Any], index: int,
                data: dict[str, Any]) -> Response:
        from .entra import _NO_STORE
        from .keys import b64url

        state = self.state
        claims = state.id_token_claims(tenant.tenant_id, user, app.client_id)
        if data.get("n"):
            claims["nonce"] = data["n"]
        if data.get("at") is not None:
            claims["auth_time"] = int(data["at"])
        roles = state.setting("user_roles", tenant).get(user["userPrincipalName"])
        claims.update(role_claims(index) if roles is None else
                      {k: list(v) for k, v in roles.items() if k in ("wids", "roles")})
        claims.update(state.setting("id_token_claims", tenant))
        now = int(time.time())
        access = {"aud": "00000003-0000-0000-c000-000000000000", "iss": state.issuer_v1(tenant.tenant_id),
                  "iat": now - 300, "nbf": now - 300, "exp": now + 3600, "appid": app.client_id,
                  "scp": "openid profile email User.Read", "tid": tenant.tenant_id, "ver": "1.0",
                  "oid": user["id"], "uti": secrets.token_urlsafe(16)}
        header = {"typ": "JWT", "kid": state.keys.current.kid}
        body = {"token_type": "Bearer", "scope": "openid profile email User.Read", "expires_in": 3600,
                "ext_expires_in": 3600, "access_token": state.opaque_graph_token(access),  # Graph's: not a JWT
                "id_token": state.keys.sign(claims, header)}
        if request.body and b"client_info=1" in request.body:
            body["client_info"] = b64url(f'{{"uid":"{user["id"]}","utid":"{tenant.tenant_id}"}}'.encode())
        return Response.json(200, body, _NO_STORE)


def _max_age(value: str | None) -> int | None:
    """The request's `max_age` in seconds: a non-negative integer, else (absent or malformed) None."""
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def _pkce_matches(challenge: str, method: str, verifier: str) -> bool:
    if not verifier:
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        return secrets.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), challenge)
    return secrets.compare_digest(verifier, challenge)


def _description(code: int, text: str) -> str:
    return (f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}\r\n"
            f"Timestamp: {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}")


def _redirect(uri: str, query: dict[str, Any]) -> Response:
    separator = "&" if "?" in uri else "?"
    clean = {k: v for k, v in query.items() if v is not None}
    return Response(302, b"", "text/plain", [("Location", f"{uri}{separator}{urlencode(clean)}"),
                                             ("Cache-Control", "no-store")])


def _error_page(status: int, code: int, text: str) -> Response:
    """Errors Entra ID shows to the user instead of redirecting (unknown app, unregistered redirect URI)."""
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in error</title></head><body>'
            f'<main><h1>Sorry, but we’re having trouble signing you in.</h1><p>AADSTS{code}: {text}</p></main>'
            f'</body></html>')
    return Response(status, body.encode(), "text/html; charset=utf-8", [("Cache-Control", "no-store")])
