"""The portal's sessions: a server-side record per sign-in (`tenants/{tenantId}/portalSessions/{sessionId}`,
shared/store/portal_sessions.py) and a sealed cookie (AES-256-GCM under a key derived from
`PORTAL_SESSION_KEY`) holding only the tenant ID, the session's random ID (128 bits), its CSRF secret and,
when Entra ID said so, the time the person last authenticated there (`auth_time`).

Every request reads the record: a session is over when its record is gone (signed out, "Sign out
everywhere", the tenant deleted) or it has been idle 30 minutes or lived 8 hours, whatever the cookie
says. The cookie name is authenticated data of the seal, so a value sealed for one cookie (the sign-in
flow) is refused as another (the session). See docs/security.md, "Portal sessions".
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from shared.ids import is_canonical_id

if TYPE_CHECKING:
    from shared.clock import Clock
    from shared.store.portal_sessions import PortalSessionRecord

SESSION_COOKIE = "__Host-portal"
FLOW_COOKIE = "__Host-portal-signin"
ONBOARDING_COOKIE = "__Host-portal-onboard"  # the pending onboarding (state, tid, name, time) until its callback
# The organisation's deletion this browser asked for (request ID, tenant ID, until): its progress page and
# receipt stay readable here after the deletion has taken the sessions with the tenant.
DELETION_COOKIE = "__Host-portal-deletion"
DELETION_FOLLOW_SECONDS = 24 * 60 * 60
# A verified consent that Microsoft has not confirmed yet (tid, name, since): the waiting page checks again.
WAITING_COOKIE = "__Host-portal-onboard-wait"
IDLE_SECONDS = 30 * 60
MAX_SECONDS = 8 * 60 * 60
TOUCH_SECONDS = 60  # lastUsedAt is written at most once a minute
SESSION_ID_BYTES = 16  # 128 bits, 22 characters of URL-safe base64
# "Delete all data" needs an authentication at Entra ID at most this old (ASVS 3.6.1/3.6.2): its sign-in sends
# `max_age` and the ID token's `auth_time` is checked, at the callback and again when the deletion is posted.
REAUTH_SECONDS = 10 * 60
REAUTH_LEEWAY_SECONDS = 60  # clock skew between Entra ID and us, as for the ID token's other times
MEMBER = "member"  # the role of a signed-in user whom no directory role or app role makes an administrator
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
FLOW_SECONDS = 10 * 60
MAX_COOKIE_CHARS = 3000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Authenticated encryption of small JSON objects for cookies (a fresh 96-bit nonce per seal)."""

    def __init__(self, secret: bytes):
        # cryptography is imported here, when the portal builds its collaborators: main.py imports every
        # handler, so a module-level import would be paid by every function's cold start.
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tenant_portal cookies v1").derive(secret)
        self._aead = AESGCM(key)
        self._refused = (ValueError, TypeError, InvalidTag)

    def seal(self, name: str, payload: dict[str, Any]) -> str:
        nonce = secrets.token_bytes(12)
        # UTF-8, not \u escapes: a name of 256 characters outside the BMP stays well below the size limit.
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return _b64(nonce + self._aead.encrypt(nonce, body, name.encode()))

    def unseal(self, name: str, value: str | None) -> dict[str, Any] | None:
        """The payload, or None for a missing, oversized, forged or tampered value."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = _unb64(value)
            payload = json.loads(self._aead.decrypt(raw[:12], raw[12:], name.encode()))
        except self._refused:
            return None
        return payload if isinstance(payload, dict) else None


@dataclass(frozen=True)
class Session:
    """A signed-in visitor: the tenant, the session's random ID (the record's), the role its record holds,
    the CSRF secret of this session and the ID token's `auth_time` (both only in the sealed cookie)."""
    tenant_id: str
    session_id: str
    role: str
    csrf_secret: str
    auth_time: int | None = None  # when the person last authenticated at Entra ID (Unix time), if it said

    def authenticated_recently(self, now: int) -> bool:
        """Whether the person authenticated at Entra ID within the last REAUTH_SECONDS (give or take the skew;
        not in the future): the same window the sign-in's callback checked."""
        return self.auth_time is not None and (
            now - REAUTH_SECONDS - REAUTH_LEEWAY_SECONDS <= self.auth_time <= now + REAUTH_LEEWAY_SECONDS)

    @property
    def admin(self) -> bool:
        return self.role != MEMBER

    @property
    def csrf_token(self) -> str:
        """What forms carry: derived from the secret, so the secret itself never appears in a page."""
        return hmac.new(_unb64(self.csrf_secret), b"csrf", hashlib.sha256).hexdigest()

    def csrf_valid(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.csrf_token.encode())


