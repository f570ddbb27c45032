"""Adding an organisation: the name form, the admin consent at Microsoft, its callback and the waiting page
(while Microsoft replicates the consent).

`functions/tenant_portal/onboarding.py` decides; these pages say what it decided.
"""
from __future__ import annotations

import json
from typing import Any

from flask import Response

from functions.tenant_portal import session as cookies
from functions.tenant_portal.pages import LANGUAGES
from functions.tenant_portal.visit import FUNCTION, Redirect, Visit, actor_of, signed_in
from shared import logs
from shared.errors import AppError

log = logs.get_logger(__name__)

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
    browsers (the handler's error response)."""

    def __init__(self, step: Any):
        self.outcome = step.outcome.value
        self.status, detail = ONBOARDING_REFUSALS.get(self.outcome, (400, "the onboarding did not succeed"))
        self.title = "Onboarding refused"
        self.entra_error = step.entra_error
        self.request_id = step.tenant.deletion_request_id if step.tenant is not None else None
        self.can_check = step.waiting is not None  # the wait is over, the onboarding still recoverable
        super().__init__(detail, slug=self.outcome, retry_after=5 if self.status == 503 else None)


def _outcome_page(visit: Visit, step: Any) -> Response:
    """The overview for an organisation that is (now) onboarded; else the page that says why not."""
    from functions.tenant_portal.onboarding import OnboardingOutcome

    if step.outcome == OnboardingOutcome.ONBOARDED:
        return visit.redirect("/", onboarded="1")
    if step.outcome == OnboardingOutcome.ALREADY_ONBOARDED:
        return visit.redirect("/")
    if step.outcome == OnboardingOutcome.AWAITING_CONSENT and step.waiting is not None:
        return _waiting_page(visit, step)
    raise OnboardingRefused(step)


def _waiting_page(visit: Visit, step: Any) -> Response:
    """Consent given, Microsoft still replicating it: a page that checks again by itself (portal.js, or a
    refresh in `<noscript>`) for up to 5 minutes; the waiting cookie keeps the onboarding recoverable for a
    day."""
    from functions.tenant_portal.onboarding import WAIT_COOKIE_SECONDS, WAIT_RECHECK_SECONDS

    visit.set_cookies.append(cookies.cookie_header(cookies.WAITING_COOKIE, visit.portal.sealer.seal(
        cookies.WAITING_COOKIE, {"waiting": step.waiting.to_cookie()}), WAIT_COOKIE_SECONDS))
    return _no_store(visit.html("onboard_wait.html", 200, recheck=WAIT_RECHECK_SECONDS))


def form(visit: Visit, error: str | None = None, name: str = "", status: int = 200) -> Response:
    from functions.tenant_portal.onboarding import OnboardingOutcome

    if visit.session is None:
        raise Redirect("/signin", next="/onboard")  # sign in first, then come back here
    step = visit.portal.onboarding.status(visit.session.tenant_id, admin=visit.session.admin)
    if step.outcome != OnboardingOutcome.NOT_ONBOARDED:
        return _outcome_page(visit, step)
    return visit.html("onboard.html", status, name=name, error=error)


def begin(visit: Visit) -> Response:
    from functions.tenant_portal.onboarding import OnboardingOutcome

    session = signed_in(visit)
    step = visit.portal.onboarding.begin(session.tenant_id, visit.value("name"), admin=session.admin)
    if step.outcome == OnboardingOutcome.NAME_INVALID:
        return form(visit, error="invalid-name", name=visit.value("name")[:256], status=400)
    if step.outcome != OnboardingOutcome.REDIRECT_TO_CONSENT or step.pending is None or not step.consent_url:
        return _outcome_page(visit, step)
    pending = {"pending": step.pending.to_cookie(), "lang": visit.page.lang if visit.page.explicit else None}
    visit.set_cookies.append(cookies.cookie_header(cookies.ONBOARDING_COOKIE, visit.portal.sealer.seal(
        cookies.ONBOARDING_COOKIE, pending), cookies.FLOW_SECONDS))
    log.info("onboarding started", function=FUNCTION, tenantId=session.tenant_id)
    return Response(status=302, headers={"Location": step.consent_url})


def wait(visit: Visit) -> Response:
    """GET /onboard/wait: the waiting page asks again whether Microsoft confirms the consent."""
    from functions.tenant_portal.onboarding import OnboardingOutcome, WaitingOnboarding

    sealed = visit.portal.sealer.unseal(cookies.WAITING_COOKIE, visit.request.cookies.get(cookies.WAITING_COOKIE))
    waiting = WaitingOnboarding.from_cookie(sealed.get("waiting")) if isinstance(sealed, dict) else None
    session = visit.session
    step = visit.portal.onboarding.check(waiting, session.tenant_id if session else None,
                                         admin=bool(session and session.admin),
                                         actor=actor_of(session) if session else None)
    if step.waiting is None or step.outcome.signed_in_overview:
        visit.set_cookies.append(cookies.cleared_cookie_header(cookies.WAITING_COOKIE))
    if _wants_json(visit):  # the waiting page's script: where to go on, or the refusal as problem+json
        if step.outcome == OnboardingOutcome.AWAITING_CONSENT:
            return _no_store(Response(json.dumps({"status": step.outcome.value}), 200, mimetype="application/json"))
        if step.outcome.signed_in_overview:
            location = visit.page.href("/", onboarded="1") if step.outcome == OnboardingOutcome.ONBOARDED \
                else visit.page.href("/")
            return _no_store(Response(json.dumps({"status": step.outcome.value, "location": location}), 200,
                                      mimetype="application/json"))
        raise OnboardingRefused(step)
    if step.outcome == OnboardingOutcome.AWAITING_CONSENT:
        return _no_store(visit.html("onboard_wait.html", 200, recheck=_recheck_seconds()))
    return _outcome_page(visit, step)


def _wants_json(visit: Visit) -> bool:
    accept = visit.request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _recheck_seconds() -> int:
    from functions.tenant_portal.onboarding import WAIT_RECHECK_SECONDS

    return WAIT_RECHECK_SECONDS


def callback(visit: Visit) -> Response:
    from functions.tenant_portal.onboarding import PendingOnboarding

    sealed = visit.portal.sealer.unseal(cookies.ONBOARDING_COOKIE,
                                        visit.request.cookies.get(cookies.ONBOARDING_COOKIE))
    visit.set_cookies.append(cookies.cleared_cookie_header(cookies.ONBOARDING_COOKIE))  # single-use state
    if sealed is not None and sealed.get("lang") in LANGUAGES and not visit.page.explicit:
        visit.page = visit.page.in_language(sealed["lang"])  # the language the admin chose before leaving
    pending = PendingOnboarding.from_cookie(sealed.get("pending")) if sealed is not None else None
    query = {k: v for k, v in visit.request.args.items() if isinstance(v, str)}
    session = visit.session
    step = visit.portal.onboarding.complete(query, pending, session.tenant_id if session else None,
                                            admin=bool(session and session.admin),
                                            actor=actor_of(session) if session else None)
    return _outcome_page(visit, step)
