"""State shared by the fake Entra ID and the fake Graph: apps, tenants, keys, switches, counters."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .directory import DEFAULT_SIZE, Directory
from .groups import Groups
from .keys import KeySet, b64url, b64url_decode, random_uti
from .photos import Photos

GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
# Graph access tokens the fake Entra ID issues are opaque (Microsoft: tokens for its own APIs "might not
# always be a JWT"): this prefix and sealed claims that only the fake Graph opens.
OPAQUE_PREFIX = "EwB"
DEFAULT_DEMO_PASSWORD = "Demo-Passw0rd!"
DIRECTORY_READERS_ROLE_TEMPLATE = "0997a1d0-0d1d-4acb-b408-d5ca73121e90"

# Switches of POST /_fake/config (global, or per tenant when "tenant" is given).
DEFAULT_SETTINGS: dict[str, Any] = {
    "page_delay_seconds": 0.0,  # sleep before answering each Graph page
    "page_latency_seconds": 0.0,  # each Graph page takes at least this long from request to answer
    "repeat_items": False,  # each page repeats the previous page's last item; delta rounds list every change
    "delta_initial_removed": True,  # the first delta round also lists removed users as @removed
    "delta_return_minimal": False,  # incremental items carry only changed properties, as with Prefer: return=minimal
    "delta_expired_mode": "syncStateNotFound",  # or "410": how an expired delta token is answered
    "delta_token_ttl_seconds": 7 * 24 * 3600,  # Graph: directory delta tokens live 7 days
    "ru_limit_per_10s": None,  # resource units per app per tenant per 10 s; None = no limit
    "demo_password": DEFAULT_DEMO_PASSWORD,  # password of every directory user for the password grant
    "access_token_lifetime_seconds": None,  # None: 3599 for app tokens, 60-90 min for user tokens
    "default_directory_size": DEFAULT_SIZE,  # size of a tenant's directory when first used
    "consent_by_default": True,  # tenants seen for the first time have the app consented (see consent.py)
    "consent_replication_seconds": 0.0,  # after admin consent, tokens stay refused this long
    "photo_delay_seconds": 0.0,  # time each photo request takes (makes concurrency observable)
    # Sign-in (authorize.py): {userPrincipalName: {"wids": [...], "roles": [...]}} replaces those users' demo
    # roles (a role granted or removed in Entra ID between two sign-ins); claims that replace the ID token's
    # own (an authority answering with another nonce, audience or tenant).
    "user_roles": {},
    "id_token_claims": {},
}
DELTA_EXPIRED_MODES = ("syncStateNotFound", "410")
FAULT_TARGETS = ("graph", "users", "delta", "entra", "token", "jwks", "openid",
                 "groups", "photos", "batch", "batch_item")
CONSENT_STATES = ("granted", "no_service_principal", "no_roles", "not_consented")


class Stats:
    """Thread-safe request counters, global and per tenant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._tenants: dict[str, dict[str, int]] = {}
        self.started = time.time()

    def inc(self, name: str, tenant: str | None = None, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + amount
            if tenant:
                per = self._tenants.setdefault(tenant, {})
                per[name] = per.get(name, 0) + amount

    def track_in_flight(self, name: str, step: int) -> None:
        """Counts requests of a kind being answered now, and remembers the most at once (`{name}_max`)."""
        with self._lock:
            now = self._counts.get(f"{name}_now", 0) + step
            self._counts[f"{name}_now"] = now
            self._counts[f"{name}_max"] = max(self._counts.get(f"{name}_max", 0), now)

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
            tenants = copy.deepcopy(self._tenants)
        statuses = {k.split(".", 1)[1]: v for k, v in counts.items()
                    if k.startswith("status.") and not k.startswith("status.batch.")}
        grants = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("grant.")}
        priorities = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("priority.")}
        return {
            "token_requests": counts.get("token_requests", 0),
            "token_requests_by_grant": grants,
            "tokens_issued": counts.get("tokens_issued", 0),
            "token_errors": counts.get("token_errors", 0),
            "jwks_fetches": counts.get("jwks_fetches", 0),
            "openid_configuration_fetches": counts.get("openid_configuration_fetches", 0),
            "graph_requests": counts.get("graph_requests", 0),
            "graph_pages": counts.get("graph_pages", 0),
            "graph_users_pages": counts.get("graph_users_pages", 0),
            "graph_delta_pages": counts.get("graph_delta_pages", 0),
            "graph_items_served": counts.get("graph_items_served", 0),
            "faults_injected": counts.get("faults_injected", 0),
            "throttled": counts.get("throttled", 0),
            "resource_units": counts.get("resource_units", 0),
            "photo_requests_max_in_flight": counts.get("photo_requests_max", 0),
            "batch_statuses": {k.split(".", 2)[2]: v for k, v in counts.items() if k.startswith("status.batch.")},
            "responses_by_status": statuses,
            "graph_requests_by_priority": priorities,
            "per_tenant": tenants,
            "since": self.started,
        }

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._tenants.clear()
            self.started = time.time()


