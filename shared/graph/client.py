"""Microsoft Graph access: app-only tokens per tenant through MSAL, and delta paging with retries.

Tokens live only in MSAL's in-memory cache (one app object per tenant for the process's life; nothing
is persisted). Throttling (429/503/504) is retried honouring a fractional `Retry-After`, within a
deadline; after that the caller gets GraphUnavailable with the wait Graph asked for.
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import quote

import requests

from shared import logs

log = logs.get_logger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
RETRYABLE_STATUSES = (429, 500, 502, 503, 504)
RESYNC_CODES = ("syncStateNotFound", "resyncRequired", "syncStateInvalid")
MAX_PAGE_SIZE = 999
# Throttling courtesy (Graph docs, "throttling-limits", identity and access): a phone's sync is background
# work (throttling it causes no user-visible failure), so it says `x-ms-throttle-priority: low`; and when
# Graph reports `x-ms-throttle-limit-percentage` (sent from 0.8 of the tenant's resource-unit budget) near
# 1, the relay waits before its next page instead of running into 429s.
THROTTLE_PRIORITY = ("x-ms-throttle-priority", "low")
PACE_FROM = 0.8  # share of the budget from which the relay spaces the tenant's requests out (Graph's first figure)
PACE_MIN_SPACING = 0.05  # seconds between two requests of a tenant when pacing starts (per instance)
PACE_DOUBLING = 0.05  # the spacing doubles with every further 5 % of the budget used
PACE_HALF_LIFE = 2.0  # seconds: without the header the spacing halves this fast (Graph's window is 10 s)
PACE_MAX_SPACING = 5.0
_MAX_TENANT_APPS = 1024


class GraphError(Exception):
    """Base of Graph access failures; messages never carry tokens or directory data."""


class GraphUnavailable(GraphError):
    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class GraphRefused(GraphError):
    """Graph or Entra ID refused for good (consent revoked, app disabled, permission missing)."""

    def __init__(self, message: str, code: str = "refused"):
        super().__init__(message)
        self.code = code


class GraphNotFound(GraphRefused):
    """Graph answered 404 for this resource (no such user, no photo)."""


class DeltaExpired(GraphError):
    """The delta token is no longer valid: the caller starts a full sync."""


class AppTokens:
    """Client-credentials tokens per tenant (MSAL, in-memory cache only)."""

    def __init__(self, authority: str, client_id: str, client_secret: str, http_client: requests.Session):
        self._authority = authority.rstrip("/")
        self._client_id = client_id
        self._secret = client_secret
        self._http = http_client
        self._apps: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.requests = 0

    def _app(self, tenant_id: str):
        with self._lock:
            app = self._apps.get(tenant_id)
            if app is not None:
                self._apps.move_to_end(tenant_id)
                return app
        import msal

        app = msal.ConfidentialClientApplication(
            self._client_id, client_credential=self._secret, authority=f"{self._authority}/{tenant_id}",
            http_client=self._http, instance_discovery=False, token_cache=msal.TokenCache())
        with self._lock:
            self._apps[tenant_id] = app
            while len(self._apps) > _MAX_TENANT_APPS:
                self._apps.popitem(last=False)
        return app

    def token(self, tenant_id: str, refresh: bool = False) -> str:
        from msal.exceptions import MsalServiceError  # MSAL raises it for a 5xx of the token endpoint

        try:
            if refresh:
                # After a 401 (revoked token, rotated keys): a fresh client with an empty cache asks Entra ID
                # again. Removing entries from MSAL's cache while iterating its search() raised RuntimeError.
                with self._lock:
                    self._apps.pop(tenant_id, None)
            app = self._app(tenant_id)
            result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except (requests.RequestException, ValueError, MsalServiceError) as error:
            raise GraphUnavailable("Entra ID is unreachable", retry_after=5) from error
        if "access_token" in result:
            if result.get("token_source") != "cache":
                self.requests += 1
            return result["access_token"]
        error = safe_code(result.get("error", "unknown"))
        if error in ("temporarily_unavailable", "server_error"):
            raise GraphUnavailable("Entra ID is temporarily unavailable", retry_after=5)
        raise GraphRefused("Entra ID refused the app's token request", code=f"entra-{error}")


@dataclass
class Page:
    users: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None


class GraphClient:
    def __init__(self, session: requests.Session, base_url: str, tokens: AppTokens, deadline_seconds: float,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self._session = session
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._deadline = deadline_seconds
        self._sleep = sleep
        self._clock = clock
        self._pacing = TenantPacing(clock)

    def is_own_link(self, url: str) -> bool:
        return url.startswith(self._base + "/users/delta?")

    def delta_pages(self, tenant_id: str, select: list[str], delta_link: str | None = None) -> Iterator[Page]:
        """Pages of /users/delta: a full round without `delta_link`, changes since it otherwise."""
        if delta_link is None:
            url = f"{self._base}/users/delta?$select={quote(','.join(select), safe=',')}"
        elif self.is_own_link(delta_link):
            url = delta_link
        else:
            raise GraphRefused("refusing to follow a link outside Graph's delta endpoint", code="bad-link")
        while url:
            body = self._get(tenant_id, url)
            next_link = body.get("@odata.nextLink")
            delta = body.get("@odata.deltaLink")
            if next_link is not None and not self.is_own_link(next_link):
                raise GraphRefused("Graph returned a link outside its delta endpoint", code="bad-link")
            yield Page(body.get("value") or [], next_link, delta)
            url = next_link

    # ---- directory scope and photos (docs/architecture.md, "Directory scope and photos") ----------------
    def is_graph_link(self, url: str, prefix: str) -> bool:
        """True for a link under `{GRAPH_BASE_URL}/{prefix}` (links Graph hands back are checked before use)."""
        return url.startswith(f"{self._base}/{prefix}")

    def url(self, path: str) -> str:
        return f"{self._base}/{path.lstrip('/')}"

    def collection_pages(self, tenant_id: str, url: str, prefix: str, headers: dict[str, str] | None = None
                         ) -> Iterator[Page]:
        """Pages of a Graph collection from `url`, following `@odata.nextLink`/`@odata.deltaLink` only under
        `prefix` (e.g. "groups/"); `headers` are re-sent on every page (e.g. ConsistencyLevel)."""
        while url:
            body = self.send(tenant_id, "GET", url, headers=headers)
            next_link, delta = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
            for link in (next_link, delta):
                if link is not None and not self.is_graph_link(link, prefix):
                    raise GraphRefused("Graph returned a link outside the expected endpoint", code="bad-link")
            yield Page(body.get("value") or [], next_link, delta)
            url = next_link

    def send(self, tenant_id: str, method: str, url: str, body: Any = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
        """One JSON request with the same token, retry and error handling as the delta pages."""
        response = self._request(tenant_id, method, url, body, headers, stream=False)
        return response.json()

    def open_media(self, tenant_id: str, url: str) -> requests.Response | None:
        """A binary resource (a photo's `$value`) as a streamed response to close after reading; None on 404."""
        try:
            return self._request(tenant_id, "GET", url, None, {"Accept": "image/*"}, stream=True)
        except GraphNotFound:
            return None

    def _request(self, tenant_id: str, method: str, url: str, body: Any, headers: dict[str, str] | None,
                 stream: bool) -> requests.Response:
        """One Graph request: paced per tenant, marked low priority, the app token refreshed once on a 401,
        throttling and outages retried within the deadline, refusals raised as GraphError."""
        started = self._clock()
        attempt = 0
        refreshed = force_refresh = False
        while True:
            attempt += 1
            wait = self._pacing.reserve(tenant_id)
            if wait > 0:
                self._sleep(wait)
            token = self._tokens.token(tenant_id, refresh=force_refresh)
            force_refresh = False
            try:
                response = self._session.request(method, url, json=body, timeout=30, stream=stream, headers={
                    "Accept": "application/json", "Prefer": f"odata.maxpagesize={MAX_PAGE_SIZE}",
                    THROTTLE_PRIORITY[0]: THROTTLE_PRIORITY[1], **(headers or {}),
                    "Authorization": f"Bearer {token}"})
            except requests.RequestException:
                response = None
            if response is not None and response.status_code == 200:
                self._pacing.observe(tenant_id, limit_percentage(response.headers.get("x-ms-throttle-limit-percentage")))
                return response
            if response is not None and stream:
                response.close()
            if response is not None and response.status_code == 401 and not refreshed:
                refreshed = force_refresh = True  # the cached app token may have been revoked early
                continue
            code = _error_code(response)
            if response is not None and response.status_code == 404:
                raise GraphNotFound("Graph has no such resource", code=f"graph-{code or 404}")
            if response is not None and (response.status_code == 410 or code in RESYNC_CODES):
                raise DeltaExpired("the delta token has expired")
            if response is None or response.status_code in RETRYABLE_STATUSES:
                wait = _retry_after(response, attempt)
                if self._clock() - started + wait > self._deadline:
                    raise GraphUnavailable("Graph stayed unavailable", retry_after=wait)
                if response is not None and response.status_code == 429:
                    # One line per 429: the log-based metric behind the Graph throttling alert (terraform/monitoring.tf).
                    log.info("graph throttled", tenantId=tenant_id, httpStatus=429, retryAfter=round(wait, 3))
                    # Through the tenant's pacing: its other streams wait too, instead of each hitting the 429.
                    self._pacing.throttled(tenant_id, wait)
                else:
                    self._sleep(wait)
                continue
            raise GraphRefused(f"Graph refused the request ({response.status_code})",
                               code=f"graph-{code or response.status_code}")

    @property
    def deadline_seconds(self) -> float:
        return self._deadline

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)

    def now(self) -> float:
        return self._clock()

    def _get(self, tenant_id: str, url: str) -> dict[str, Any]:
        return self._request(tenant_id, "GET", url, None, None, stream=False).json()


