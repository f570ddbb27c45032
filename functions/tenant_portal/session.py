"""The portal's stateless session: a sealed cookie (AES-256-GCM under a key derived from
`PORTAL_SESSION_KEY`), holding only the tenant ID, the admin flag, two times and a CSRF secret.

Nothing about sessions is stored server-side. The cookie name is authenticated data of the seal, so a
value sealed for one cookie (the sign-in flow) is refused as another (the session). A session lives
30 minutes without use and 8 hours at most; every served page renews its idle time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from shared.ids import is_canonical_id

SESSION_COOKIE = "__Host-portal"
FLOW_COOKIE = "__Host-portal-signin"
ONBOARDING_COOKIE = "__Host-portal-onboard"  # the pending onboarding (state, tid, name, time) until its callback
IDLE_SECONDS = 30 * 60
MAX_SECONDS = 8 * 60 * 60
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
    tenant_id: str
    admin: bool
    issued_at: int
    seen_at: int
    csrf_secret: str
    role: str = ""  # the admin role it was signed in with (the audit trail's `actorRole`)

    @property
    def session_id(self) -> str:
        """The session's random ID as the audit trail records it (128 bits, derived from the session's own
        secret, which it does not reveal): the same for every request of this sign-in, new with the next."""
        return hmac.new(_unb64(self.csrf_secret), b"session-id", hashlib.sha256).hexdigest()[:32]

    @property
    def csrf_token(self) -> str:
        """What forms carry: derived from the secret, so the secret itself never appears in a page."""
        return hmac.new(_unb64(self.csrf_secret), b"csrf", hashlib.sha256).hexdigest()

    def csrf_valid(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.csrf_token.encode())


def new_session(tenant_id: str, admin: bool, now: int, role: str = "") -> Session:
    return Session(tenant_id, admin, now, now, _b64(secrets.token_bytes(32)), role)


def seal_session(sealer: Sealer, session: Session) -> str:
    return sealer.seal(SESSION_COOKIE, {"t": session.tenant_id, "a": session.admin, "i": session.issued_at,
                                        "s": session.seen_at, "c": session.csrf_secret, "r": session.role})


def open_session(sealer: Sealer, value: str | None, now: int) -> Session | None:
    """The session in the cookie if it is genuine and neither idle for 30 min nor older than 8 h."""
    data = sealer.unseal(SESSION_COOKIE, value)
    if data is None:
        return None
    tenant_id, admin, issued, seen, csrf, role = (data.get(k) for k in ("t", "a", "i", "s", "c", "r"))
    if (not is_canonical_id(tenant_id) or not isinstance(admin, bool) or not isinstance(issued, int)
            or not isinstance(seen, int) or not isinstance(csrf, str) or not isinstance(role, str)):
        return None
    if now - seen > IDLE_SECONDS or now - issued > MAX_SECONDS or seen > now + 60 or issued > seen:
        return None
    return Session(tenant_id, admin, issued, seen, csrf, role)


def renewed(session: Session, now: int) -> Session:
    return Session(session.tenant_id, session.admin, session.issued_at, now, session.csrf_secret, session.role)


def cookie_header(name: str, value: str, max_age: int) -> str:
    """A `__Host-` cookie: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain."""
    return f"{name}={value}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Lax"


def cleared_cookie_header(name: str) -> str:
    return f"{name}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax"
