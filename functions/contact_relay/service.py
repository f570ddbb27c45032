"""The contact relay: Graph's directory to the device as NDJSON, page by page, storing nothing.

Memory stays flat: one Graph page is held at a time and the next page is fetched only when the client
has taken the previous one (a disconnected client stops the fetching). Repeated items are passed on
as they come; the app merges by `id`, so a later repeat simply wins.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from functions.contact_relay.cursor import Cursor, CursorCodec, settings_fingerprint
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
PHONE_FIELDS = ("mobilePhone", "businessPhones")


def _line(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"


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
        try:
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
                page = next(pages, None)
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
