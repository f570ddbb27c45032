"""The contact relay: Graph's directory to the device as NDJSON, page by page, storing nothing.

Which users are sent is the tenant's directory scope (functions/relay_contacts/scope.py, the syncs in
functions/relay_contacts/syncs.py). Memory stays flat: a full sync holds two Graph pages at a time (while
one page is turned into lines and sent, the next is fetched in a helper thread, so Graph's latency
overlaps the relay's work; nothing is fetched beyond that until the client has taken the page, so a
disconnected client stops the fetching); an incremental sync of a group-scoped tenant first reads up to
READ_AHEAD_PAGES pages of user changes (syncs.py) to choose between per-user checks and a full sync.
Repeated items are passed on as they come; the app merges by `id`, so a later repeat simply wins.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from functions.relay_contacts.admission import SyncAdmission
from functions.relay_contacts.cursor import Cursor, CursorCodec, settings_fingerprint
from functions.relay_contacts.lines import ContactMapper
from functions.relay_contacts.lines import ndjson as _line
from functions.relay_contacts.scope import Scope, ScopeCheckFailed, ScopeResolver
from functions.relay_contacts.syncs import NeedsFullSync, Sync, SyncContext, plan_sync
from shared import logs
from shared.auth import Caller
from shared.clock import Clock
from shared.errors import BadGateway, Forbidden, ServiceUnavailable
from shared.graph.batch import GraphBatcher
from shared.graph.client import DeltaExpired, GraphClient, GraphRefused, GraphUnavailable
from shared.ids import require_id
from shared.store.leases import Lease
from shared.store.repositories import DeviceRepository
from shared.store.schema import RELAY_FIELDS

log = logs.get_logger(__name__)


@dataclass
class RelayStream:
    """A sync whose first Graph page is already fetched (errors before the first byte become HTTP errors)."""

    lines: Iterator[str]


class ContactRelayService:
    def __init__(self, devices: DeviceRepository, graph: GraphClient, cursors: CursorCodec, clock: Clock,
                 batcher: GraphBatcher | None = None, admission: SyncAdmission | None = None):
        self._devices = devices
        self._graph = graph
        self._cursors = cursors
        self._clock = clock
        self._batcher = batcher or GraphBatcher(graph)
        self._admission = admission

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
        fields = settings.get("fields", list(RELAY_FIELDS))
        mapper = ContactMapper(fields, settings.get("defaultRegion"))
        scope = Scope.from_settings(settings)
        select = ["id"] + [f for f in RELAY_FIELDS if f in fields]
        select += [p for p in scope.properties if p not in select]
        resume = cursor if cursor is not None and cursor.settings == fingerprint else None
        context = SyncContext(caller.tenant_id, self._graph, ScopeResolver(self._batcher, caller.tenant_id, select),
                              mapper, scope, select)
        sync, lease = self._begin(context, resume)
        return RelayStream(self._stream(context, fingerprint, sync, lease))

    def _begin(self, context: SyncContext, resume: Cursor | None) -> tuple[Sync, Lease | None]:
        """The sync to run, admitted and its first Graph page fetched; failures here are HTTP errors (a
        full sync the tenant has no lease for is `503 sync-busy`)."""
        try:
            try:
                return self._started(context, plan_sync(context, resume))
            except (DeltaExpired, NeedsFullSync) as reason:
                log.info("full sync instead of incremental", tenantId=context.tenant_id,
                         reason="expired" if isinstance(reason, DeltaExpired) else str(reason))
                return self._started(context, plan_sync(context, None))
        except GraphUnavailable as error:
            raise ServiceUnavailable("the directory is temporarily unavailable", retry_after=error.retry_after,
                                     slug="graph-unavailable") from None
        except (GraphRefused, DeltaExpired, ScopeCheckFailed) as error:
            log.warning("graph refused before streaming", tenantId=context.tenant_id,
                        graphCode=getattr(error, "code", None), status=getattr(error, "status", None))
            raise BadGateway("the directory refused access for this tenant", slug="graph-refused") from None

    def _started(self, context: SyncContext, sync: Sync) -> tuple[Sync, Lease | None]:
        """Every full sync (a first one, one after an expired token, changed settings or a membership
        change the incremental sync cannot follow) first takes one of the tenant's leases
        (functions/relay_contacts/admission.py); incremental syncs are never limited."""
        lease = self._admission.admit(context.tenant_id) if sync.full and self._admission is not None else None
        try:
            sync.begin()
        except BaseException:
            self._release(lease)
            raise
        return sync, lease

    def _release(self, lease: Lease | None) -> None:
        if lease is not None and self._admission is not None:
            self._admission.release(lease)

    def _stream(self, context: SyncContext, fingerprint: str, sync: Sync, lease: Lease | None) -> Iterator[str]:
        tenant_id = context.tenant_id
        try:
            if sync.full:
                yield _line({"op": "reset"})
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
        except GraphUnavailable:
            log.warning("graph unavailable mid-stream", tenantId=tenant_id, pages=sync.pages)
            yield _line({"op": "error", "code": "graph-unavailable", "retryable": True})
        except DeltaExpired:
            yield _line({"op": "error", "code": "resync-required", "retryable": True})
        except GraphRefused as error:
            log.warning("graph refused mid-stream", tenantId=tenant_id, pages=sync.pages, graphCode=error.code)
            yield _line({"op": "error", "code": "graph-refused", "retryable": False})
        except ScopeCheckFailed as error:
            log.warning("scope check refused mid-stream", tenantId=tenant_id, pages=sync.pages, status=error.status)
            yield _line({"op": "error", "code": "graph-refused", "retryable": False})
        except GeneratorExit:
            log.info("client went away; stopped fetching", tenantId=tenant_id, pages=sync.pages)
            raise
        except Exception:
            log.exception("sync failed mid-stream", tenantId=tenant_id, pages=sync.pages)
            yield _line({"op": "error", "code": "internal", "retryable": True})
        finally:
            sync.close()
            self._release(lease)


__all__ = ["ContactMapper", "ContactRelayService", "RelayStream"]
