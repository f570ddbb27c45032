"""Self-service onboarding: a signed-in administrator adds their organisation through Entra ID admin consent.

The portal calls this service; it renders pages and keeps the sealed cookies, this decides. Flow
(docs/architecture.md, "Tenant portal: onboarding and /privacy" and "Admin consent"):

1. `status(tid, admin=…)` — where a signed-in admin's tenant stands: not onboarded (show "Add your
   organisation"), active (go to the overview), or being deleted (tell them to wait).
2. `begin(tid, name, admin=…)` — checks the name, then returns the admin-consent URL
   `{ENTRA_AUTHORITY_HOST}/{tid}/v2.0/adminconsent?client_id=…&scope=https://graph.microsoft.com/.default
   &redirect_uri={PORTAL_BASE_URL}/onboard/callback&state=…` and a `PendingOnboarding` (state, tid, name,
   issued time) that the portal seals into its cookie. Nothing is stored.
3. `complete(callback query, pending from the cookie or None, session tid or None, admin=…)` — checks, in
   this order: `error` first (Entra ID sends `admin_consent=True` on errors too); the session (an
   administrator) and the `state` (bound to the session, at most 10 minutes old — single use because the
   portal clears the cookie whatever the outcome); `tenant` equals the session's `tid`; a
   client-credentials token for that tenant succeeds and Graph lets the app read the tenant's users
   (`User.Read.All`; confirmed by a Graph call, never by decoding Graph's token; retried briefly). Only
   then is the tenant created `active` with that name and the default settings. Consent takes seconds to
   minutes to replicate: until Graph confirms, the answer is AWAITING_CONSENT with a `WaitingOnboarding`
   that the portal seals into a cookie, and its waiting page calls
4. `check(waiting, session tid, admin=…)` every few seconds for up to 5 minutes (then the reason, e.g.
   "missing permission", with a "check again" that still works later: the onboarding stays recoverable).
Creation is create-once: a replayed callback changes nothing and answers "already onboarded".

Every refusal is an `OnboardingOutcome` the portal renders as its own page; nothing is stored on a refusal,
and no token, `state`, name or Entra error text reaches a log line (only the outcome, the tenant ID and
identifier-shaped error codes).
"""
from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlencode

from shared import logs
from shared.audit import Actor, AuditTrail
from shared.clock import Clock
from shared.errors import AppError, Conflict
from shared.ids import is_canonical_id
from shared.store.records import AuditEvent, Tenant
from shared.store.schema import TenantStatus

log = logs.get_logger(__name__)

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
REQUIRED_GRAPH_ROLE = "User.Read.All"
CALLBACK_PATH = "/onboard/callback"
STATE_MAX_AGE = timedelta(minutes=10)
STATE_CLOCK_SKEW = timedelta(seconds=30)  # a state "issued" this far in the future still counts (instances' clocks)
CONSENT_RETRY_DELAYS = (1.0, 2.0)  # seconds between attempts in the callback; then the waiting page retries
# Admin consent replicates to the token endpoint in seconds to minutes (no published bound): the waiting page
# checks again by itself every WAIT_RECHECK_SECONDS for CONSENT_WAIT, then offers "check again" (and the
# waiting cookie keeps the onboarding recoverable for WAIT_COOKIE_SECONDS).
CONSENT_WAIT = timedelta(minutes=5)
WAIT_RECHECK_SECONDS = 5
WAIT_COOKIE_SECONDS = 24 * 3600