class TenantPacing:
    """How this instance spaces out its Graph requests per tenant, so the tenant's streams together stay
    under Graph's resource-unit budget instead of running into 429s.

    Graph sends `x-ms-throttle-limit-percentage` (the share of the budget used) from 0.8. From PACE_FROM
    the spacing between two requests of the tenant follows the latest figure: PACE_MIN_SPACING at 0.8,
    doubling with every further 5 % (0.8 s at 1.0), at most PACE_MAX_SPACING; without the header (below
    0.8) it halves every PACE_HALF_LIFE seconds, and pacing ends once it is negligible. A 429 holds every
    stream of the tenant until its Retry-After and doubles the spacing.
    Each request reserves the next free slot, so streams released together do not burst.
    """

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, list[float]] = {}  # tenant -> [spacing, next free slot, last change]

    def reserve(self, tenant_id: str) -> float:
        """Seconds to wait before sending the tenant's next request (0 when not paced)."""
        with self._lock:
            pace = self._tenants.get(tenant_id)
            if pace is None:
                return 0.0
            now = self._clock()
            slot = max(now, pace[1])
            pace[1] = slot + pace[0]
            return slot - now

    def observe(self, tenant_id: str, used: float | None) -> None:
        with self._lock:
            pace = self._tenants.get(tenant_id)
            if used is not None and used >= PACE_FROM:
                spacing = min(PACE_MAX_SPACING, PACE_MIN_SPACING * 2 ** ((used - PACE_FROM) / PACE_DOUBLING))
                now = self._clock()
                if pace is None:  # the request that reported it took the first slot
                    self._forget_idle()
                    pace = self._tenants[tenant_id] = [spacing, now + spacing, now]
                pace[0], pace[2] = spacing, now
            elif pace is not None:
                now = self._clock()
                pace[0] *= 0.5 ** ((now - pace[2]) / PACE_HALF_LIFE)
                pace[2] = now
                if pace[0] < PACE_MIN_SPACING / 4 and pace[1] <= now:
                    del self._tenants[tenant_id]

    def throttled(self, tenant_id: str, retry_after: float) -> None:
        with self._lock:
            pace = self._tenants.get(tenant_id)
            if pace is None:
                self._forget_idle()
                pace = self._tenants[tenant_id] = [0.0, 0.0, self._clock()]
            pace[0] = min(PACE_MAX_SPACING, max(PACE_MIN_SPACING, pace[0] * 2))
            pace[1] = max(pace[1], self._clock() + retry_after)

    def _forget_idle(self) -> None:
        if len(self._tenants) >= _MAX_TENANT_APPS:
            now = self._clock()
            self._tenants = {t: pace for t, pace in self._tenants.items() if pace[1] > now}