@dataclass
class FaultRule:
    """An injected failure: the next `count` matching requests (after `skip` good ones) fail."""

    target: str
    status: int | str  # HTTP status, or "disconnect" (the body is cut off mid-way)
    count: int | None = 1  # None: every matching request
    skip: int = 0
    retry_after: float | int | str | None = None
    tenant: str | None = None
    pages: str = "all"  # "all" | "first" (no $skiptoken) | "next" (with $skiptoken)
    code: str | None = None
    message: str | None = None
    delay_seconds: float = 0.0
    seen: int = 0
    fired: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {"target", "status", "count", "skip", "retry_after", "tenant", "pages", "code",
                   "message", "delay_seconds"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}")
        target = data.get("target", "graph")
        if target not in FAULT_TARGETS:
            raise ValueError(f"fault target must be one of {FAULT_TARGETS}")
        status = data.get("status", 429)
        if status != "disconnect" and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("fault status must be an HTTP error status (400-599) or 'disconnect'")
        pages = data.get("pages", "all")
        if pages not in ("all", "first", "next"):
            raise ValueError("pages must be all, first or next")
        count = data.get("count", 1)
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer or null (always)")
        tenant = data.get("tenant")
        if tenant is not None and not GUID_RE.match(str(tenant)):
            raise ValueError("tenant must be a GUID")
        return cls(target=target, status=status, count=count, skip=int(data.get("skip", 0)),
                   retry_after=data.get("retry_after"), tenant=tenant.lower() if tenant else None,
                   pages=pages, code=data.get("code"), message=data.get("message"),
                   delay_seconds=float(data.get("delay_seconds", 0.0)))

    def matches(self, target: str, tenant: str | None, continuation: bool) -> bool:
        if self.target != target and not (
                (self.target == "graph" and target in ("users", "delta"))
                or (self.target == "entra" and target in ("token", "jwks", "openid"))):
            return False
        if self.tenant and self.tenant != tenant:
            return False
        if self.pages == "first" and continuation or self.pages == "next" and not continuation:
            return False
        return self.count is None or self.fired < self.count

    def describe(self) -> dict[str, Any]:
        return {"target": self.target, "status": self.status, "count": self.count, "skip": self.skip,
                "retry_after": self.retry_after, "tenant": self.tenant, "pages": self.pages,
                "code": self.code, "message": self.message, "delay_seconds": self.delay_seconds,
                "seen": self.seen, "fired": self.fired}


@dataclass
class AppRegistration:
    client_id: str
    secret: str | None  # None: a public client (no secret accepted)
    display_name: str = "Contact Sync"
    # Application permissions granted in every tenant (the contract's three).
    roles: tuple[str, ...] = ("User.Read.All", "GroupMember.Read.All", "ProfilePhoto.Read.All")
    scopes: tuple[str, ...] = ("access_as_user",)  # delegated scopes the app's API exposes
    # Delegated permissions of its own API that the registration lists as required: `/.default` admin
    # consent grants exactly these (without `access_as_user` phones of that tenant get no token).
    required_scopes: tuple[str, ...] = ("access_as_user",)
    redirect_uris: tuple[str, ...] = ()  # web redirect URIs registered for the authorization code flow

    def describe(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "public_client": self.secret is None,
                "display_name": self.display_name, "roles": list(self.roles), "scopes": list(self.scopes),
                "required_scopes": list(self.required_scopes), "redirect_uris": list(self.redirect_uris)}