class OnboardingOutcome(StrEnum):
    """What `status`, `begin` and `complete` decided; each is one page (or redirect) in the portal."""
    NOT_ONBOARDED = "not-onboarded"  # status: show "Add your organisation"
    REDIRECT_TO_CONSENT = "redirect-to-consent"  # begin: 302 to `consent_url`, seal `pending` into the cookie
    ONBOARDED = "onboarded"  # complete: the tenant was created just now → the overview
    ALREADY_ONBOARDED = "already-onboarded"  # the tenant exists and is active → the overview, nothing changed
    TENANT_DELETING = "tenant-deleting"  # the tenant's data is being deleted: wait until that has finished
    NAME_INVALID = "name-invalid"  # begin: the organisation name is empty, too long or has control characters
    NO_SESSION = "no-session"  # nobody signed in, or no onboarding under way in this browser
    NOT_ADMIN = "not-admin"  # signed in, but not an administrator of the organisation (403 page)
    DECLINED = "declined"  # the administrator cancelled the consent (error=access_denied)
    CONSENT_FAILED = "consent-failed"  # Entra ID reported another error (e.g. consent_required, invalid_scope)
    STATE_MISMATCH = "state-mismatch"  # `state` missing, altered, or from another session or browser
    STATE_EXPIRED = "state-expired"  # the consent started more than 10 minutes ago: start again
    MALFORMED_CALLBACK = "malformed-callback"  # not an admin-consent answer (no admin_consent=True, no tenant GUID)
    WRONG_TENANT = "wrong-tenant"  # consent was given in another organisation than the signed-in one
    CONSENT_NOT_FOUND = "consent-not-found"  # Entra ID still refuses the app a token for the tenant
    MISSING_PERMISSION = "missing-permission"  # the token lacks the Graph application permission User.Read.All
    ENTRA_UNAVAILABLE = "entra-unavailable"  # Entra ID could not be reached: try again (state is used up)
    AWAITING_CONSENT = "awaiting-consent"  # consent given, not confirmed yet: the waiting page checks again

    @property
    def signed_in_overview(self) -> bool:
        """Whether the portal continues to the tenant's overview."""
        return self in (OnboardingOutcome.ONBOARDED, OnboardingOutcome.ALREADY_ONBOARDED)


