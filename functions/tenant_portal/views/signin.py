"""Signing in with Microsoft (the authorization-code flow with PKCE, `signin.py`) and signing out."""
from __future__ import annotations

from flask import Response

from functions.tenant_portal import session as cookies
from functions.tenant_portal.pages import LANGUAGES
from functions.tenant_portal.visit import FUNCTION, NEXT_PATHS, Visit, actor_of, admin
from shared import logs
from shared.errors import BadRequest, Conflict, Unauthorized

log = logs.get_logger(__name__)


def begin(visit: Visit) -> Response:
    next_path = visit.request.args.get("next") or "/"
    if next_path not in NEXT_PATHS:
        raise BadRequest("next must be a page of the portal", slug="invalid-next")
    # `reauth=1` (the way to "Delete all data"): Entra ID must have authenticated the person within 10 minutes.
    recent = visit.request.args.get("reauth") == "1"
    auth_uri, flow = visit.portal.signin.begin(max_age=cookies.REAUTH_SECONDS if recent else None)
    flow_cookie = {"flow": flow, "next": next_path, "lang": visit.page.lang if visit.page.explicit else None,
                   "exp": visit.now + cookies.FLOW_SECONDS}
    visit.set_cookies.append(cookies.cookie_header(cookies.FLOW_COOKIE, visit.portal.sealer.seal(
        cookies.FLOW_COOKIE, flow_cookie), cookies.FLOW_SECONDS))
    return Response(status=302, headers={"Location": auth_uri})


def callback(visit: Visit) -> Response:
    from functions.tenant_portal.signin import SigninRefused

    sealed = visit.portal.sealer.unseal(cookies.FLOW_COOKIE, visit.request.cookies.get(cookies.FLOW_COOKIE))
    visit.set_cookies.append(cookies.cleared_cookie_header(cookies.FLOW_COOKIE))  # single use
    if sealed is None or not isinstance(sealed.get("flow"), dict) or sealed.get("exp", 0) < visit.now:
        raise BadRequest("the sign-in has expired or was started elsewhere; start again", slug="signin-expired")
    if sealed.get("lang") in LANGUAGES and not visit.page.explicit:
        visit.page = visit.page.in_language(sealed["lang"])  # a refusal in the language chosen before leaving
    response = {k: v for k, v in visit.request.args.items() if isinstance(v, str)}
    try:
        signed_in = visit.portal.signin.complete(sealed["flow"], response)
    except SigninRefused as refused:
        raise Unauthorized("the sign-in with Microsoft did not succeed", slug=refused.reason, headers={}) from None
    tenant = visit.portal.service.tenant(signed_in.tenant_id)
    if tenant is not None and not tenant.active:
        # The deletion under way takes the tenant's sessions with it: none is started that it might miss.
        raise Conflict("the organisation's data is being deleted", slug="tenant-deleting")
    if visit.session is not None:  # signing in again: the session before is over
        visit.portal.sessions.end(visit.session)
    visit.session, sealed_session = visit.portal.sessions.start(signed_in.tenant_id, signed_in.role,
                                                                signed_in.auth_time)
    visit.end_session = False
    visit.set_cookies.append(cookies.cookie_header(cookies.SESSION_COOKIE, sealed_session, cookies.MAX_SECONDS))
    if visit.session.admin:  # an administrator's sign-in to an active tenant is in its audit trail
        visit.portal.service.signed_in(signed_in.tenant_id, actor_of(visit.session))
    lang = sealed.get("lang")
    next_path = sealed.get("next")
    location = next_path if isinstance(next_path, str) and next_path in NEXT_PATHS else "/"
    return Response(status=303, headers={"Location": location + (f"?lang={lang}" if lang in LANGUAGES else "")})


def signout(visit: Visit) -> Response:
    """Ends this session: its record is deleted, so no copy of the cookie works any more."""
    if visit.session is not None:
        visit.portal.sessions.end(visit.session)
    visit.end_session = True
    return visit.redirect("/")


def signout_everywhere(visit: Visit) -> Response:
    """Ends every session of the organisation in the portal (every browser, this one too): an administrator's
    answer to a lost laptop or a copied cookie."""
    session = admin(visit)
    ended = visit.portal.sessions.end_all(session.tenant_id)
    log.info("signed out everywhere", function=FUNCTION, tenantId=session.tenant_id, count=ended)
    visit.end_session = True
    return visit.redirect("/", signedOut="everywhere")