@dataclass
class TenantState:
    tenant_id: str
    directory: Directory
    exists: bool = True
    consent: str = "granted"
    token_epoch: int = 0  # bumped to expire every delta/skip token of the tenant at once
    settings: dict[str, Any] = field(default_factory=dict)
    ru_window: deque = field(default_factory=deque)  # (timestamp, units)
    granted_roles: tuple[str, ...] | None = None  # application permissions consented here; None: the app's
    granted_scopes: tuple[str, ...] | None = None  # delegated ones consented here; None: the app's required
    consented_at: float = 0.0  # time.monotonic() of the last grant (consent_replication_seconds)
    groups: Groups = None  # type: ignore[assignment]  # set in __post_init__ (needs the directory)
    photos: Photos = None  # type: ignore[assignment]  # set in __post_init__ (needs the directory)
    in_flight_photos: int = 0  # photo requests being answered right now (Outlook allows 4 per mailbox)

    def __post_init__(self) -> None:
        self.attach_directory(self.directory)

    def attach_directory(self, directory: Directory) -> None:
        """A new directory comes with no groups and default photos."""
        self.directory = directory
        self.groups = Groups(directory)
        self.photos = Photos(directory)

    def describe(self) -> dict[str, Any]:
        d = self.directory
        return {"tenant_id": self.tenant_id, "exists": self.exists, "consent": self.consent,
                "granted_roles": None if self.granted_roles is None else list(self.granted_roles),
                "granted_scopes": None if self.granted_scopes is None else list(self.granted_scopes),
                "company": d.company, "domain": d.domain, "generation": d.generation,
                "token_epoch": self.token_epoch, "settings": dict(self.settings), "directory": d.stats()}