@dataclass(frozen=True)
class PendingOnboarding:
    """What the portal's sealed cookie carries between `begin` and `complete` (nothing is kept server-side)."""
    state: str
    tenant_id: str
    name: str
    issued_at: datetime

    def to_cookie(self) -> dict[str, Any]:
        """Plain JSON values for the sealed cookie."""
        return {"state": self.state, "tid": self.tenant_id, "name": self.name,
                "iat": int(self.issued_at.timestamp())}

    @classmethod
    def from_cookie(cls, value: Any) -> PendingOnboarding | None:
        """The pending onboarding from an unsealed cookie value; None when anything is missing or malformed."""
        if not isinstance(value, Mapping):
            return None
        state, tid, name, iat = value.get("state"), value.get("tid"), value.get("name"), value.get("iat")
        if (not isinstance(state, str) or not state or not is_canonical_id(tid) or not isinstance(name, str)
                or not isinstance(iat, int) or isinstance(iat, bool)):
            return None
        try:
            issued = datetime.fromtimestamp(iat, UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return cls(state, tid, name, issued)


@dataclass(frozen=True)
class WaitingOnboarding:
    """What the portal's sealed waiting cookie carries while Microsoft replicates a consent the callback
    verified (state, session and tenant all checked): the tenant, the name, when the wait began."""
    tenant_id: str
    name: str
    since: datetime

    def to_cookie(self) -> dict[str, Any]:
        return {"tid": self.tenant_id, "name": self.name, "since": int(self.since.timestamp())}

    @classmethod
    def from_cookie(cls, value: Any) -> WaitingOnboarding | None:
        if not isinstance(value, Mapping):
            return None
        tid, name, since = value.get("tid"), value.get("name"), value.get("since")
        if not is_canonical_id(tid) or not isinstance(name, str) or not isinstance(since, int) \
                or isinstance(since, bool):
            return None
        try:
            return cls(tid, name, datetime.fromtimestamp(since, UTC))
        except (OverflowError, OSError, ValueError):
            return None


@dataclass(frozen=True)
class OnboardingStep:
    """The answer of `status`, `begin` and `complete`.

    `tenant` is set for ONBOARDED / ALREADY_ONBOARDED / TENANT_DELETING; `consent_url` and `pending` for
    REDIRECT_TO_CONSENT; `detail` is a short English reason for NAME_INVALID (to show beside the field);
    `entra_error` is Entra ID's error code (identifier-shaped) for DECLINED / CONSENT_FAILED /
    CONSENT_NOT_FOUND."""
    outcome: OnboardingOutcome
    tenant: Tenant | None = None
    consent_url: str | None = None
    pending: PendingOnboarding | None = None
    detail: str | None = None
    entra_error: str | None = None
    waiting: WaitingOnboarding | None = None  # AWAITING_CONSENT, and a refusal after the wait: seal into a cookie


class TenantStore(Protocol):
    """The part of `shared.store.repositories.TenantRepository` onboarding uses."""

    def get(self, tenant_id: str) -> Tenant | None: ...

    def create(self, tenant_id: str, name: str, settings: dict[str, Any], now: datetime,
               audit: AuditEvent | None = None) -> Tenant: ...


class GraphAccess(Protocol):
    """`shared.graph.client.GraphAccessCheck`: whether Graph lets the app read a tenant's users (a fresh
    client-credentials token and one Graph call). Raises `GraphRefused` when Entra ID or Graph refuse the app,
    `GraphUnavailable` when they cannot be reached."""

    def reads_users(self, tenant_id: str) -> bool: ...


class OnboardingService:
    def __init__(self, tenants: TenantStore, access: GraphAccess, clock: Clock, *, authority_host: str,
                 client_id: str, portal_base_url: str,
                 retry_delays: Sequence[float] = CONSENT_RETRY_DELAYS,
                 sleep: Callable[[float], None] = time.sleep, new_state: Callable[[], str] | None = None,
                 trail: AuditTrail | None = None):
        self._tenants = tenants
        self._trail = trail  # records the onboarding (tenant.onboard) with the tenant's creation
        self._access = access
        self._clock = clock
        self._authority = authority_host.rstrip("/")
        self._client_id = client_id
        self._redirect_uri = portal_base_url.rstrip("/") + CALLBACK_PATH
        self._retry_delays = tuple(retry_delays)
        self._sleep = sleep
        self._new_state = new_state or (lambda: secrets.token_urlsafe(32))

    # ---- 1. where the signed-in admin's tenant stands ----------------------------------------------------
    def status(self, session_tenant_id: str | None, *, admin: bool) -> OnboardingStep:
        """`admin`: the session's administrator flag (the ID token's `wids` / `Tenant.Admin`)."""
        if not is_canonical_id(session_tenant_id):
            return OnboardingStep(OnboardingOutcome.NO_SESSION)
        if not admin:
            return OnboardingStep(OnboardingOutcome.NOT_ADMIN)
        tenant = self._tenants.get(session_tenant_id)
        if tenant is None:
            return OnboardingStep(OnboardingOutcome.NOT_ONBOARDED)
        return self._existing(tenant)

    # ---- 2. POST /onboard -----------------------------------------------------------------------------------
    def begin(self, session_tenant_id: str | None, name: Any, *, admin: bool) -> OnboardingStep:
        """The consent redirect for the signed-in admin's tenant, or why there is none."""
        from shared.tenant_settings import validate_name

        current = self.status(session_tenant_id, admin=admin)
        if current.outcome != OnboardingOutcome.NOT_ONBOARDED or session_tenant_id is None:
            return current
        try:
            name = validate_name(name)
        except AppError as error:
            return OnboardingStep(OnboardingOutcome.NAME_INVALID, detail=error.detail)
        pending = PendingOnboarding(self._new_state(), session_tenant_id, name, self._clock())
        return OnboardingStep(OnboardingOutcome.REDIRECT_TO_CONSENT, consent_url=self.consent_url(pending),
                              pending=pending)

    def consent_url(self, pending: PendingOnboarding) -> str:
        query = urlencode({"client_id": self._client_id, "scope": GRAPH_DEFAULT_SCOPE,
                           "redirect_uri": self._redirect_uri, "state": pending.state})
        return f"{self._authority}/{pending.tenant_id}/v2.0/adminconsent?{query}"

    # ---- 3. GET /onboard/callback ---------------------------------------------------------------------------
    def complete(self, query: Mapping[str, str], pending: PendingOnboarding | None,
                 session_tenant_id: str | None, *, admin: bool, actor: Actor | None = None) -> OnboardingStep:
        """Verifies the admin-consent answer in the contract's order; creates the tenant only when all holds
        (with the audit event of `actor`, the signed-in administrator, in the same write).
        `query`: the callback's query parameters; `pending`: what the onboarding cookie held (None: no
        cookie); `session_tenant_id` / `admin`: the signed-in session's `tid` (None: nobody signed in) and
        administrator flag. The caller clears the onboarding cookie before rendering whatever this returns
        (single-use state)."""
        step = self._verify(query, pending, session_tenant_id, admin, actor)
        log.info("onboarding callback", reason=step.outcome.value,
                 tenantId=session_tenant_id if is_canonical_id(session_tenant_id) else None,
                 error=step.entra_error)
        return step

    def _verify(self, query: Mapping[str, str], pending: PendingOnboarding | None,
                session_tenant_id: str | None, admin: bool, actor: Actor | None = None) -> OnboardingStep:
        from shared.graph.client import safe_code

        # 1. error first: Entra ID sends admin_consent=True with errors too.
        error = query.get("error")
        if error is not None:
            code = safe_code(error)
            outcome = OnboardingOutcome.DECLINED if code == "access_denied" else OnboardingOutcome.CONSENT_FAILED
            return OnboardingStep(outcome, entra_error=code)
        # 2. state: single use, bound to this session, at most 10 minutes old.
        if pending is None or not is_canonical_id(session_tenant_id):
            return OnboardingStep(OnboardingOutcome.NO_SESSION)
        if not admin:
            return OnboardingStep(OnboardingOutcome.NOT_ADMIN)
        state = query.get("state")
        if (not isinstance(state, str) or not hmac.compare_digest(state.encode(), pending.state.encode())
                or pending.tenant_id != session_tenant_id):
            return OnboardingStep(OnboardingOutcome.STATE_MISMATCH)
        now = self._clock()
        if not now - STATE_MAX_AGE <= pending.issued_at <= now + STATE_CLOCK_SKEW:
            return OnboardingStep(OnboardingOutcome.STATE_EXPIRED)
        # 3. the consenting tenant is the signed-in one.
        tenant_param = query.get("tenant")
        if query.get("admin_consent") != "True" or not isinstance(tenant_param, str) \
                or not is_canonical_id(tenant_param.lower()):
            return OnboardingStep(OnboardingOutcome.MALFORMED_CALLBACK)
        if tenant_param.lower() != session_tenant_id:
            return OnboardingStep(OnboardingOutcome.WRONG_TENANT)
        existing = self._tenants.get(session_tenant_id)
        if existing is not None:  # replay, or onboarded meanwhile in another tab: nothing to do
            return self._existing(existing)
        # 4. Entra ID gives the app a token for the tenant, and Graph lets it read the users. Not yet: the
        # consent may still be replicating, so the waiting page checks again (`check`).
        confirmed = self._confirm_consent(session_tenant_id, self._retry_delays)
        if confirmed is not None:
            return OnboardingStep(OnboardingOutcome.AWAITING_CONSENT, entra_error=confirmed.entra_error,
                                  waiting=WaitingOnboarding(session_tenant_id, pending.name, now))
        # 5. only now: create once.
        return self._create(session_tenant_id, pending.name, actor)

    # ---- 4. GET /onboard/wait: the waiting page checks again -------------------------------------------------
    def check(self, waiting: WaitingOnboarding | None, session_tenant_id: str | None, *, admin: bool,
              actor: Actor | None = None) -> OnboardingStep:
        """One more confirmation of a consent the callback verified (`waiting` from the cookie). Within
        CONSENT_WAIT of the callback: AWAITING_CONSENT until Graph confirms; after it the reason (e.g.
        MISSING_PERMISSION), with `waiting` kept so that checking again later still onboards. The tenant is
        created with the audit event of `actor` (the signed-in administrator), as in `complete`."""
        if waiting is None or not is_canonical_id(session_tenant_id):
            return OnboardingStep(OnboardingOutcome.NO_SESSION)
        if not admin:
            return OnboardingStep(OnboardingOutcome.NOT_ADMIN)
        now = self._clock()
        if waiting.tenant_id != session_tenant_id or waiting.since > now + STATE_CLOCK_SKEW \
                or waiting.since < now - timedelta(seconds=WAIT_COOKIE_SECONDS):
            return OnboardingStep(OnboardingOutcome.STATE_MISMATCH)
        existing = self._tenants.get(session_tenant_id)
        if existing is not None:
            return self._existing(existing)
        refused = self._confirm_consent(session_tenant_id, ())
        if refused is None:
            step = self._create(session_tenant_id, waiting.name, actor)
        elif now - waiting.since < CONSENT_WAIT:
            step = OnboardingStep(OnboardingOutcome.AWAITING_CONSENT, entra_error=refused.entra_error,
                                  waiting=waiting)
        else:
            step = OnboardingStep(refused.outcome, entra_error=refused.entra_error, waiting=waiting)
        log.info("onboarding consent checked", reason=step.outcome.value, tenantId=session_tenant_id,
                 error=step.entra_error)
        return step

    def _confirm_consent(self, tenant_id: str, delays: Sequence[float]) -> OnboardingStep | None:
        """None when Graph lets the app read the tenant's users (confirmed by a Graph call: Graph's tokens are
        never decoded); else the refusal after retrying after each of `delays`."""
        from shared.graph.client import GraphRefused, GraphUnavailable

        last = OnboardingStep(OnboardingOutcome.CONSENT_NOT_FOUND)
        for attempt, delay in enumerate((*delays, None)):
            try:
                if self._access.reads_users(tenant_id):
                    return None
                last = OnboardingStep(OnboardingOutcome.MISSING_PERMISSION)
            except GraphRefused as refused:
                last = OnboardingStep(OnboardingOutcome.CONSENT_NOT_FOUND, entra_error=refused.code)
            except GraphUnavailable:
                last = OnboardingStep(OnboardingOutcome.ENTRA_UNAVAILABLE)
            if delay is not None:
                log.info("onboarding consent not confirmed yet", attempt=attempt + 1, reason=last.outcome.value,
                         tenantId=tenant_id)
                self._sleep(delay)
        return last

    def _create(self, tenant_id: str, name: str, actor: Actor | None = None) -> OnboardingStep:
        from shared.store.schema import AuditAction
        from shared.tenant_settings import validate_settings

        now = self._clock()
        event = (self._trail.event(actor, AuditAction.TENANT_ONBOARD, at=now)
                 if self._trail is not None and actor is not None else None)
        try:
            tenant = self._tenants.create(tenant_id, name, validate_settings({}), now, event)
        except Conflict:  # created meanwhile (a replay racing this one): keep what is there
            existing = self._tenants.get(tenant_id)
            if existing is None:
                raise
            return self._existing(existing)
        return OnboardingStep(OnboardingOutcome.ONBOARDED, tenant=tenant)

    @staticmethod
    def _existing(tenant: Tenant) -> OnboardingStep:
        if tenant.status == TenantStatus.ACTIVE:
            return OnboardingStep(OnboardingOutcome.ALREADY_ONBOARDED, tenant=tenant)
        return OnboardingStep(OnboardingOutcome.TENANT_DELETING, tenant=tenant)
