"""Relay lines (NDJSON) and the page-ahead fetcher shared by every kind of sync."""
from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from shared.phones import PhoneNormaliser
from shared.store.schema import RELAY_FIELDS

# One encoder for every line: json.dumps with non-default options builds a new encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def ndjson(document: dict[str, Any]) -> str:
    return _encode(document) + "\n"


class ContactMapper:
    """Turns one Graph user into one relay line with only the allowed fields, phones in E.164."""

    def __init__(self, fields: list[str], region: str | None):
        self._fields = [f for f in RELAY_FIELDS if f in fields]
        self.phones = PhoneNormaliser(region)  # one per request: each distinct number parsed once

    def remove(self, user_id: str) -> str:
        return ndjson({"op": "remove", "id": user_id})

    def line(self, user: dict[str, Any], full: bool) -> str:
        if "@removed" in user:
            return ndjson({"op": "remove", "id": user.get("id")})
        contact: dict[str, Any] = {"op": "upsert", "id": user.get("id")}
        for field in self._fields:
            if field not in user:
                if full:
                    contact[field] = [] if field == "businessPhones" else None
                continue
            value = user[field]
            if field == "mobilePhone":
                value = self.phones.e164(value)
            elif field == "businessPhones":
                e164 = self.phones.e164
                value = [n for n in (e164(raw) for raw in (value or [])) if n]
            contact[field] = value
        return ndjson(contact)


class PageAhead:
    """The pages after the first, each fetched while the previous one is being sent (one page ahead).

    `next()` returns the following page (None when Graph has no more) or raises what fetching it raised,
    at the same point of the stream as a plain `next(pages)` would. `close()` fetches nothing more.
    """

    def __init__(self, pages: Iterator[Any], current: Any):
        self._pages = pages
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None
        self._fetch_after(current)

    def _fetch_after(self, page: Any) -> None:
        if page.delta_link is not None:  # the last page of the round: nothing follows
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-page-ahead")
        # The fetch runs in the request's context (log trace binding).
        context = contextvars.copy_context()
        self._pending = self._executor.submit(context.run, _next_or_none, self._pages)

    def next(self) -> Any:
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


def _next_or_none(pages: Iterator[Any]) -> Any:
    """The next page, or None when there is none."""
    return next(pages, None)
