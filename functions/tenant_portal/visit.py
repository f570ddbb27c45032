"""One portal request as the page handlers see it (`Visit`), the portal's collaborators (`Portal`), and
the gates every page passes: signed in, an administrator, a tenant that still exists."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Request, Response

from functions.tenant_portal import session as cookies
from functions.tenant_portal.pages import Page, render
from shared.audit import Actor
from shared.clock import timestamp
from shared.errors import Forbidden, Unauthorized
from shared.store.schema import ActorKind

if TYPE_CHECKING:  # the handler builds these lazily (cold start); only their types are needed here
    from functions.tenant_portal.onboarding import OnboardingService
    from functions.tenant_portal.service import TenantPortalService
    from functions.tenant_portal.signin import MicrosoftSignin
    from shared.config import Settings
    from shared.store.records import Tenant

FUNCTION = "tenant_portal"
# The pages a sign-in may return to (and an error page may offer to reload).
NEXT_PATHS = ("/", "/devices", "/settings", "/deletion", "/receipts", "/onboard", "/activity")


@dataclass(frozen=True)
class PortalConfig:
    base_url: str
    authority_host: str


@dataclass
class Portal:
    config: PortalConfig
    service: TenantPortalService
    signin: MicrosoftSignin
    sealer: cookies.Sealer
    onboarding: OnboardingService
    settings: Settings  # the retention periods /privacy names
    sessions: cookies.SessionKeeper


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


class Redirect(Exception):
    """Raised by a page to send the visitor elsewhere (303 to a path of the portal)."""

    def __init__(self, path: str, **params: Any):
        super().__init__(path)
        self.path, self.params = path, params


def signed_in(visit: Visit) -> cookies.Session:
    if visit.session is None:
        raise Unauthorized("sign in to continue", slug="signed-out", headers={})
    return visit.session


def admin(visit: Visit) -> cookies.Session:
    session = signed_in(visit)
    if not session.admin:
        raise Forbidden("only administrators of the organisation may use the portal", slug="not-admin")
    return session


def actor_of(session: cookies.Session) -> Actor:
    """Who makes a change in the portal as the audit trail records it: an administrator, the role its session
    record holds and the session's random ID (the portalSessions record's; never the person)."""
    return Actor(ActorKind.ADMIN, session.role, session.session_id)


def tenant_of(visit: Visit, allow_deleting: bool = False) -> Tenant:
    """The session's tenant. A tenant that is gone (deleted, or never onboarded) ends the session and sends
    the visitor to `/`; one being deleted sends every page to its progress page."""
    session = admin(visit)
    tenant = visit.portal.service.tenant(session.tenant_id)
    if tenant is None:
        visit.portal.sessions.end(session)
        visit.end_session = True
        raise Redirect("/")
    if not tenant.active and not allow_deleting:
        raise Redirect("/deletion")
    return tenant


def when(value: object) -> str:
    """A stored time as the pages show it: minutes, UTC."""
    text = timestamp(value)
    return text[:16].replace("T", " ") + " UTC" if text else "–"
