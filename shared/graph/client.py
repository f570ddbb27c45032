"""Microsoft Graph access: app-only tokens per tenant through MSAL, and delta paging with retries.

Tokens live only in MSAL's in-memory cache (one app object per tenant for the process's life; nothing
is persisted). Throttling (429/503/504) is retried honouring a fractional `Retry-After`, within a
deadline; after that the caller gets GraphUnavailable with the wait Graph asked for.
"""
from __future__ import annotations

import bisect
import contextlib
import contextvars
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any
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
# Graph reports `x-ms-throttle-limit-percentage` (sent above 0.8 of the tenant's resource-unit budget) near
# 1, the relay waits before its next page instead of running into 429s.
THROTTLE_PRIORITY = ("x-ms-throttle-priority", "low")
WINDOW_SECONDS = 10.0  # Graph counts a tenant's resource units over this sliding window
WINDOW_SLACK_SECONDS = 0.1  # a unit leaves Graph's window a little after ours (it arrived there later)
PACE_FROM = 0.8  # Graph sends x-ms-throttle-limit-percentage only above this share of the budget
PACE_TARGET = 0.85  # the share of the learnt budget an instance's own units stay under
# The least budget the pacing believes in (Graph's smallest is thousands of units): a 429 caused by other
# instances' requests must not slow this one to a request per window.
PACE_MIN_BUDGET = 20.0
_MAX_TENANT_APPS = 1024


class RequestCount:
    """Graph requests sent (retries included) while it is counting (`counting_requests`): a shared round's
    log line says what the round cost. Threads that copy the context (page-ahead, `$batch`) count into it."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1


_COUNTING: contextvars.ContextVar[RequestCount | None] = contextvars.ContextVar("graph_requests", default=None)


@contextlib.contextmanager
def counting_requests(count: RequestCount) -> Generator[RequestCount, None, None]:
    token = _COUNTING.set(count)
    try:
        yield count
    finally:
        _COUNTING.reset(token)


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

    def _app(self, tenant_id: str) -> Any:  # msal.ConfidentialClientApplication (msal ships no types)
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
            return str(result["access_token"])
        code = safe_code(result.get("error", "unknown"))
        if code in ("temporarily_unavailable", "server_error"):
            raise GraphUnavailable("Entra ID is temporarily unavailable", retry_after=5)
        raise GraphRefused("Entra ID refused the app's token request", code=f"entra-{code}")


class GraphAccessCheck:
    """Whether a tenant's admin consent has reached Graph: a fresh client-credentials token and one
    `GET /users?$top=1&$select=id` (1 resource unit). Graph's access tokens are for Graph alone ("might not
    always be a JWT", Microsoft): the roles are confirmed by Graph answering, never by reading the token."""

    PROBE = "users?$top=1&$select=id"

    def __init__(self, tokens: AppTokens, session: requests.Session, base_url: str):
        self._tokens = tokens
        self._session = session
        self._base = base_url.rstrip("/")

    def reads_users(self, tenant_id: str) -> bool:
        """True when Graph lets the app read the tenant's users, False when it refuses for lack of the
        permission (403); GraphRefused when Entra ID or Graph refuse the app itself, GraphUnavailable when
        either cannot be reached or asks to come back later."""
        # refresh: a fresh MSAL client each time (MSAL keeps an error answer for an identical request, and a
        # token issued before the consent replicated would not carry the new roles).
        token = self._tokens.token(tenant_id, refresh=True)
        try:
            response = self._session.get(f"{self._base}/{self.PROBE}", timeout=15, headers={
                "Accept": "application/json", "Authorization": f"Bearer {token}"})
        except requests.RequestException:
            raise GraphUnavailable("Graph is unreachable", retry_after=5) from None
        if response.status_code == 200:
            return True
        if response.status_code == 403:
            return False
        if response.status_code in RETRYABLE_STATUSES:
            raise GraphUnavailable("Graph is unavailable", retry_after=_retry_after(response, 1))
        code = _error_code(response)
        raise GraphRefused(f"Graph refused the app ({response.status_code})",
                           code=f"graph-{code or response.status_code}")


