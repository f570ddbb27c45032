"""Admin consent in the fake Entra ID: the consent page, its redirects, and what consent changes.

- `GET /{tenant}/v2.0/adminconsent?client_id&scope&redirect_uri&state` (and the v1
  `GET /{tenant}/adminconsent?client_id&redirect_uri&state`) shows a consent page: which app asks, for which
  tenant, for which application permissions, with an "Accept" and a "Cancel" form. Both forms `POST` back
  to the same path with a sealed copy of the request (so the decision cannot be re-aimed at another tenant,
  app or redirect URI) and work without JavaScript, in a browser or from a test over HTTPS.
- Accept: consent is remembered for the tenant (the app's service principal exists there, and it holds
  the granted application permissions), then `302` to
  `{redirect_uri}?admin_consent=True&tenant={tid}&scope={scope}&state={state}` (Microsoft's documented
  success shape, in its order).
- Cancel: `302` to `{redirect_uri}?error=access_denied&error_description=AADSTS65004: User declined to
  consent to access the app.…&error_uri=…&admin_consent=True&state={state}`, the shape Entra ID sends (as
  observed and reported against its documentation: no `tenant` on this error, `admin_consent=True` all
  the same — so a callback must check `error` first).
- Requests that Entra ID cannot send back to the app (no or unknown `client_id`, no `redirect_uri` or one
  the app has not registered, an unknown tenant, `common`) get an error page (HTML, 400) instead of a
  redirect, as the real one does. (An app registered without any redirect URI — the fake started on its
  own, as the fake's tests do — accepts any http(s) redirect URI.)

What consent changes (`client_credentials_refusal`, `granted_roles`, `graph_refusal`):
- Without consent (state `not_consented`) the app has no service principal in the tenant: a
  client-credentials token is refused with `400 unauthorized_client` AADSTS700016 ("Application with
  identifier … was not found in the directory …"), and Graph answers `403 Authorization_RequestDenied`
  to an app token of that tenant (one minted, or issued before consent was withdrawn).
- With consent, app tokens carry the granted roles: the tenant's `granted_roles` if the control API set
  them (e.g. consent given while the registration lacked `User.Read.All`), else the app's roles.
- `consent_replication_seconds` (a setting, global or per tenant): for that long after consent, tokens are
  still refused as before it (Entra ID's replication delay: seconds to minutes, no published bound).
- Phones' delegated tokens for the app's own API (`access_as_user`) only where the consent covered that
  scope: `/.default` consents what the registration lists as required (`required_scopes`), else
  `400 invalid_grant` AADSTS65001 (`consent_required`).

Every tenant starts consented (setting `consent_by_default`, default true), so the demo tenant and every
test tenant work without a consent step; `POST /_fake/tenants/{tid}/consent {"state": "not_consented"}`
or the setting makes a tenant that has to be onboarded through this page.
"""

from __future__ import annotations

import datetime
import html
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .httpd import Request, Response
from .state import GRAPH_AUDIENCE, GUID_RE, FakeMicrosoft, TenantState

