"""The contact relay: Graph's directory to the device as NDJSON, page by page, storing nothing.

Which users are sent is the tenant's directory scope (functions/relay_contacts/scope.py, the syncs in
functions/relay_contacts/syncs.py). Full syncs go through shared rounds (functions/relay_contacts/rounds.py):
the phones of one tenant and settings on this instance share one Graph read of the directory, each page
turned into lines once. An incremental sync is the phone's own and holds two Graph pages at a time (while
one page is turned into lines and sent, the next is fetched in a helper thread; nothing is fetched beyond
that until the client has taken the page, so a disconnected client stops the fetching); one of a
group-scoped tenant first reads up to READ_AHEAD_PAGES pages of user changes (syncs.py) to choose between
per-user checks and a full sync.
Repeated items are passed on as they come; the app merges by `id`, so a later repeat simply wins.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from functions.relay_contacts.cursor import Cursor, CursorCodec, settings_fingerprint
from functions.relay_contacts.lines import ContactMapper
from functions.relay_contacts.lines import ndjson as _line
from functions.relay_contacts.rounds import RoundKey, RoundPlan, Rounds
from functions.relay_contacts.scope import Scope, ScopeCheckFailed, ScopeResolver
from functions.relay_contacts.syncs import NeedsFullSync, Sync, SyncContext, failure_line, plan_sync
from shared import logs
from shared.auth import Caller
from shared.clock import Clock
from shared.errors import BadGateway, Forbidden, ServiceUnavailable
from shared.graph.batch import GraphBatcher
from shared.graph.client import DeltaExpired, GraphClient, GraphRefused, GraphUnavailable
from shared.ids import require_id
from shared.store.repositories import DeviceRepository
from shared.store.schema import RELAY_FIELDS

log = logs.get_logger(__name__)


@dataclass
class RelayStream:
    """A sync whose first Graph page is already fetched (errors before the first byte become HTTP errors);
    `write_timeout`: how long one write to the phone may block before the stream is dropped."""

    lines: Iterator[str | bytes]
    write_timeout: float | None = None


class ContactRelayService:
    def __init__(self, devices: DeviceRepository, graph: GraphClient, cursors: CursorCodec, clock: Clock,
                 rounds: Rounds, batcher: GraphBatcher | None = None):
        self._devices = devices
        self._graph = graph
        self._cursors = cursors
        self._clock = clock
        self._batcher = batcher or GraphBatcher(graph)
        self._rounds = rounds

    @property
    def graph(self) -> GraphClient:
        return self._graph

    def open(self, caller: Caller, device_id: Any, cursor_text: str | None) -> RelayStream:
        require_id(device_id, "deviceId")
        settings = caller.settings
        fingerprint = settings_fingerprint(settings)
        cursor = self._cursors.decode(cursor_text, caller.tenant_id) if cursor_text is not None else None
        if not self._devices.touch(caller.tenant_id, device_id, self._clock()):
            raise Forbidden("the device is not registered in this tenant", slug="device-not-registered")
        tenant_id = caller.tenant_id
        resume = cursor if cursor is not None and cursor.settings == fingerprint else None
        timeout = self._rounds.write_timeout
        if resume is not None:
            context = self._context(tenant_id, settings)
            sync = self._incremental(context, resume)
            if sync is not None:
                return RelayStream(self._stream(context, fingerprint, sync), timeout)

        def end_line(users_link: str, groups_link: str | None) -> str:
            return _line({"op": "end", "cursor": self._cursors.encode(
                Cursor(tenant_id, fingerprint, users_link, groups_link or ""))})

        # A full sync: a fresh context per round (its phone numbers and scope checks live for that round only).
        plan = RoundPlan(new_sync=lambda: plan_sync(self._context(tenant_id, settings), None),
                         begin_first=lambda sync: self._mapped(tenant_id, sync.begin, full=True), end_line=end_line)
        return RelayStream(self._rounds.join(RoundKey(tenant_id, fingerprint), plan), timeout)

    def _context(self, tenant_id: str, settings: dict[str, Any]) -> SyncContext:
        fields = settings.get("fields", list(RELAY_FIELDS))
        mapper = ContactMapper(fields, settings.get("defaultRegion"))
        scope = Scope.from_settings(settings)
        select = ["id"] + [f for f in RELAY_FIELDS if f in fields]
        select += [p for p in scope.properties if p not in select]
        return SyncContext(tenant_id, self._graph, ScopeResolver(self._batcher, tenant_id, select), mapper, scope,
                           select)

    def _incremental(self, context: SyncContext, resume: Cursor) -> Sync | None:
        """The incremental sync from the cursor, its first page fetched; None when a full sync must follow
        (an expired delta token, a membership change it cannot follow, a scope without tracked groups)."""
        sync = plan_sync(context, resume)
        if sync.full:
            return None
        try:
            self._mapped(context.tenant_id, sync.begin, full=False)
        except (DeltaExpired, NeedsFullSync) as reason:
            sync.close()
            log.info("full sync instead of incremental", tenantId=context.tenant_id,
                     reason="expired" if isinstance(reason, DeltaExpired) else str(reason))
            return None
        return sync

    @staticmethod
    def _mapped(tenant_id: str, begin: Any, full: bool) -> None:
        """Runs a sync's `begin`: Graph failures before the first byte become HTTP errors (for an incremental
        sync, a delta token that expired and a change it cannot follow are left to the caller)."""
        try:
            begin()
        except (DeltaExpired, NeedsFullSync) as error:
            if not full:
                raise
            log.warning("graph refused before streaming", tenantId=tenant_id, reason=type(error).__name__.lower())
            raise BadGateway("the directory refused access for this tenant", slug="graph-refused") from None
        except GraphUnavailable as error:
            raise ServiceUnavailable("the directory is temporarily unavailable", retry_after=error.retry_after,
                                     slug="graph-unavailable") from None
        except (GraphRefused, ScopeCheckFailed) as error:
            log.warning("graph refused before streaming", tenantId=tenant_id,
                        graphCode=getattr(error, "code", None), status=getattr(error, "status", None))
            raise BadGateway("the directory refused access for this tenant", slug="graph-refused") from None

    def _stream(self, context: SyncContext, fingerprint: str, sync: Sync) -> Iterator[str]:
        """An incremental sync, streamed to its one phone."""
        tenant_id = context.tenant_id
        try:
            for chunk in sync.chunks():
                if chunk:
                    yield chunk
            users_link, groups_link = sync.links()
            if users_link is None:
                yield _line({"op": "error", "code": "incomplete", "retryable": True})
                return
            cursor = self._cursors.encode(Cursor(tenant_id, fingerprint, users_link, groups_link or ""))
            yield _line({"op": "end", "cursor": cursor})
            log.info("sync streamed", tenantId=tenant_id, full=sync.full, pages=sync.pages, contacts=sync.contacts,
                     scopeRequests=context.resolver.requests)
        except GeneratorExit:
            log.info("client went away; stopped fetching", tenantId=tenant_id, pages=sync.pages)
            raise
        except Exception as error:  # noqa: BLE001 - the stream ends with its error line
            yield failure_line(error, tenant_id, sync.pages)
        finally:
            sync.close()


__all__ = ["ContactMapper", "ContactRelayService", "RelayStream"]
