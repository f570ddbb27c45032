"""Validation of the app's Entra ID v2 access tokens (docs/architecture.md, "Authentication of the app").

RS256 only with a key chosen by `kid` from the authority's JWKS (cached; an unknown `kid` refetches at
most every 30 s), issuer equal to both `{authority}/{tid}/v2.0` and the key's issuer template, audience,
scope, times with small skew, and the tenant onboarded and active. Only the tenant ID and a per-process
pseudonym of the user (for in-memory rate limits) leave this module: no user claim is kept, logged or echoed.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

from shared.errors import Forbidden, ServiceUnavailable, Unauthorized
from shared.ids import is_canonical_id
from shared.store.records import Tenant

MAX_TOKEN_LENGTH = 8192
LEEWAY_SECONDS = 60
REFETCH_COOLDOWN_SECONDS = 30.0
CACHE_LIFETIME_SECONDS = 3600.0


@dataclass(frozen=True)
class SigningKey:
    key: Any
    issuer_template: str | None


class JwksCache:
    """The authority's signing keys, fetched once and refetched on an unknown kid at most every 30 s."""

    def __init__(self, session: requests.Session, jwks_url: str, clock: Callable[[], float] = time.monotonic):
        self._session = session
        self._url = jwks_url
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def key(self, kid: str) -> SigningKey | None:
        now = self._clock()
        with self._lock:
            fetched_at = self._fetched_at
            stale = fetched_at is None or now - fetched_at > CACHE_LIFETIME_SECONDS
            if not stale and kid in self._keys:
                return self._keys[kid]
            if fetched_at is None or stale or now - fetched_at >= REFETCH_COOLDOWN_SECONDS:
                self._fetch(now)
            return self._keys.get(kid)

    def _fetch(self, now: float) -> None:
        try:
            response = self._session.get(self._url, timeout=10)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            if self._keys:  # keep serving with the keys we have; the next unknown kid retries later
                self._fetched_at = now
                return
            raise ServiceUnavailable("the signing keys cannot be fetched", retry_after=10) from error
        keys: dict[str, SigningKey] = {}
        for data in document.get("keys", []):
            if not isinstance(data, dict) or data.get("kty") != "RSA" or not data.get("kid"):
                continue
            try:
                keys[data["kid"]] = SigningKey(jwt.PyJWK(data, "RS256").key, data.get("issuer"))
            except jwt.PyJWTError:
                continue
        self._keys = keys
        self._fetched_at = now
        self.fetches += 1


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    settings: dict[str, Any] = field(default_factory=dict, compare=False)
    # The user, for in-memory per-user limits only: a keyed hash of `oid` under a key this process drew
    # at start, so it cannot be linked to the person or across instances and restarts; never stored or logged.
    user_key: bytes = field(default=b"", compare=False, repr=False)


_USER_KEY = secrets.token_bytes(32)


def user_key(oid: object) -> bytes:
    """This process's pseudonym of a user (tokens without an `oid` share one)."""
    return hashlib.blake2b(oid.encode() if isinstance(oid, str) else b"", key=_USER_KEY,
                           digest_size=16).digest()


def _refuse(reason: str, detail: str) -> Unauthorized:
    return Unauthorized(detail, slug=reason)


# PyJWT's refusals, most specific first: (exception, slug, detail) — our own words, never the token's.
_REFUSALS = (
    (jwt.ExpiredSignatureError, "token-expired", "the access token has expired"),
    (jwt.ImmatureSignatureError, "token-not-yet-valid", "the access token is not valid yet"),
    (jwt.InvalidAudienceError, "token-audience", "the access token is not for this API"),
    (jwt.MissingRequiredClaimError, "token-claim-missing", "the access token lacks the {claim} claim"),
    (jwt.InvalidAlgorithmError, "token-algorithm", "the access token must be signed with RS256"),
    (jwt.InvalidSignatureError, "token-signature", "the access token signature is invalid"),
)


def _refusal(error: jwt.PyJWTError) -> Unauthorized:
    for kind, reason, detail in _REFUSALS:
        if isinstance(error, kind):
            return _refuse(reason, detail.format(claim=getattr(error, "claim", "")))
    return _refuse("token-invalid", "the access token is invalid")


class TokenValidator:
    def __init__(self, keys: JwksCache, authority: str, client_id: str, required_scope: str,
                 tenant_lookup: Callable[[str], Tenant | None]):
        self._keys = keys
        self._authority = authority.rstrip("/")
        self._client_id = client_id
        self._scope = required_scope
        self._tenant_lookup = tenant_lookup

    def authenticate(self, authorization: str | None) -> Caller:
        token = self._bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse("token-malformed", "the access token is malformed") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refuse("token-malformed", "the access token has no key ID")
        signing_key = self._keys.key(kid)
        if signing_key is None:
            raise _refuse("token-key-unknown", "the access token is signed by an unknown key")
        try:
            claims = jwt.decode(
                token, signing_key.key, algorithms=["RS256"], audience=self._client_id, leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "tid"], "verify_iss": False})
        except jwt.PyJWTError as error:
            raise _refusal(error) from None
        tenant_id = claims.get("tid")
        if not isinstance(tenant_id, str) or not is_canonical_id(tenant_id):
            raise _refuse("token-tenant", "the access token's tenant ID is not a GUID")
        expected_issuer = f"{self._authority}/{tenant_id}/v2.0"
        template = signing_key.issuer_template
        if claims.get("iss") != expected_issuer or (
                template is not None and template.replace("{tenantid}", tenant_id) != claims.get("iss")):
            raise _refuse("token-issuer", "the access token's issuer is not a v2 issuer of its tenant")
        scopes = claims.get("scp")
        if not isinstance(scopes, str) or self._scope not in scopes.split(" "):
            raise Forbidden("the access token lacks the required scope", slug="token-scope",
                            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
        tenant = self._tenant_lookup(tenant_id)
        if tenant is None or not tenant.active:
            raise Forbidden("the tenant is not onboarded or not active", slug="tenant-not-active")
        return Caller(tenant_id, tenant.settings, user_key(claims.get("oid")))

    @staticmethod
    def _bearer(authorization: str | None) -> str:
        if not authorization:
            raise _refuse("token-missing", "an Authorization: Bearer token is required")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise _refuse("token-malformed", "the Authorization header must be 'Bearer <token>'")
        if len(token) > MAX_TOKEN_LENGTH:
            raise _refuse("token-malformed", "the access token is too long")
        return token


def jwks_url(authority: str) -> str:
    return f"{authority.rstrip('/')}/common/discovery/v2.0/keys"