@dataclass
class Page:
    """One page of a Graph collection: `items` are users, or groups and other directory objects."""
    items: list[dict[str, Any]]
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
        url: str | None
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

    # ---- directory scope and photos (docs/architecture.md, "Directory scope") ----------------
    def is_graph_link(self, url: str, prefix: str) -> bool:
        """True for a link under `{GRAPH_BASE_URL}/{prefix}` (links Graph hands back are checked before use)."""
        return url.startswith(f"{self._base}/{prefix}")

    def url(self, path: str) -> str:
        return f"{self._base}/{path.lstrip('/')}"

    def collection_pages(self, tenant_id: str, url: str | None, prefix: str, headers: dict[str, str] | None = None
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
        answer: dict[str, Any] = self._request(tenant_id, method, url, body, headers, stream=False).json()
        return answer

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
            reservation = self._pacing.reserve(tenant_id)
            if reservation.wait > 0:
                self._sleep(reservation.wait)
            token = self._tokens.token(tenant_id, refresh=force_refresh)
            force_refresh = False
            count = _COUNTING.get()
            if count is not None:
                count.add()
            try:
                response = self._session.request(method, url, json=body, timeout=30, stream=stream, headers={
                    "Accept": "application/json", "Prefer": f"odata.maxpagesize={MAX_PAGE_SIZE}",
                    THROTTLE_PRIORITY[0]: THROTTLE_PRIORITY[1], **(headers or {}),
                    "Authorization": f"Bearer {token}"})
            except requests.RequestException:
                response = None
            if response is not None and response.status_code == 200:
                self._pacing.observe(tenant_id, reservation,
                                     limit_percentage(response.headers.get("x-ms-throttle-limit-percentage")),
                                     charged_units(response, url))
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
                    # One line per 429: the log-based metric of the Graph throttling alert (terraform/monitoring.tf).
                    log.info("graph throttled", tenantId=tenant_id, httpStatus=429, retryAfter=round(wait, 3))
                    # Through the tenant's pacing: its other streams wait too, instead of each hitting the 429.
                    self._pacing.throttled(tenant_id, reservation, wait)
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
        body: dict[str, Any] = self._request(tenant_id, "GET", url, None, None, stream=False).json()
        return body


class TenantPacing:
    """This instance's own copy of Graph's resource-unit window for each tenant, and the tenant's budget
    learnt from Graph's answers, so the tenant's streams together stay under the budget instead of running
    into 429s.

    Graph counts a tenant's resource units over a sliding window of WINDOW_SECONDS and sends
    `x-ms-throttle-limit-percentage` (the share of the budget used) from PACE_FROM. The instance records
    the units of every request it sends, so each answer tells it something about the budget B:
    - the header p: B ≈ (our units in the window when the request was sent) / p;
    - no header (p < PACE_FROM): B > ours / PACE_FROM, so an estimate below that was too low;
    - a 429: B < ours.
    Once B is known, a request is sent only when our window plus its units stays under PACE_TARGET × B;
    otherwise it waits until enough of the window has aged out. Requests reserve their send time in order,
    so streams released together do not burst. With several instances, each one's estimate is its share
    of the budget (its units over everyone's share). A 429 also holds every stream of the tenant until its
    Retry-After. Until Graph has reported anything, nothing is held back.
    """

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._lock = threading.Lock()
        self._tenants: OrderedDict[str, _UnitWindow] = OrderedDict()

    def reserve(self, tenant_id: str, units: float = 1.0) -> Reservation:
        """When the tenant's next request (of about `units`) may be sent; its `wait` is 0 when not held."""
        with self._lock:
            window = self._tenants.get(tenant_id)
            if window is None:
                window = self._tenants[tenant_id] = _UnitWindow()
                while len(self._tenants) > _MAX_TENANT_APPS:
                    self._tenants.popitem(last=False)
            else:
                self._tenants.move_to_end(tenant_id)
            now = self._clock()
            return window.reserve(now, units)

    def observe(self, tenant_id: str, reservation: Reservation, used: float | None,
                units: float | None = None) -> None:
        """A successful answer: `used` is its x-ms-throttle-limit-percentage (None when absent), `units`
        its x-ms-resource-unit."""
        with self._lock:
            window = self._tenants.get(tenant_id)
            if window is not None:
                window.observe(self._clock(), reservation, used, units)

    def throttled(self, tenant_id: str, reservation: Reservation, retry_after: float) -> None:
        """A 429: every stream of the tenant waits until Retry-After, and the budget is below our units."""
        with self._lock:
            window = self._tenants.get(tenant_id)
            if window is not None:
                window.throttled(self._clock(), reservation, retry_after)


@dataclass(frozen=True)
class Reservation:
    wait: float
    sent_at: float  # when the request goes out (our clock)
    units: float
    through: float  # our cumulative units including this request


class _UnitWindow:
    """One tenant's sent units in time order as (time, cumulative units), kept for two windows."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.totals: list[float] = []
        self.base = 0.0  # cumulative units before the first kept entry
        self.budget: float | None = None
        self.hold_until = 0.0

    def _total(self) -> float:
        return self.totals[-1] if self.totals else self.base

    def _cumulative_at(self, moment: float) -> float:
        """Our cumulative units sent up to and including `moment`."""
        index = bisect.bisect_right(self.times, moment)
        return self.totals[index - 1] if index else self.base

    def _units_in_window(self, reservation: Reservation) -> float:
        return reservation.through - self._cumulative_at(reservation.sent_at - WINDOW_SECONDS)

    def _forget_before(self, moment: float) -> None:
        keep = bisect.bisect_right(self.times, moment)
        if keep:
            self.base = self.totals[keep - 1]
            del self.times[:keep], self.totals[:keep]

    def reserve(self, now: float, units: float) -> Reservation:
        self._forget_before(now - 2 * WINDOW_SECONDS)
        send_at = max(now, self.hold_until, self.times[-1] if self.times else now)
        if self.budget is not None:
            # The window at `send_at` holds what we sent after send_at − WINDOW_SECONDS: wait until enough
            # has aged out that it plus these units stay under the target.
            needed = self._total() + units - PACE_TARGET * self.budget
            if needed > self.base:
                first = bisect.bisect_left(self.totals, needed)
                aged_out = self.times[min(first, len(self.times) - 1)]  # all of it, if these units alone are over
                send_at = max(send_at, aged_out + WINDOW_SECONDS + WINDOW_SLACK_SECONDS)
        through = self._total() + units
        self.times.append(send_at)
        self.totals.append(through)
        return Reservation(send_at - now, send_at, units, through)

    def observe(self, now: float, reservation: Reservation, used: float | None, units: float | None) -> None:
        if units is not None and units > reservation.units:  # charged more than reserved: count the rest now
            self.times.append(max(now, self.times[-1] if self.times else now))
            self.totals.append(self._total() + units - reservation.units)
        ours = self._units_in_window(reservation) + max(0.0, (units or 0.0) - reservation.units)
        if used is not None and used > 0:
            self.budget = max(PACE_MIN_BUDGET, ours / used)
        elif used is None and self.budget is not None and ours > PACE_FROM * self.budget:
            self.budget = ours / PACE_FROM  # Graph saw less than PACE_FROM of its budget used

    def throttled(self, now: float, reservation: Reservation, retry_after: float) -> None:
        self.hold_until = max(self.hold_until, now + retry_after)
        ours = self._units_in_window(reservation)
        self.budget = max(PACE_MIN_BUDGET, ours if self.budget is None else min(self.budget, ours))


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


def charged_units(response: requests.Response, url: str) -> float | None:
    """What Graph charged for an answer: its `x-ms-resource-unit`; for `$batch` the sum of the inner
    answers' (each inner request is charged on its own; throttled ones and those without the header count
    nothing). None when Graph said nothing."""
    if not url.split("?", 1)[0].endswith("/$batch"):
        return resource_units(response.headers.get("x-ms-resource-unit"))
    try:
        body = response.json()
    except ValueError:
        return None
    total, said = 0.0, False
    for raw in (body.get("responses") or []) if isinstance(body, dict) else []:
        headers = raw.get("headers") if isinstance(raw, dict) else None
        if not isinstance(headers, dict) or raw.get("status") == 429:
            continue
        units = resource_units(next((str(v) for k, v in headers.items() if str(k).lower() == "x-ms-resource-unit"),
                                    None))
        if units is not None:
            total, said = total + units, True
    return total if said else None


def resource_units(header: str | None) -> float | None:
    """Graph's `x-ms-resource-unit` (what the request cost) as a number, None when absent or not one."""
    units = limit_percentage(header)
    return units if units is not None and units >= 0 else None


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
    return min(0.5 * 2.0 ** (attempt - 1), 30.0)