class FakeMicrosoft:
    """Everything both fakes know. One instance serves both servers of a process."""

    def __init__(self, client_id: str, client_secret: str | None, redirect_uris: tuple[str, ...] = ()) -> None:
        self._lock = threading.RLock()
        self.primary_client_id = client_id.lower()
        self._primary_secret = client_secret
        self._primary_redirect_uris = tuple(redirect_uris)  # kept across reset(), like the app itself
        self.keys = KeySet()
        self.stats = Stats()
        self.entra_base = "https://127.0.0.1"  # set by the server once the port is known
        self.graph_base = "https://127.0.0.1/v1.0"
        self._aead = AESGCM(AESGCM.generate_key(bit_length=128))  # seals skip/delta/refresh tokens
        self._filters: dict[str, list[str]] = {}
        self._reset_state()

    def _reset_state(self) -> None:
        with self._lock:
            self.apps: dict[str, AppRegistration] = {}
            self.register_app(self.primary_client_id, self._primary_secret,
                              redirect_uris=list(self._primary_redirect_uris))
            self.redeemed_codes: dict[str, float] = {}  # authorization codes are single use
            self.settings: dict[str, Any] = dict(DEFAULT_SETTINGS)
            self.faults: list[FaultRule] = []
            self.tenants: dict[str, TenantState] = {}

    def reset(self) -> None:
        """Back to start: one app, no tenants, no faults, default settings, fresh counters.
        Signing keys are kept (verifiers' caches stay valid); rotate explicitly to change them."""
        self._reset_state()
        self.stats.reset()

    # ---- registry --------------------------------------------------------------------------------
    def register_app(self, client_id: str, secret: str | None, display_name: str | None = None,
                     roles: list[str] | None = None, scopes: list[str] | None = None,
                     redirect_uris: list[str] | None = None,
                     required_scopes: list[str] | None = None) -> AppRegistration:
        app = AppRegistration(client_id.lower(), secret)
        if required_scopes is not None:
            app.required_scopes = tuple(required_scopes)
        if redirect_uris is not None:
            app.redirect_uris = tuple(redirect_uris)
        if display_name:
            app.display_name = display_name
        if roles is not None:
            app.roles = tuple(roles)
        if scopes is not None:
            app.scopes = tuple(scopes)
        with self._lock:
            self.apps[app.client_id] = app
        return app

    def redeem_code(self, code_id: str) -> bool:
        """Marks an authorization code used; False if it was used before (codes live 10 minutes)."""
        now = time.time()
        with self._lock:
            for old in [k for k, at in self.redeemed_codes.items() if at < now - 900]:
                del self.redeemed_codes[old]
            if code_id in self.redeemed_codes:
                return False
            self.redeemed_codes[code_id] = now
            return True

    def app(self, client_id: str) -> AppRegistration | None:
        return self.apps.get(client_id.lower())

    def tenant(self, tenant_id: str, create: bool = True) -> TenantState | None:
        """The tenant (created on first use for any GUID), or None if not a GUID / not created."""
        if not GUID_RE.match(tenant_id or ""):
            return None
        tid = tenant_id.lower()
        with self._lock:
            state = self.tenants.get(tid)
            if state is None and create:
                size = int(self.settings["default_directory_size"])
                consent = "granted" if self.settings["consent_by_default"] else "not_consented"
                state = self.tenants[tid] = TenantState(tid, Directory(tid, size), consent=consent)
            return state

    def known_tenant(self, tenant_id: str) -> TenantState | None:
        """The tenant if it exists (any GUID does unless deleted via the control API)."""
        state = self.tenant(tenant_id)
        return state if state is not None and state.exists else None

    def tenant_by_domain(self, domain: str) -> TenantState | None:
        domain = domain.lower()
        with self._lock:
            for state in self.tenants.values():
                if state.exists and state.directory.domain == domain:
                    return state
        return None

    def replace_directory(self, tenant_id: str, size: int, salt: str = "") -> TenantState:
        state = self.tenant(tenant_id)
        if state is None:
            raise ValueError("tenant must be a GUID")
        with self._lock:
            state.attach_directory(Directory(state.tenant_id, size, salt))
        return state

    # ---- settings and faults ---------------------------------------------------------------------
    def setting(self, name: str, tenant: TenantState | None = None) -> Any:
        if tenant is not None and name in tenant.settings:
            return tenant.settings[name]
        return self.settings[name]

    def take_fault(self, target: str, tenant: str | None, continuation: bool = False) -> FaultRule | None:
        """The fault this request must suffer, if any (consumes one use of the rule)."""
        with self._lock:
            for rule in self.faults:
                if not rule.matches(target, tenant, continuation):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.fired += 1
                self.stats.inc("faults_injected", tenant)
                return rule
        return None

    def charge_resource_units(self, tenant: TenantState, units: int) -> tuple[float | None, float]:
        """Account `units` against the tenant's budget (and in the stats). Returns (retry_after or None,
        usage ratio); a refusal counts as `throttled`."""
        self.stats.inc("resource_units", tenant.tenant_id, units)
        limit = self.setting("ru_limit_per_10s", tenant)
        if not limit:
            return None, 0.0
        now = time.monotonic()
        with self._lock:
            window = tenant.ru_window
            while window and window[0][0] <= now - 10.0:
                window.popleft()
            used = sum(u for _, u in window)
            if used + units > limit:
                self.stats.inc("throttled", tenant.tenant_id)
                retry = max(0.001, window[0][0] + 10.0 - now) if window else 1.0
                return round(retry, 3), used / limit
            window.append((now, units))
            return None, (used + units) / limit

    def remember_filter(self, ids: list[str]) -> str:
        """A short key for a groups/delta filter (kept for the process's life), so its tokens stay short."""
        key = hashlib.sha256(",".join(ids).encode()).hexdigest()[:16]
        with self._lock:
            self._filters[key] = list(ids)
        return key

    def recall_filter(self, key: str) -> list[str]:
        return self._filters.get(key, [])

    # ---- sealed opaque tokens (skip tokens, delta tokens, refresh tokens) -------------------------
    def seal(self, payload: dict[str, Any]) -> str:
        """An opaque, tamper-proof token (AES-GCM) carrying `payload`, like Graph's state tokens."""
        nonce = secrets.token_bytes(12)
        body = json.dumps(payload, separators=(",", ":")).encode()
        return b64url(nonce + self._aead.encrypt(nonce, body, None))

    def unseal(self, token: str) -> dict[str, Any] | None:
        try:
            raw = b64url_decode(token)
            payload = json.loads(self._aead.decrypt(raw[:12], raw[12:], None))
        except (ValueError, TypeError, InvalidTag):
            return None
        return payload if isinstance(payload, dict) else None

    # ---- token contents --------------------------------------------------------------------------
    def issuer_v2(self, tenant_id: str) -> str:
        return f"{self.entra_base}/{tenant_id}/v2.0"

    @staticmethod
    def issuer_v1(tenant_id: str) -> str:
        return f"https://sts.windows.net/{tenant_id}/"

    def _lifetime(self, tenant: TenantState | None, user: bool) -> int:
        fixed = self.setting("access_token_lifetime_seconds", tenant)
        if fixed:
            return int(fixed)
        return random.randint(3600, 5399) if user else 3599

    def graph_token_claims(self, tenant_id: str, app: AppRegistration, roles: list[str] | None = None,
                           lifetime: int | None = None) -> tuple[dict[str, Any], int]:
        """Claims of an app-only v1 token for Graph, as Entra ID issues them."""
        tenant = self.tenant(tenant_id, create=False)
        expires_in = lifetime or self._lifetime(tenant, user=False)
        now = int(time.time())
        sp_oid = str(uuid.uuid5(uuid.UUID(tenant_id), app.client_id))
        claims: dict[str, Any] = {
            "aud": GRAPH_AUDIENCE,
            "iss": self.issuer_v1(tenant_id),
            "iat": now - 300, "nbf": now - 300, "exp": now + expires_in,
            "aio": b64url(secrets.token_bytes(48)),
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "appidacr": "1",
            "idp": self.issuer_v1(tenant_id),
            "idtyp": "app",
            "oid": sp_oid,
            "rh": f"0.{b64url(secrets.token_bytes(36))}.",
        }
        granted = list(app.roles if roles is None else roles)
        if granted:
            claims["roles"] = granted
        claims.update({
            "sub": sp_oid,
            "tenant_region_scope": "EU",
            "tid": tenant_id,
            "uti": random_uti(),
            "ver": "1.0",
            "wids": [DIRECTORY_READERS_ROLE_TEMPLATE],
            "xms_tcdt": 1600000000,
            "xms_tdbr": "EU",
        })
        return claims, expires_in

    def opaque_graph_token(self, claims: dict[str, Any]) -> str:
        """An app token for Graph as the fake Entra ID issues it: not a JWT, nothing a client can decode."""
        return OPAQUE_PREFIX + self.seal({"k": "gat", "c": claims})

    def graph_token_header(self) -> dict[str, Any]:
        kid = self.keys.current.kid
        # Graph tokens carry a "nonce" header: only Graph itself can validate them.
        return {"typ": "JWT", "nonce": b64url(secrets.token_bytes(32)), "x5t": kid, "kid": kid}

    def user_token_claims(self, tenant_id: str, user: dict[str, Any], audience: str, client_id: str,
                          scopes: list[str], confidential: bool, lifetime: int | None = None
                          ) -> tuple[dict[str, Any], int]:
        """Claims of a v2 delegated access token for an API (`aud` = the API's client id)."""
        tenant = self.tenant(tenant_id, create=False)
        expires_in = lifetime or self._lifetime(tenant, user=True)
        now = int(time.time())
        return {
            "aud": audience,
            "iss": self.issuer_v2(tenant_id),
            "iat": now - 300, "nbf": now - 300, "exp": now + expires_in,
            "aio": b64url(secrets.token_bytes(48)),
            "azp": client_id,
            "azpacr": "1" if confidential else "0",
            "name": user["displayName"],
            "oid": user["id"],
            "preferred_username": user["userPrincipalName"],
            "rh": f"1.{b64url(secrets.token_bytes(36))}.",
            "scp": " ".join(scopes),
            "sid": str(uuid.uuid4()),
            "sub": _pairwise_sub(user["id"], audience),
            "tid": tenant_id,
            "uti": random_uti(),
            "ver": "2.0",
        }, expires_in

    def id_token_claims(self, tenant_id: str, user: dict[str, Any], client_id: str) -> dict[str, Any]:
        now = int(time.time())
        return {
            "aud": client_id,
            "iss": self.issuer_v2(tenant_id),
            "iat": now - 300, "nbf": now - 300, "exp": now + 3600,
            "name": user["displayName"],
            "oid": user["id"],
            "preferred_username": user["userPrincipalName"],
            "rh": f"1.{b64url(secrets.token_bytes(36))}.",
            "sub": _pairwise_sub(user["id"], client_id),
            "tid": tenant_id,
            "uti": random_uti(),
            "ver": "2.0",
        }

    def demo_user(self, tenant_id: str) -> dict[str, Any] | None:
        """The first live user of the tenant's directory, with the demo password."""
        state = self.known_tenant(tenant_id)
        if state is None:
            return None
        for index in range(state.directory.total):
            user = state.directory.user(index)
            if user is not None:
                return {"username": user["userPrincipalName"], "password": self.setting("demo_password", state),
                        "id": user["id"], "displayName": user["displayName"], "index": index}
        return None

    # ---- minting for tests -----------------------------------------------------------------------
    def mint(self, kind: str = "raw", tenant: str | None = None, claims: dict[str, Any] | None = None,
             header: dict[str, Any] | None = None, key: str = "current", alg: str = "RS256",
             audience: str | None = None, username: str | None = None, scopes: list[str] | None = None,
             lifetime: int | None = None) -> dict[str, Any]:
        """A signed token for tests. `kind` picks the base claims: "raw" (only `claims`, the default),
        "user" (a valid v2 token of a directory user for our API) or "graph" (a valid app token for
        Graph). `claims` and `header` are merged over the base; a null value removes that entry.
        `key`: "current", "outside", "none", "hs256-public" or a kid (see README)."""
        base_claims: dict[str, Any] = {}
        base_header: dict[str, Any] = {"typ": "JWT"}
        if kind in ("user", "graph"):
            if not tenant or not GUID_RE.match(tenant):
                raise ValueError("tenant (a GUID) is required for kind user/graph")
            tenant = tenant.lower()
        if kind == "user":
            state = self.tenant(tenant)
            assert state is not None
            index = state.directory.index_of_upn(username) if username else None
            if username and index is None:
                raise ValueError("no such user in the tenant's directory")
            if index is None:
                found = self.demo_user(tenant)
                index = found["index"] if found else None
            user = state.directory.user(index) if index is not None else None
            if user is None:
                user = {"displayName": "Demo User", "id": str(uuid.uuid4()),
                        "userPrincipalName": f"demo@{state.directory.domain}"}
            aud = (audience or self.primary_client_id).lower()
            base_claims, _ = self.user_token_claims(tenant, user, aud, aud, scopes or ["access_as_user"],
                                                    confidential=False, lifetime=lifetime)
        elif kind == "graph":
            app = self.app(audience or self.primary_client_id) or AppRegistration(self.primary_client_id, None)
            base_claims, _ = self.graph_token_claims(tenant, app, lifetime=lifetime)
            base_header = self.graph_token_header()
        elif kind != "raw":
            raise ValueError("kind must be user, graph or raw")
        # The header names the signing key; "outside" and the unsigned kinds name the current key,
        # which is what makes those tokens look valid.
        if key in ("current", "outside", "none", "hs256-public", "hmac-public"):
            signer_kid = self.keys.current.kid
        else:
            signer_kid = key
        base_header["kid"] = signer_kid
        if "x5t" in base_header:
            base_header["x5t"] = signer_kid
        merged_claims = {**base_claims, **(claims or {})}
        merged_claims = {k: v for k, v in merged_claims.items() if v is not None}
        merged_header = {**base_header, **(header or {})}
        token = self.keys.sign(merged_claims, merged_header, key=key, alg=alg)
        return {"token": token, "claims": merged_claims,
                "header": {k: v for k, v in merged_header.items() if v is not None}}


def _pairwise_sub(oid: str, audience: str) -> str:
    return b64url(hashlib.sha256(f"{oid}|{audience}".encode()).digest())[:43]