# Graph's and Entra ID's error codes are identifiers (`Authorization_RequestDenied`, `invalid_client`);
# anything else is text from outside and must never reach a log line or an error body.
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")


def safe_code(value: object) -> str:
    """`value` if it looks like an error code, else "unrecognised"."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else "unrecognised"


def _error_code(response: requests.Response | None) -> str | None:
    if response is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return safe_code(error.get("code")) if isinstance(error, dict) and "code" in error else None


def limit_percentage(header: str | None) -> float | None:
    """Graph's `x-ms-throttle-limit-percentage` as a number (None when absent or not a number)."""
    try:
        used = float(header) if header else None
    except ValueError:
        return None
    return used if used is not None and used == used else None  # NaN is no figure


def _retry_after(response: requests.Response | None, attempt: int) -> float:
    return retry_after_seconds(response.headers.get("Retry-After") if response is not None else None, attempt)


def retry_after_seconds(header: str | None, attempt: int) -> float:
    """Graph's `Retry-After` (seconds, may be fractional; capped at 300), else exponential backoff from
    0.5 s up to 30 s. Also used for the inner answers of `$batch` (shared/graph/batch.py)."""
    if header:
        try:
            return max(0.0, min(float(header), 300.0))
        except ValueError:
            pass
    return min(0.5 * 2 ** (attempt - 1), 30.0)
