"""Signing in with Microsoft (the authorization-code flow with PKCE, `signin.py`) and signing out."""
from __future__ import annotations

from flask import Response

from functions.tenant_portal import session as cookies
from functions.tenant_portal.pages import LANGUAGES
from functions.tenant_portal.visit import NEXT_PATHS, Visit, actor_of
from shared.errors import BadRequest, Unauthorized


def begin(visit: Visit) -> Response:
    next_path = visit.request.args.get("next") or "/"
    if next_path not in NEXT_PATHS:
        raise BadRequest("next must be a page of the portal", slug="invalid-next")
    auth_uri, flow = visit.portal.signin.begin()
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
    response = {k: v for k, v in visit.request.args.items() if isinstance(v, str)}
    try:
        signed_in = visit.portal.signin.complete(sealed["flow"], response)
    except SigninRefused as refused:
        raise Unauthorized("the sign-in with Microsoft did not succeed", slug=refused.reason, headers={}) from None
    visit.session = cookies.new_session(signed_in.tenant_id, signed_in.admin, visit.now, signed_in.role)
    if signed_in.admin:  # an administrator's sign-in to an active tenant is in its audit trail
        visit.portal.service.signed_in(signed_in.tenant_id, actor_of(visit.session))
    lang = sealed.get("lang")
    next_path = sealed.get("next")
    location = next_path if isinstance(next_path, str) and next_path in NEXT_PATHS else "/"
    return Response(status=303, headers={"Location": location + (f"?lang={lang}" if lang in LANGUAGES else "")})


def signout(visit: Visit) -> Response:
    visit.end_session = True
    return visit.redirect("/")
