"""HTTP entry point `tenant_portal`: the administration portal of a tenant's administrators.

Thin: routing, the session cookie, CSRF and origin checks, form decoding and page rendering; what an
admin may see and change is decided in `service.py`, sign-in in `signin.py`, the cookie in `session.py`.
Browsers get HTML error pages; other clients (and the JSON download) get problem+json.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import functions_framework
from flask import Request, Response

from functions.tenant_portal import session as cookies
from functions.tenant_portal.pages import Page, choose_language, render, security_headers
from shared import http, logs
from shared.clock import timestamp, utc_now
from shared.errors import AppError, BadRequest, Forbidden, NotFound, ServiceUnavailable, TransientError, Unauthorized
from shared.runtime import components

FUNCTION = "tenant_portal"
FORM_LIMIT = 8 * 1024
MAX_FORM_FIELDS = 64
STATIC = {"portal.css": "text/css; charset=utf-8", "portal.js": "text/javascript; charset=utf-8"}
STATIC_DIR = Path(__file__).resolve().parent / "static"
_NEXT_PATHS = ("/", "/devices", "/settings", "/deletion", "/receipts", "/onboard")

log = logs.get_logger(__name__)


@dataclass(frozen=True)
class PortalConfig:
    base_url: str
    authority_host: str


@dataclass
class Portal:
    config: PortalConfig
    service: Any
    signin: Any
    sealer: cookies.Sealer
    onboarding: Any  # functions.tenant_portal.onboarding.OnboardingService
    settings: Any  # shared.config.Settings: the retention periods /privacy names


@components(FUNCTION)
def portal(config, store) -> Portal:
    from functions.tenant_portal.onboarding import OnboardingService
    from functions.tenant_portal.service import TenantPortalService
    from functions.tenant_portal.signin import MicrosoftSignin
    from shared import wiring
    from shared.auth import JwksCache, jwks_url

    session = wiring.egress_session(config, pool_size=4)
    signin = MicrosoftSignin(config.entra_authority_host, config.entra_client_id, config.entra_client_secret,
                             f"{config.portal_base_url}/auth/callback", session,
                             JwksCache(session, jwks_url(config.entra_authority_host)))
    service = TenantPortalService(store, wiring.deletion_requester(config, store), config.receipt_key, utc_now)
    onboarding = OnboardingService(store.tenants, wiring.app_tokens(config, session), utc_now,
                                   authority_host=config.entra_authority_host, client_id=config.entra_client_id,
                                   portal_base_url=config.portal_base_url)
    return Portal(PortalConfig(config.portal_base_url, config.entra_authority_host), service, signin,
                  cookies.Sealer(config.portal_session_key), onboarding, config)


@dataclass
class Visit:
    """One request: its page context, its session (if any) and the cookies to set on the answer."""
    request: Request
    page: Page
    portal: Portal
    now: int
    session: cookies.Session | None = None
    set_cookies: list[str] = field(default_factory=list)
    end_session: bool = False
    form: dict[str, list[str]] = field(default_factory=dict)

    def value(self, name: str) -> str:
        values = self.form.get(name) or [""]
        return values[0]

    def last(self, name: str) -> str | None:
        """The last value of `name` (a checkbox after its hidden "false"), None when the form lacks it."""
        values = self.form.get(name)
        return values[-1] if values else None

    def redirect(self, path: str, **params: Any) -> Response:
        return Response(status=303, headers={"Location": self.page.href(path, **params)})

    def html(self, template: str, status: int = 200, **context: Any) -> Response:
        csrf = self.session.csrf_token if self.session else ""
        return render(self.page, template, status, session=self.session, csrf=csrf, **context)


# -- gates ---------------------------------------------------------------------------------------------
def _signed_in(visit: Visit) -> cookies.Session:
    if visit.session is None:
        raise Unauthorized("sign in to continue", slug="signed-out", headers={})
    return visit.session


def _admin(visit: Visit) -> cookies.Session:
    session = _signed_in(visit)
    if not session.admin:
        raise Forbidden("only administrators of the organisation may use the portal", slug="not-admin")
    return session


def _tenant(visit: Visit, allow_deleting: bool = False):
    """The session's tenant. A tenant that is gone (deleted, or never onboarded) ends the session and sends
    the visitor to `/`; one being deleted sends every page to its progress page."""
    session = _admin(visit)
    tenant = visit.portal.service.tenant(session.tenant_id)
    if tenant is None:
        visit.end_session = True
        raise _Redirect("/")
    if not tenant.active and not allow_deleting:
        raise _Redirect("/deletion")
    return tenant


class _Redirect(Exception):
    def __init__(self, path: str, **params: Any):
        super().__init__(path)
        self.path, self.params = path, params


# -- pages ---------------------------------------------------------------------------------------------
def _home(visit: Visit) -> Response:
    if visit.session is None:
        return visit.html("landing.html")
    session = _admin(visit)
    tenant = visit.portal.service.tenant(session.tenant_id)
    if tenant is None:
        return visit.html("not_onboarded.html")
    overview = visit.portal.service.overview(tenant)
    return visit.html("overview.html", nav="overview", tenant=tenant, device_count=overview.device_count,
                      created=_when(tenant.created_at), onboarded=visit.request.args.get("onboarded") == "1")


def _signin(visit: Visit) -> Response:
    next_path = visit.request.args.get("next") or "/"
    if next_path not in _NEXT_PATHS:
        raise BadRequest("next must be a page of the portal", slug="invalid-next")
    auth_uri, flow = visit.portal.signin.begin()
    flow_cookie = {"flow": flow, "next": next_path, "lang": visit.page.lang if visit.page.explicit else None,
                   "exp": visit.now + cookies.FLOW_SECONDS}
    visit.set_cookies.append(cookies.cookie_header(cookies.FLOW_COOKIE, visit.portal.sealer.seal(
        cookies.FLOW_COOKIE, flow_cookie), cookies.FLOW_SECONDS))
    return Response(status=302, headers={"Location": auth_uri})


def _callback(visit: Visit) -> Response:
    from functions.tenant_portal.signin import SigninRefused

    sealed = visit.portal.sealer.unseal(cookies.FLOW_COOKIE, visit.request.cookies.get(cookies.FLOW_COOKIE))
    visit.set_cookies.append(cookies.cleared_cookie_header(cookies.FLOW_COOKIE))  # single use
    if sealed is None or not isinstance(sealed.get("flow"), dict) or sealed.get("exp", 0) < visit.now:
        raise BadRequest("the sign-in has expired or was started elsewhere; start again", slug="signin-expired")
    response = {k: v for k, v in visit.request.args.items() if isinstance(v, str)}
    try:
        signed_in = visit.portal.signin.complete(sealed["flow"], response)
    except SigninRefused as refused:
        raise Unauthorized("the sign-in with Microsoft did not succeed", slug=refused.reason, headers={}) from None
    visit.session = cookies.new_session(signed_in.tenant_id, signed_in.admin, visit.now)
    lang = sealed.get("lang")
    location = sealed.get("next") if sealed.get("next") in _NEXT_PATHS else "/"
    return Response(status=303, headers={"Location": location + (f"?lang={lang}" if lang in ("de", "en") else "")})


def _signout(visit: Visit) -> Response:
    visit.end_session = True
    return visit.redirect("/")


# -- onboarding (functions/tenant_portal/onboarding.py decides; these pages say what it decided) ---------
# Each outcome that does not reach the overview: (HTTP status, what problem+json says). Browsers get the page
# templates/onboard_result.html with the outcome's texts (messages: onboard.<outcome>.title / .text).
ONBOARDING_REFUSALS = {
    "tenant-deleting": (409, "the organisation's data is being deleted; add it again once that has finished"),
    "no-session": (401, "no onboarding of a signed-in administrator is under way in this browser; sign in and "
                        "start again"),
    "not-admin": (403, "only an administrator of the organisation can add it"),
    "declined": (400, "the administrator declined the consent at Microsoft; nothing was created"),
    "consent-failed": (400, "Microsoft reported an error instead of the consent; nothing was created"),
    "state-mismatch": (400, "the consent answer does not belong to the onboarding started in this browser"),
    "state-expired": (400, "the onboarding was started more than 10 minutes ago; start again"),
    "malformed-callback": (400, "this is not an admin-consent answer of Microsoft"),
    "wrong-tenant": (403, "the consent was given in another organisation than the signed-in one"),
    "consent-not-found": (403, "Microsoft does not confirm the consent for the organisation"),
    "missing-permission": (403, "the consent lacks the Microsoft Graph permission User.Read.All"),
    "entra-unavailable": (503, "Microsoft Entra ID could not be reached; start again in a moment"),
}


class OnboardingRefused(AppError):
    """An onboarding that ends on a page of its own: problem+json for clients, onboard_result.html for
    browsers (`_error_response`)."""

    def __init__(self, step):
        self.outcome = step.outcome.value
        self.status, detail = ONBOARDING_REFUSALS.get(self.outcome, (400, "the onboarding did not succeed"))
        self.title = "Onboarding refused"
        self.entra_error = step.entra_error
        self.request_id = step.tenant.deletion_request_id if step.tenant is not None else None
        super().__init__(detail, slug=self.outcome, retry_after=5 if self.status == 503 else None)


def _onboarding_page(visit: Visit, step) -> Response:
    """The overview for an organisation that is (now) onboarded; else the page that says why not."""
    from functions.tenant_portal.onboarding import OnboardingOutcome

    if step.outcome == OnboardingOutcome.ONBOARDED:
        return visit.redirect("/", onboarded="1")
    if step.outcome == OnboardingOutcome.ALREADY_ONBOARDED:
        return visit.redirect("/")
    raise OnboardingRefused(step)


def _onboard(visit: Visit, error: str | None = None, name: str = "", status: int = 200) -> Response:
    from functions.tenant_portal.onboarding import OnboardingOutcome

    if visit.session is None:
        raise _Redirect("/signin", next="/onboard")  # sign in first, then come back here
    step = visit.portal.onboarding.status(visit.session.tenant_id, admin=visit.session.admin)
    if step.outcome != OnboardingOutcome.NOT_ONBOARDED:
        return _onboarding_page(visit, step)
    return visit.html("onboard.html", status, name=name, error=error)


def _begin_onboarding(visit: Visit) -> Response:
    from functions.tenant_portal.onboarding import OnboardingOutcome

    session = _signed_in(visit)
    step = visit.portal.onboarding.begin(session.tenant_id, visit.value("name"), admin=session.admin)
    if step.outcome == OnboardingOutcome.NAME_INVALID:
        return _onboard(visit, error="invalid-name", name=visit.value("name")[:256], status=400)
    if step.outcome != OnboardingOutcome.REDIRECT_TO_CONSENT:
        return _onboarding_page(visit, step)
    pending = {"pending": step.pending.to_cookie(), "lang": visit.page.lang if visit.page.explicit else None}
    visit.set_cookies.append(cookies.cookie_header(cookies.ONBOARDING_COOKIE, visit.portal.sealer.seal(
        cookies.ONBOARDING_COOKIE, pending), cookies.FLOW_SECONDS))
    log.info("onboarding started", function=FUNCTION, tenantId=session.tenant_id)
    return Response(status=302, headers={"Location": step.consent_url})


def _onboarding_callback(visit: Visit) -> Response:
    from functions.tenant_portal.onboarding import PendingOnboarding

    sealed = visit.portal.sealer.unseal(cookies.ONBOARDING_COOKIE,
                                        visit.request.cookies.get(cookies.ONBOARDING_COOKIE))
    visit.set_cookies.append(cookies.cleared_cookie_header(cookies.ONBOARDING_COOKIE))  # single-use state
    if sealed is not None and sealed.get("lang") in ("de", "en") and not visit.page.explicit:
        visit.page = Page(visit.request, sealed["lang"], True)  # the language the admin chose before leaving
    pending = PendingOnboarding.from_cookie(sealed.get("pending")) if sealed is not None else None
    query = {k: v for k, v in visit.request.args.items() if isinstance(v, str)}
    session = visit.session
    step = visit.portal.onboarding.complete(query, pending, session.tenant_id if session else None,
                                            admin=bool(session and session.admin))
    return _onboarding_page(visit, step)


def _privacy(visit: Visit) -> Response:
    from functions.tenant_portal.privacy import privacy_page

    return visit.html("privacy.html", privacy=privacy_page(visit.page.lang, visit.portal.settings))


def _devices(visit: Visit) -> Response:
    tenant = _tenant(visit)
    page = visit.portal.service.devices(tenant, visit.request.args.get("pageToken") or None)
    revoked = visit.request.args.get("revoked")
    return visit.html("devices.html", nav="devices", tenant=tenant, devices=[
        {"id": d.device_id, "registered": _when(d.registered_at), "seen": _when(d.last_seen_at)}
        for d in page.devices], next_token=page.next_page_token,
        first_page=not visit.request.args.get("pageToken"), revoked=revoked if _is_id(revoked) else None)


def _revoke(visit: Visit, deviceId: str) -> Response:
    tenant = _tenant(visit)
    request_id = visit.portal.service.revoke_device(tenant, deviceId)
    log.info("device revocation requested", function=FUNCTION, tenantId=tenant.tenant_id, requestId=request_id)
    return visit.redirect("/devices", revoked=request_id)


# Which field of the settings form an error is about (the summary links to it, the field shows it).
_SETTINGS_ERROR_FIELDS = {"invalid-name": "name", "invalid-scope-group": "groups",
                          "duplicate-scope-group": "groups", "too-many-scope-groups": "groups"}


def _settings(visit: Visit, error: str | None = None, status: int = 200, form=None) -> Response:
    """The settings page: the stored settings, or after a refused save what the admin posted (with the
    error at the top and beside its field), so nothing typed is lost."""
    from shared.store.schema import MAX_SCOPE_GROUPS, RELAY_FIELDS, SCOPE_FLAGS, effective_scope, photos_enabled

    tenant = _tenant(visit)
    scope = effective_scope(tenant.settings)
    shown = {"name": tenant.name, "fields": set(tenant.settings.get("fields", RELAY_FIELDS)),
             "region": tenant.settings.get("defaultRegion") or "", "groups": "\n".join(scope["groups"]),
             "flags": {flag: scope[flag] for flag in SCOPE_FLAGS}, "photos": photos_enabled(tenant.settings)}
    if form is not None:
        shown.update(name=form.name, fields=set(form.fields), region=form.region)
        if form.groups is not None:
            shown["groups"] = form.groups
        shown["flags"].update({flag: value == "true" for flag, value in form.flags.items()})
        if form.photos is not None:
            shown["photos"] = form.photos == "true"
    saved = visit.request.args.get("saved")
    return visit.html("settings.html", status, nav="settings", tenant=tenant, relay_fields=RELAY_FIELDS,
                      shown=shown, scope_flags=SCOPE_FLAGS, max_groups=MAX_SCOPE_GROUPS, regions=_regions(),
                      saved=saved in ("1", "scope"), full_sync=saved == "scope", error=error,
                      error_field=_SETTINGS_ERROR_FIELDS.get(error or ""))


def _save_settings(visit: Visit) -> Response:
    from functions.tenant_portal.service import SettingsForm
    from shared.store.schema import SCOPE_FLAGS

    tenant = _tenant(visit)
    flags = {flag: value for flag in SCOPE_FLAGS if (value := visit.last(flag)) is not None}
    form = SettingsForm(name=visit.value("name"), fields=visit.form.get("fields", []),
                        region=visit.value("defaultRegion"), groups=visit.last("groups"), flags=flags,
                        photos=visit.last("photos"))
    try:
        saved = visit.portal.service.update_settings(tenant, form)
    except BadRequest as error:
        return _settings(visit, error=error.slug, status=400, form=form)
    log.info("settings saved", function=FUNCTION, tenantId=tenant.tenant_id, full=saved.scope_changed)
    return visit.redirect("/settings", saved="scope" if saved.scope_changed else "1")


def _deletion(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    session = _admin(visit)
    request_id = visit.request.args.get("requestId")
    if request_id:
        receipt = visit.portal.service.receipt(session.tenant_id, request_id)
        if receipt.kind != "tenant":
            raise NotFound("this receipt is not one of an organisation's deletion", slug="receipt-not-found")
        document = _receipt_view(receipt)
        if receipt.completed and visit.portal.service.tenant(session.tenant_id) is not None:
            raise _Redirect("/receipts")  # an old deletion of a tenant onboarded again: its receipt is listed there
        if receipt.completed:
            visit.end_session = True  # the tenant is gone: so is the session
            visit.session = None
            from functions.tenant_portal.service import receipt_document

            return visit.html("deleted.html", receipt=document,
                              receipt_json=json.dumps(receipt_document(receipt), indent=2))
        return visit.html("deletion_progress.html", nav="deletion", receipt=document,
                          poll=visit.page.href(f"/receipts/{receipt.request_id}.json"))
    tenant = _tenant(visit, allow_deleting=True)
    if not tenant.active and tenant.deletion_request_id:
        raise _Redirect("/deletion", requestId=tenant.deletion_request_id)
    return visit.html("deletion.html", status, nav="deletion", tenant=tenant, error=error)


def _delete_all(visit: Visit) -> Response:
    tenant = _tenant(visit)
    try:
        request_id = visit.portal.service.delete_all(tenant, visit.value("confirmName"))
    except BadRequest as error:
        return _deletion(visit, error=error.slug, status=400)
    log.info("tenant deletion requested", function=FUNCTION, tenantId=tenant.tenant_id, requestId=request_id)
    return visit.redirect("/deletion", requestId=request_id)


def _receipts(visit: Visit) -> Response:
    session = _admin(visit)
    receipts = [_receipt_view(r) for r in visit.portal.service.receipts(session.tenant_id)]
    return visit.html("receipts.html", nav="receipts", receipts=receipts)


def _receipt_json(visit: Visit, requestId: str) -> Response:
    from functions.tenant_portal.service import receipt_document

    session = _admin(visit)
    response = http.json_response(receipt_document(visit.portal.service.receipt(session.tenant_id, requestId)))
    response.headers["Content-Disposition"] = f'attachment; filename="receipt-{requestId}.json"'
    return response


def _static(visit: Visit, name: str) -> Response:
    if name not in STATIC:
        raise NotFound("no such file")
    response = Response((STATIC_DIR / name).read_bytes(), content_type=STATIC[name])
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _when(value) -> str:
    text = timestamp(value)
    return text[:16].replace("T", " ") + " UTC" if text else "–"


def _is_id(value: object) -> bool:
    from shared.ids import is_canonical_id

    return is_canonical_id(value)


def _regions() -> list[str]:
    from phonenumbers import SUPPORTED_REGIONS

    return sorted(SUPPORTED_REGIONS)


def _receipt_view(receipt) -> dict[str, Any]:
    return {"requestId": receipt.request_id, "kind": str(receipt.kind), "status": str(receipt.status),
            "completed": receipt.completed, "requestedAt": _when(receipt.requested_at),
            "completedAt": _when(receipt.completed_at) if receipt.completed_at else None,
            "documents": receipt.documents, "files": receipt.files, "verified": receipt.verified}


# -- routing -------------------------------------------------------------------------------------------
LANG = ("lang",)
ANY_QUERY = None  # the sign-in callback takes whatever Entra ID sends back
ROUTER = http.Router([
    http.Route("GET", "/", _home, ("onboarded", "lang")),
    http.Route("GET", "/signin", _signin, ("next", "lang")),
    http.Route("GET", "/auth/callback", _callback, ANY_QUERY),
    http.Route("POST", "/signout", _signout, LANG),
    http.Route("GET", "/devices", _devices, ("pageToken", "revoked", "lang")),
    http.Route("POST", "/devices/<deviceId>/revoke", _revoke, LANG),
    http.Route("GET", "/settings", _settings, ("saved", "lang")),
    http.Route("POST", "/settings", _save_settings, LANG),
    http.Route("GET", "/deletion", _deletion, ("requestId", "lang")),
    http.Route("POST", "/deletion", _delete_all, LANG),
    http.Route("GET", "/receipts", _receipts, LANG),
    http.Route("GET", "/receipts/<requestId>.json", _receipt_json, LANG),
    http.Route("GET", "/onboard", _onboard, LANG),
    http.Route("POST", "/onboard", _begin_onboarding, LANG),
    http.Route("GET", "/onboard/callback", _onboarding_callback, ANY_QUERY),
    http.Route("GET", "/privacy", _privacy, LANG),
    http.Route("GET", "/assets/<name>", _static),
])
# POSTs a visitor without a (valid) session may send: signing out of an ended session only redirects.
_NO_SESSION_NEEDED = {"/signout"}


def _check_post(visit: Visit, route: http.Route) -> None:
    """Cross-site POSTs refused (Origin, Sec-Fetch-Site), then the form (size, type) and its CSRF token."""
    request = visit.request
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    own = _origin(visit.portal.config.base_url)
    if origin is not None:
        # With Referrer-Policy: no-referrer Chromium sends "Origin: null" on our own forms.
        same = _origin(origin) == own if origin != "null" else fetch_site == "same-origin"
        if not same:
            raise Forbidden("cross-site form posts are refused", slug="cross-site")
    elif fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Forbidden("cross-site form posts are refused", slug="cross-site")
    body, _ = http.read_body(request, FORM_LIMIT, ("application/x-www-form-urlencoded",))
    try:
        visit.form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                              max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form could not be read", slug="malformed-form") from None
    if visit.session is None:
        if route.path in _NO_SESSION_NEEDED:
            return
        raise Unauthorized("sign in to continue", slug="signed-out", headers={})
    if not visit.session.csrf_valid(visit.value("csrf")):
        raise Forbidden("the form's security token is missing or wrong; reload the page", slug="csrf")


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80))


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and not request.path.endswith(".json")


def _error_response(visit: Visit, error: AppError) -> Response:
    if isinstance(error, OnboardingRefused) and _wants_html(visit.request):
        response = visit.html("onboard_result.html", error.status, outcome=error.outcome,
                              request_id=error.request_id,
                              entra_error=error.entra_error if error.outcome == "consent-failed" else None)
        response.headers.update(error.headers)
        return response
    if _wants_html(visit.request):
        request = visit.request
        back = request.path if request.method == "GET" and request.path in _NEXT_PATHS[1:] else None
        response = visit.html("error.html", error.status, error=error, code=error.status, next_path=back)
        for name, value in error.headers.items():
            response.headers[name] = value
        return response
    return http.problem_response(error)


def _serve(request: Request) -> tuple[Response, str, str | None]:
    lang, explicit = choose_language(request.args.get("lang"), request.headers.get("Accept-Language"))
    visit = Visit(request, Page(request, lang, explicit), None, int(time.time()))  # type: ignore[arg-type]
    route_path, reason = "?", None
    try:
        visit.portal = portal()
        raw_cookie = request.cookies.get(cookies.SESSION_COOKIE)
        visit.session = cookies.open_session(visit.portal.sealer, raw_cookie, visit.now)
        if raw_cookie and visit.session is None:
            visit.end_session = True  # forged, tampered or expired: cleared, and the visitor is signed out
        matched, params = ROUTER.resolve(request.method, request.path)
        route_path = matched.path
        if matched.query is not ANY_QUERY:
            http.reject_undeclared_query(request, matched)
        if request.method == "POST":
            _check_post(visit, matched)
        response = matched.handler(visit, **params)
    except _Redirect as redirect:
        response = visit.redirect(redirect.path, **redirect.params)
    except AppError as error:
        reason = error.slug
        response = _error_response(visit, error)
    except TransientError:
        reason = "unavailable"
        log.exception("dependency unavailable", function=FUNCTION, method=request.method, route=route_path)
        response = _error_response(visit, ServiceUnavailable("a dependency is unavailable; try again",
                                                             retry_after=5))
    except Exception:
        reason = "internal"
        log.exception("request failed", function=FUNCTION, method=request.method, route=route_path)
        response = _error_response(visit, AppError("the request could not be completed"))
    _finish_cookies(visit, response)
    authority = visit.portal.config.authority_host if visit.portal else ""
    return security_headers(response, authority, visit.session is not None), route_path, reason


def _finish_cookies(visit: Visit, response: Response) -> None:
    for header in visit.set_cookies:
        response.headers.add("Set-Cookie", header)
    if visit.end_session:
        response.headers.add("Set-Cookie", cookies.cleared_cookie_header(cookies.SESSION_COOKIE))
        visit.session = None
    elif visit.session is not None and visit.portal is not None:
        renewed = cookies.renewed(visit.session, visit.now)  # sliding idle time, same CSRF secret
        lifetime = min(cookies.IDLE_SECONDS, renewed.issued_at + cookies.MAX_SECONDS - visit.now)
        response.headers.add("Set-Cookie", cookies.cookie_header(
            cookies.SESSION_COOKIE, cookies.seal_session(visit.portal.sealer, renewed), lifetime))


@functions_framework.http
def tenant_portal(request: Request) -> Response:
    logs.bind_trace(request.headers.get("X-Cloud-Trace-Context"), "")
    started = time.perf_counter()
    response, route, reason = _serve(request)
    fields: dict[str, Any] = {"function": FUNCTION, "method": request.method, "route": route,
                              "status": response.status_code,
                              "durationMs": round((time.perf_counter() - started) * 1000, 1)}
    if reason:
        fields["reason"] = reason
    log.info("request served" if response.status_code < 400 else "request refused", **fields)
    return response