class SessionRecords(Protocol):
    """shared.store.portal_sessions.PortalSessionRepository, as the keeper uses it."""

    def create(self, tenant_id: str, session_id: str, role: str, now: datetime, expires_at: datetime) -> Any: ...
    def get(self, tenant_id: str, session_id: str) -> PortalSessionRecord | None: ...
    def touch(self, tenant_id: str, session_id: str, now: datetime, expires_at: datetime) -> bool: ...
    def delete(self, tenant_id: str, session_id: str) -> None: ...
    def delete_all(self, tenant_id: str) -> int: ...
    def listed(self, tenant_id: str, limit: int = 100) -> list[PortalSessionRecord]: ...


def expiry(created_at: datetime, used_at: datetime) -> datetime:
    """When a session created at `created_at` and last used at `used_at` ends: idle 30 min, at most 8 h."""
    return min(used_at + timedelta(seconds=IDLE_SECONDS), created_at + timedelta(seconds=MAX_SECONDS))


class SessionKeeper:
    """Portal sessions on their server-side records: started at sign-in, checked on every request (one read of
    the record; a write at most once a minute), ended at sign-out, all of a tenant's at once on request."""

    def __init__(self, records: SessionRecords, sealer: Sealer, clock: Clock):
        self._records = records
        self._sealer = sealer
        self._clock = clock

    def start(self, tenant_id: str, role: str, auth_time: int | None = None) -> tuple[Session, str]:
        """(the new session, its sealed cookie value); `auth_time` is the ID token's, when it had one."""
        now = self._clock()
        session = Session(tenant_id, _b64(secrets.token_bytes(SESSION_ID_BYTES)), role,
                          _b64(secrets.token_bytes(32)), auth_time)
        self._records.create(tenant_id, session.session_id, role, now, expiry(now, now))
        payload: dict[str, Any] = {"t": tenant_id, "i": session.session_id, "c": session.csrf_secret}
        if auth_time is not None:
            payload["a"] = auth_time
        return session, self._sealer.seal(SESSION_COOKIE, payload)

    def active(self, tenant_id: str) -> list[PortalSessionRecord]:
        """The tenant's sessions that are still alive (neither idle 30 min nor 8 h old), newest first."""
        now = self._clock()
        alive = [r for r in self._records.listed(tenant_id)
                 if now < min(r.expires_at, expiry(r.created_at, r.last_used_at))]
        return sorted(alive, key=lambda r: r.created_at, reverse=True)

    def open(self, value: str | None) -> Session | None:
        """The session of a genuine cookie whose record exists and has neither been idle 30 min nor lived 8 h;
        None else (forged, signed out, signed out everywhere, expired, or its tenant deleted)."""
        data = self._sealer.unseal(SESSION_COOKIE, value)
        if data is None:
            return None
        tenant_id, session_id, csrf, auth_time = (data.get(k) for k in ("t", "i", "c", "a"))
        if not is_canonical_id(tenant_id) or not _is_session_id(session_id) or not isinstance(csrf, str):
            return None
        record = self._records.get(tenant_id, session_id)
        if record is None:
            return None
        now = self._clock()
        if now >= min(record.expires_at, expiry(record.created_at, record.last_used_at)):
            self._records.delete(tenant_id, session_id)  # lapsed: gone now, not only when the TTL policy runs
            return None
        if (now - record.last_used_at).total_seconds() >= TOUCH_SECONDS and not self._records.touch(
                tenant_id, session_id, now, expiry(record.created_at, now)):
            return None  # signed out meanwhile
        return Session(tenant_id, session_id, record.role, csrf,
                       auth_time if isinstance(auth_time, int) and not isinstance(auth_time, bool) else None)

    def end(self, session: Session) -> None:
        self._records.delete(session.tenant_id, session.session_id)

    def end_all(self, tenant_id: str) -> int:
        """Ends every session of the tenant (this one too); how many there were."""
        return self._records.delete_all(tenant_id)


def _is_session_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 22 and all(c in _B64_CHARS for c in value)


def cookie_header(name: str, value: str, max_age: int) -> str:
    """A `__Host-` cookie: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain."""
    return f"{name}={value}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Lax"


def cleared_cookie_header(name: str) -> str:
    return f"{name}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax"
