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

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
RETRYABLE_STATUSES = (429, 500, 502, 503, 504)
RESYNC_CODES = ("syncStateNotFound", "resyncRequired", "syncStateInvalid")
MAX_PAGE_SIZE = 999
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
        started = self._clock()
        attempt = 0
        refreshed = force_refresh = False
        while True:
            attempt += 1
            token = self._tokens.token(tenant_id, refresh=force_refresh)
            force_refresh = False
            try:
                response = self._session.request(method, url, json=body, timeout=30, stream=stream, headers={
                    "Accept": "application/json", "Prefer": f"odata.maxpagesize={MAX_PAGE_SIZE}",
                    **(headers or {}), "Authorization": f"Bearer {token}"})
            except requests.RequestException:
                response = None
            if response is not None and response.status_code == 200:
                return response
            if response is not None and stream:
                response.close()
            if response is not None and response.status_code == 401 and not refreshed:
                refreshed = force_refresh = True
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
        started = self._clock()
        attempt = 0
        refreshed = force_refresh = False
        while True:
            attempt += 1
            token = self._tokens.token(tenant_id, refresh=force_refresh)
            force_refresh = False
            try:
                response = self._session.get(url, timeout=30, headers={
                    "Authorization": f"Bearer {token}", "Accept": "application/json",
                    "Prefer": f"odata.maxpagesize={MAX_PAGE_SIZE}"})
            except requests.RequestException:
                response = None
            if response is not None and response.status_code == 200:
                return response.json()
            if response is not None and response.status_code == 401 and not refreshed:
                refreshed = force_refresh = True  # the cached app token may have been revoked early
                continue
            code = _error_code(response)
            if response is not None and (response.status_code == 410 or code in RESYNC_CODES):
                raise DeltaExpired("the delta token has expired")
            if response is None or response.status_code in RETRYABLE_STATUSES:
                wait = _retry_after(response, attempt)
                if self._clock() - started + wait > self._deadline:
                    raise GraphUnavailable("Graph stayed unavailable", retry_after=wait)
                self._sleep(wait)
                continue
            raise GraphRefused(f"Graph refused the request ({response.status_code})",
                               code=f"graph-{code or response.status_code}")


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


def _retry_after(response: requests.Response | None, attempt: int) -> float:
    header = response.headers.get("Retry-After") if response is not None else None
    if header:
        try:
            return max(0.0, min(float(header), 300.0))
        except ValueError:
            pass
    return min(0.5 * 2 ** (attempt - 1), 30.0)
