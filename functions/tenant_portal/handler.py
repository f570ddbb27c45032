"""HTTP entry point `tenant_portal`: the administration portal of a tenant's administrators.

Thin: routing, the session cookie, CSRF and origin checks, form decoding and error pages. The pages live in
`views/` by area, what an admin may see and change is decided in `service.py`, sign-in in `signin.py`, the
cookie in `session.py`. Browsers get HTML error pages; other clients (and the JSON download) get
problem+json.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import functions_framework
from flask import Request, Response

from functions.tenant_portal import session as cookies
from functions.tenant_portal.pages import Page, choose_language, security_headers
from functions.tenant_portal.views import activity, deletion, devices, onboarding, overview, settings, signin
from functions.tenant_portal.views.onboarding import OnboardingRefused
from functions.tenant_portal.visit import FUNCTION, NEXT_PATHS, Portal, PortalConfig, Redirect, Visit
from shared import http, logs
from shared.errors import AppError, BadRequest, Forbidden, ServiceUnavailable, TransientError, Unauthorized
from shared.origins import origin
from shared.wiring import components

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.store import Store

FORM_LIMIT = 8 * 1024
MAX_FORM_FIELDS = 64

log = logs.get_logger(__name__)


@components(FUNCTION)
def portal(config: Settings, store: Store) -> Portal:
    from functions.tenant_portal.onboarding import OnboardingService
    from functions.tenant_portal.service import TenantPortalService
    from functions.tenant_portal.signin import MicrosoftSignin
    from shared import wiring
    from shared.audit import AuditTrail
    from shared.auth import JwksCache, jwks_url
    from shared.clock import utc_now

    egress = wiring.egress_session(config, pool_size=4)
    microsoft = MicrosoftSignin(config.entra_authority_host, config.entra_client_id, config.entra_client_secret,
                                f"{config.portal_base_url}/auth/callback", egress,
                                JwksCache(egress, jwks_url(config.entra_authority_host)))
    trail = AuditTrail(utc_now, config.audit_retention_days)
    service = TenantPortalService(store, wiring.deletion_requester(config, store), config.receipt_key, utc_now,
                                  trail)
    onboarding_service = OnboardingService(store.tenants, wiring.graph_access_check(config, egress), utc_now,
                                           authority_host=config.entra_authority_host,
                                           client_id=config.entra_client_id,
                                           portal_base_url=config.portal_base_url,
                                           trail=trail)
    sealer = cookies.Sealer(config.portal_session_key)
    return Portal(PortalConfig(config.portal_base_url, config.entra_authority_host), service, microsoft,
                  sealer, onboarding_service, config, cookies.SessionKeeper(store.portal_sessions, sealer, utc_now))


# -- routing -------------------------------------------------------------------------------------------
LANG = ("lang",)
ANY_QUERY = None  # the sign-in callback takes whatever Entra ID sends back
ROUTER = http.Router([
    http.Route("GET", "/", overview.home, ("onboarded", "signedOut", "lang")),
    http.Route("GET", "/signin", signin.begin, ("next", "reauth", "lang")),
    http.Route("GET", "/auth/callback", signin.callback, ANY_QUERY),
    http.Route("POST", "/signout", signin.signout, LANG),
    http.Route("POST", "/signout/everywhere", signin.signout_everywhere, LANG),
    http.Route("GET", "/devices", devices.listing, ("pageToken", "revoked", "lang")),
    http.Route("POST", "/devices/<deviceId>/revoke", devices.revoke, LANG),
    http.Route("GET", "/settings", settings.page, ("saved", "lang")),
    http.Route("POST", "/settings", settings.save, LANG),
    http.Route("GET", "/deletion", deletion.page, ("requestId", "lang")),
    http.Route("POST", "/deletion", deletion.delete_all, LANG),
    http.Route("GET", "/receipts", deletion.receipts, LANG),
    http.Route("GET", "/receipts.csv", activity.receipts_csv, LANG),
    http.Route("GET", "/receipts.json", activity.receipts_json, LANG),
    http.Route("GET", "/activity", activity.page, ("pageToken", "lang")),
    http.Route("GET", "/activity.csv", activity.activity_csv, LANG),
    http.Route("GET", "/activity.json", activity.activity_json, LANG),
    http.Route("GET", "/record-of-processing.md", activity.record_of_processing, LANG),
    http.Route("GET", "/receipts/<requestId>.json", deletion.receipt_json, LANG),
    http.Route("GET", "/onboard", onboarding.form, LANG),
    http.Route("POST", "/onboard", onboarding.begin, LANG),
    http.Route("GET", "/onboard/callback", onboarding.callback, ANY_QUERY),
    http.Route("GET", "/onboard/wait", onboarding.wait, LANG),
    http.Route("GET", "/privacy", overview.privacy, LANG),
    http.Route("GET", "/assets/<name>", overview.static),
])
# POSTs a visitor without a (valid) session may send: signing out of an ended session only redirects.
_NO_SESSION_NEEDED = {"/signout"}


def _check_post(visit: Visit, route: http.Route) -> None:
    """Cross-site POSTs refused (Origin, Sec-Fetch-Site), then the form (size, type) and its CSRF token."""
    request = visit.request
    sent = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    own = origin(visit.portal.config.base_url)
    if sent is not None:
        # With Referrer-Policy: no-referrer Chromium sends "Origin: null" on our own forms.
        try:
            same = origin(sent) == own if sent != "null" else fetch_site == "same-origin"
        except ValueError:  # not a URL (an unclosed IPv6 bracket, a port out of range): not our origin
            same = False
        if not same:
            raise Forbidden("cross-site form posts are refused", slug="cross-site")
    elif fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Forbidden("cross-site form posts are refused", slug="cross-site")
    body, _ = http.read_body(request, FORM_LIMIT, ("application/x-www-form-urlencoded",))
    try:  # UTF-8 only, the raw bytes and what the percent-escapes stand for: never U+FFFD in the store
        visit.form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                              max_num_fields=MAX_FORM_FIELDS, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form could not be read", slug="malformed-form") from None
    if visit.session is None:
        if route.path in _NO_SESSION_NEEDED:
            return
        raise Unauthorized("sign in to continue", slug="signed-out", headers={})
    if not visit.session.csrf_valid(visit.value("csrf")):
        raise Forbidden("the form's security token is missing or wrong; reload the page", slug="csrf")


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and not request.path.endswith(".json")


def _error_response(visit: Visit, error: AppError) -> Response:
    if isinstance(error, OnboardingRefused) and _wants_html(visit.request):
        response = visit.html("onboard_result.html", error.status, outcome=error.outcome,
                              request_id=error.request_id, can_check=error.can_check,
                              entra_error=error.entra_error if error.outcome == "consent-failed" else None)
        response.headers.update(error.headers)
        return response
    if _wants_html(visit.request):
        request = visit.request
        back = request.path if request.method == "GET" and request.path in NEXT_PATHS[1:] else None
        response = visit.html("error.html", error.status, error=error, code=error.status, next_path=back)
        for name, value in error.headers.items():
            response.headers[name] = value
        return response
    return http.problem_response(error)


def _serve(request: Request) -> tuple[Response, str, str | None]:
    lang, explicit = choose_language(request.args.get("lang"), request.headers.get("Accept-Language"))
    page = Page(request, lang, explicit)
    visit = Visit(request, page, None, int(time.time()))  # type: ignore[arg-type]  # portal: set first in the try
    route_path, reason = "?", None
    try:
        visit.portal = portal()
        raw_cookie = request.cookies.get(cookies.SESSION_COOKIE)
        visit.session = visit.portal.sessions.open(raw_cookie) if raw_cookie else None
        if raw_cookie and visit.session is None:
            visit.end_session = True  # forged, signed out, expired or its tenant deleted: the cookie is cleared
        matched, params = ROUTER.resolve(request.method, request.path)
        route_path = matched.path
        page.keep_query = () if matched.query is ANY_QUERY else matched.query
        page.switch_path = "/" if matched.query is ANY_QUERY else None  # a callback's answer is single use
        if matched.query is not ANY_QUERY:
            http.reject_undeclared_query(request, matched)
        if request.method == "POST":
            _check_post(visit, matched)
        response = matched.handler(visit, **params)
    except Redirect as redirect:
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
    response = http.drained(request, response)  # a truncated body: no 500 from the framework's last read
    _finish_cookies(visit, response)
    authority = visit.portal.config.authority_host if visit.portal else ""
    return security_headers(response, authority, visit.session is not None), route_path, reason


def _finish_cookies(visit: Visit, response: Response) -> None:
    for header in visit.set_cookies:
        response.headers.add("Set-Cookie", header)
    if visit.end_session:
        response.headers.add("Set-Cookie", cookies.cleared_cookie_header(cookies.SESSION_COOKIE))
        visit.session = None


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
