"""The contact relay: Graph's directory to the device as NDJSON, page by page, storing nothing.

Memory stays flat: at most two Graph pages are held at a time. While one page is turned into lines and
sent, the next one is fetched in a helper thread (Graph's latency overlaps the relay's work); nothing is
fetched beyond that until the client has taken the page, so a disconnected client stops the fetching
(at most the one page already in flight completes). Repeated items are passed on as they come; the app
merges by `id`, so a later repeat simply wins.
"""
from __future__ import annotations

import contextvars
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator

from functions.relay_contacts.cursor import Cursor, CursorCodec, settings_fingerprint
from shared import logs
from shared.auth import Caller
from shared.clock import Clock
from shared.errors import BadGateway, Forbidden, ServiceUnavailable
from shared.graph.client import DeltaExpired, GraphClient, GraphRefused, GraphUnavailable, Page
from shared.ids import require_id
from shared.phones import to_e164
from shared.store.repositories import DeviceRepository
from shared.store.schema import RELAY_FIELDS

log = logs.get_logger(__name__)


# One encoder for every line: json.dumps with non-default options builds a new encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _line(document: dict[str, Any]) -> str:
    return _encode(document) + "\n"


class ContactMapper:
    """Turns one Graph user into one relay line with only the allowed fields, phones in E.164."""

    def __init__(self, fields: list[str], region: str | None):
        self._fields = [f for f in RELAY_FIELDS if f in fields]
        self._region = region

    def line(self, user: dict[str, Any], full: bool) -> str:
        if "@removed" in user:
            return _line({"op": "remove", "id": user.get("id")})
        contact: dict[str, Any] = {"op": "upsert", "id": user.get("id")}
        for field in self._fields:
            if field not in user:
                if full:
                    contact[field] = [] if field == "businessPhones" else None
                continue
            value = user[field]
            if field == "mobilePhone":
                value = to_e164(value, self._region)
            elif field == "businessPhones":
                value = [n for n in (to_e164(raw, self._region) for raw in (value or [])) if n]
            contact[field] = value
        return _line(contact)


class _PageAhead:
    """The pages after the first, each fetched while the previous one is being sent (one page ahead).

    `next()` returns the following page (None when Graph has no more) or raises what fetching it raised,
    at the same point of the stream as a plain `next(pages)` would. `close()` fetches nothing more.
    """

    def __init__(self, pages: Iterator[Page], current: Page):
        self._pages = pages
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._fetch_after(current)

    def _fetch_after(self, page: Page) -> None:
        if page.delta_link is not None:  # the last page of the round: nothing follows
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-page-ahead")
        # The fetch runs in the request's context (log trace binding).
        self._pending = self._executor.submit(contextvars.copy_context().run, next, self._pages, None)

    def next(self) -> Page | None:
        if self._pending is None:
            return next(self._pages, None)
        pending, self._pending = self._pending, None
        page = pending.result()
        if page is not None:
            self._fetch_after(page)
        return page

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class RelayStream:
    """A sync whose first Graph page is already fetched (errors before the first byte become HTTP errors)."""

    lines: Iterator[str]


class ContactRelayService:
    def __init__(self, devices: DeviceRepository, graph: GraphClient, cursors: CursorCodec, clock: Clock):
        self._devices = devices
        self._graph = graph
        self._cursors = cursors
        self._clock = clock

    def open(self, caller: Caller, device_id: Any, cursor_text: str | None) -> RelayStream:
        require_id(device_id, "deviceId")
        settings = caller.settings
        fingerprint = settings_fingerprint(settings)
        cursor = self._cursors.decode(cursor_text, caller.tenant_id) if cursor_text is not None else None
        if not self._devices.touch(caller.tenant_id, device_id, self._clock()):
            raise Forbidden("the device is not registered in this tenant", slug="device-not-registered")
        mapper = ContactMapper(settings.get("fields", list(RELAY_FIELDS)), settings.get("defaultRegion"))
        select = ["id"] + [f for f in RELAY_FIELDS if f in settings.get("fields", RELAY_FIELDS)]
        delta_link = cursor.delta_link if cursor is not None and cursor.settings == fingerprint else None
        pages, first, full = self._first_page(caller.tenant_id, select, delta_link)
        return RelayStream(self._stream(caller.tenant_id, fingerprint, mapper, pages, first, full))

    def _first_page(self, tenant_id: str, select: list[str], delta_link: str | None
                    ) -> tuple[Iterator[Page], Page, bool]:
        try:
            try:
                pages = self._graph.delta_pages(tenant_id, select, delta_link)
                return pages, next(pages), delta_link is None
            except DeltaExpired:
                log.info("delta token expired; full sync", tenantId=tenant_id)
                pages = self._graph.delta_pages(tenant_id, select, None)
                return pages, next(pages), True
        except GraphUnavailable as error:
            raise ServiceUnavailable("the directory is temporarily unavailable", retry_after=error.retry_after,
                                     slug="graph-unavailable") from None
        except (GraphRefused, DeltaExpired) as error:
            raise BadGateway("the directory refused access for this tenant", slug="graph-refused") from None

    def _stream(self, tenant_id: str, fingerprint: str, mapper: ContactMapper, pages: Iterator[Page],
                first: Page, full: bool) -> Iterator[str]:
        page_count = contacts = 0
        page: Page | None = first
        ahead: _PageAhead | None = None
        try:
            ahead = _PageAhead(pages, first)  # the second page is on its way while the first is sent
            if full:
                yield _line({"op": "reset"})
            while page is not None:
                page_count += 1
                contacts += len(page.users)
                yield "".join(mapper.line(user, full) for user in page.users)
                if page.delta_link:
                    cursor = self._cursors.encode(Cursor(tenant_id, fingerprint, page.delta_link))
                    yield _line({"op": "end", "cursor": cursor})
                    log.info("sync streamed", tenantId=tenant_id, pages=page_count, contacts=contacts)
                    return
                page = ahead.next()
            yield _line({"op": "error", "code": "incomplete", "retryable": True})
        except GraphUnavailable:
            log.warning("graph unavailable mid-stream", tenantId=tenant_id, pages=page_count)
            yield _line({"op": "error", "code": "graph-unavailable", "retryable": True})
        except DeltaExpired:
            yield _line({"op": "error", "code": "resync-required", "retryable": True})
        except GraphRefused as error:
            log.warning("graph refused mid-stream", tenantId=tenant_id, pages=page_count, graphCode=error.code)
            yield _line({"op": "error", "code": "graph-refused", "retryable": False})
        except GeneratorExit:
            log.info("client went away; stopped fetching", tenantId=tenant_id, pages=page_count)
            raise
        except Exception:  # noqa: BLE001 - the stream must still end with an error line
            log.exception("sync failed mid-stream", tenantId=tenant_id, pages=page_count)
            yield _line({"op": "error", "code": "internal", "retryable": True})
        finally:
            if ahead is not None:
                ahead.close()