NOT_CONSENTED = "not_consented"
GRANTED = "granted"
GRAPH_DEFAULT_SCOPE = f"{GRAPH_AUDIENCE}/.default"
DECISION_LIFETIME_SECONDS = 600  # a consent page left open longer must be reloaded
_NO_STORE = [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")]
# The consent page is the fake's own HTML: no script, no resource from another host, no framing.
_PAGE_HEADERS = _NO_STORE + [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; "
                                "frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]


# ---- what consent changes -------------------------------------------------------------------------
def is_consented(state: FakeMicrosoft, tenant: TenantState) -> bool:
    """Whether the app's service principal is there (and replicated): consent granted, or only its roles
    withdrawn (`no_roles`: the principal stays, the tokens carry no roles)."""
    if tenant.consent not in (GRANTED, "no_roles"):
        return False
    delay = float(state.setting("consent_replication_seconds", tenant) or 0.0)
    return time.monotonic() >= tenant.consented_at + delay


def granted_roles(tenant: TenantState, app) -> list[str]:
    """The application permissions an app token of this tenant carries."""
    if tenant.consent == "no_roles":
        return []
    return list(app.roles if tenant.granted_roles is None else tenant.granted_roles)


def covers_scopes(tenant: TenantState, app, names: list[str]) -> bool:
    """Whether the tenant's consent covers these delegated scopes of the app's own API (what the
    registration listed as required when consent was given; None: the app's required ones now)."""
    granted = app.required_scopes if tenant.granted_scopes is None else tenant.granted_scopes
    return all(name in granted for name in names)


def client_credentials_refusal(state: FakeMicrosoft, tenant: TenantState, app) -> tuple[int, str, int, str] | None:
    """(status, error, AADSTS code, description) when Entra ID refuses the app a token for this tenant."""
    if tenant.consent == "no_service_principal":
        return (400, "invalid_client", 7000229,
                f"The client application {app.client_id} is missing service principal in the tenant "
                f"{tenant.tenant_id}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119")
    if not is_consented(state, tenant):
        return (400, "unauthorized_client", 700016,
                f"Application with identifier '{app.client_id}' was not found in the directory "
                f"'{tenant.directory.company}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may have sent your "
                "authentication request to the wrong tenant.")
    return None


def graph_refusal(state: FakeMicrosoft, claims: dict[str, Any]) -> bool:
    """Whether Graph refuses (403) this verified token: an app token of a tenant without consent."""
    if claims.get("idtyp") != "app" and "scp" in claims:
        return False
    tenant = state.tenant(str(claims.get("tid", "")), create=False)
    return tenant is not None and not is_consented(state, tenant)


def set_consent(state: FakeMicrosoft, tenant: TenantState, value: str, roles: list[str] | None = None,
                keep_roles: bool = True) -> None:
    """Sets the tenant's consent (and, if given, the roles it grants); a new grant starts the replication
    delay."""
    with state._lock:
        if value == GRANTED and tenant.consent != GRANTED:
            tenant.consented_at = time.monotonic()
        tenant.consent = value
        if roles is not None:
            tenant.granted_roles = tuple(roles)
        elif not keep_roles:
            tenant.granted_roles = None


# ---- the endpoint ---------------------------------------------------------------------------------
def admin_consent(state: FakeMicrosoft, request: Request, segment: str, v2: bool) -> Response:
    """`GET` shows the consent page; `POST` (from its forms) records the decision and redirects."""
    if request.method == "POST":
        return _decide(state, request, segment)
    if request.method != "GET":
        return _error_page(state, 405, 900561, "The endpoint only accepts GET and POST requests.")
    query = request.query
    problem = _check(state, segment, query)
    if isinstance(problem, Response):
        return problem
    tenant, app = problem
    scope = query.get("scope", "") if v2 else None  # the v1 endpoint takes no scope and returns none
    if v2:
        scopes = scope.split()
        if not scopes:
            return _redirect_error(state, query, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'scope'.")
        if any(s != GRAPH_DEFAULT_SCOPE and s not in ("openid", "profile", "email", "offline_access") for s in scopes):
            return _redirect_error(state, query, "invalid_scope", 70011,
                                   f"The provided value for the input parameter 'scope' is not valid. The scope "
                                   f"{scope} is not valid. (fake: only {GRAPH_DEFAULT_SCOPE} is supported)")
    sealed = state.seal({"k": "consent", "t": tenant.tenant_id, "c": app.client_id,
                         "r": query["redirect_uri"], "s": query.get("state"), "sc": scope,
                         "e": time.time() + DECISION_LIFETIME_SECONDS})
    roles = tenant.granted_roles if tenant.granted_roles is not None else app.roles
    return Response(200, _consent_page(request.path, sealed, app.display_name, tenant.directory.company,
                                       tenant.directory.domain, list(roles)).encode("utf-8"),
                    "text/html; charset=utf-8", list(_PAGE_HEADERS))


def _check(state: FakeMicrosoft, segment: str, query: dict[str, str]):
    """(tenant, app) of a consent request, or the error page Entra ID shows instead of redirecting."""
    client_id = query.get("client_id", "")
    redirect = query.get("redirect_uri", "")
    if not client_id:
        return _error_page(state, 400, 900144, "The request body must contain the following parameter: 'client_id'.")
    if not redirect:
        return _error_page(state, 400, 900144,
                           "The request body must contain the following parameter: 'redirect_uri'.")
    parts = urlsplit(redirect)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        return _error_page(state, 400, 50011,
                           f"The redirect URI '{redirect}' specified in the request does not match the redirect URIs "
                           f"configured for the application '{client_id}'.")
    lowered = segment.lower()
    if lowered in ("common", "consumers"):
        return _error_page(state, 400, 90130,
                           "Admin consent needs a tenant: use the tenant's ID or domain, not /common. "
                           "(fake: /organizations is not supported either)")
    tenant = state.known_tenant(segment) if GUID_RE.match(segment) else state.tenant_by_domain(lowered)
    if tenant is None:
        return _error_page(state, 400, 90002,
                           f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are "
                           "signing into the correct cloud.")
    app = state.app(client_id) if GUID_RE.match(client_id) else None
    if app is None:
        return _error_page(state, 400, 700016,
                           f"Application with identifier '{client_id}' was not found in the directory "
                           f"'{tenant.directory.company}'.")
    if app.redirect_uris and redirect not in app.redirect_uris:  # registered URIs only, exactly
        return _error_page(state, 400, 50011,
                           f"The redirect URI '{redirect}' specified in the request does not match the redirect URIs "
                           f"configured for the application '{client_id}'.")
    return tenant, app


def _decide(state: FakeMicrosoft, request: Request, segment: str) -> Response:
    form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    sealed = state.unseal(form.get("request", ""))
    if (sealed is None or sealed.get("k") != "consent" or float(sealed.get("e", 0)) < time.time()
            or sealed.get("t") not in _tenant_ids(state, segment)):
        return _error_page(state, 400, 9002313, "Invalid request. Request is malformed or invalid. (fake: the "
                                                "consent page was altered or left open too long; start again)")
    tenant = state.tenant(sealed["t"])
    app = state.app(sealed["c"])
    if tenant is None or not tenant.exists or app is None:
        return _error_page(state, 400, 90002, "The tenant or the application is gone.")
    query = {"redirect_uri": sealed["r"], **({"state": sealed["s"]} if sealed.get("s") is not None else {})}
    decision = form.get("decision")
    if decision == "accept":
        set_consent(state, tenant, GRANTED)
        tenant.granted_scopes = tuple(app.required_scopes)  # `/.default`: what the registration requires
        state.stats.inc("admin_consents", tenant.tenant_id)
        answer = {"admin_consent": "True", "tenant": tenant.tenant_id}
        if sealed.get("sc") is not None:
            answer["scope"] = sealed["sc"]
        if "state" in query:
            answer["state"] = query["state"]
        return _redirect(query["redirect_uri"], answer)
    if decision == "decline":
        state.stats.inc("admin_consents_declined", tenant.tenant_id)
        return _redirect_error(state, query, "access_denied", 65004, "User declined to consent to access the app.")
    return _error_page(state, 400, 900144, "The request body must contain the following parameter: 'decision'.")


def _tenant_ids(state: FakeMicrosoft, segment: str) -> set[str]:
    tenant = state.known_tenant(segment) if GUID_RE.match(segment) else state.tenant_by_domain(segment.lower())
    return {tenant.tenant_id} if tenant is not None else set()


# ---- responses ------------------------------------------------------------------------------------
def _redirect(redirect_uri: str, query: dict[str, str]) -> Response:
    separator = "&" if "?" in redirect_uri else "?"
    return Response(302, b"", "text/plain", [("Location", f"{redirect_uri}{separator}{urlencode(query)}")]
                    + _NO_STORE)


def _redirect_error(state: FakeMicrosoft, query: dict[str, str], error: str, code: int, description: str
                    ) -> Response:
    """The error redirect in Entra ID's order: error, error_description, error_uri, admin_consent, state."""
    answer = {"error": error, "error_description": _description(code, description),
              "error_uri": f"{state.entra_base}/error?code={code}", "admin_consent": "True"}
    if query.get("state") is not None:
        answer["state"] = query["state"]
    return _redirect(query["redirect_uri"], answer)


def _description(code: int, text: str) -> str:
    timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return (f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}\r\n"
            f"Timestamp: {timestamp}")


def _error_page(state: FakeMicrosoft, status: int, code: int, text: str) -> Response:
    body = _document("Sign in", f"""
<h1>Sorry, but we're having trouble signing you in.</h1>
<p id="error">AADSTS{code}: {html.escape(text)}</p>
<p><a href="{html.escape(state.entra_base)}/error?code={code}">More about AADSTS{code}</a></p>""")
    return Response(status, body.encode("utf-8"), "text/html; charset=utf-8", list(_PAGE_HEADERS))


def _consent_page(action: str, sealed: str, app_name: str, company: str, domain: str, roles: list[str]) -> str:
    items = "".join(f"<li><code>{html.escape(role)}</code> (application permission)</li>" for role in roles)
    action = html.escape(action)
    hidden = f'<input type="hidden" name="request" value="{html.escape(sealed)}">'
    return _document("Permissions requested", f"""
<h1>Permissions requested</h1>
<p><strong>{html.escape(app_name)}</strong> asks an administrator of <strong>{html.escape(company)}</strong>
(<span id="domain">{html.escape(domain)}</span>) for these permissions for the whole organisation:</p>
<ul id="permissions">{items or "<li>none</li>"}</ul>
<p>If you accept, this app can use these permissions without a signed-in user.</p>
<form method="post" action="{action}" id="accept-form">{hidden}
<button type="submit" name="decision" value="accept">Accept</button></form>
<form method="post" action="{action}" id="decline-form">{hidden}
<button type="submit" name="decision" value="decline">Cancel</button></form>""")


def _document(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - fake Microsoft Entra ID</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
form{{display:inline-block;margin-right:1rem}}button{{font-size:1rem;padding:.5rem 1.5rem}}
button:focus{{outline:3px solid #fd0;outline-offset:2px}}</style></head>
<body><main>{body}
<p><small>Fake Microsoft Entra ID for local development and tests.</small></p></main></body></html>
"""
