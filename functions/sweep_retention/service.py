"""The retention sweeper: finds what passed its deadline and asks `handle_deletion` to delete it.

- files past `deleteAfter` → `file.delete`; devices silent for `DEVICE_INACTIVITY_DAYS` → `device.delete`
  (collection-group queries on the indexed `deleteAfter` / `lastSeenAt`, page by page, publishing as it
  goes, so a run costs what has expired, not what is stored);
- tenants in `deleting` for longer than `STUCK_DELETION_MINUTES` → `tenant.delete` again, with the
  stored `deletionRequestId` (same receipt);
- Storage objects without manifest older than a day are removed here (no manifest, so no request can
  name them); the scan is bounded per run and the bucket's lifecycle rule is the backstop.

Request IDs are UUIDv5 of what and which deadline, so repeated sweeps reuse the same receipts.
Requests are accepted through `shared.deletion_requests` (pending receipts first, then the messages),
like every other deletion request.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared import logs
from shared.clock import Clock
from shared.deletion_requests import DeletionRequester
from shared.events import DeletionRequest
from shared.ids import is_canonical_id
from shared.store import Store
from shared.store.objects import parse_object_name
from shared.store.records import DuePage
from shared.store.schema import DeletionKind

log = logs.get_logger(__name__)

# Fixed forever: changing it would give every pending deadline a new requestId (and a second receipt).
REQUEST_NAMESPACE = uuid.UUID("56674d55-acbc-42ba-87be-87e0fa21fa61")
ORPHAN_MIN_AGE = timedelta(days=1)
_SHARDS = "0123456789abcdef"


def deterministic_request_id(request: DeletionRequest, deadline: datetime) -> str:
    """UUIDv5 of what is deleted and which deadline made it due."""
    return str(uuid.uuid5(REQUEST_NAMESPACE, f"{request.subject_text()}@{deadline.isoformat()}"))


@dataclass
class SweepReport:
    files: int = 0
    devices: int = 0
    tenants: int = 0
    orphans: int = 0
    scanned: int = 0
    skipped: int = 0
    published: int = 0
    batches: int = 0
    progressing: int = 0  # tenant deletions past the deadline whose attempts still make progress


class RetentionSweeper:
    def __init__(self, store: Store, requester: DeletionRequester, clock: Clock, *,
                 device_inactivity_days: int = 180, stuck_deletion_minutes: int = 60,
                 page_size: int = 500, max_pages: int = 40, orphan_scan_limit: int = 20000):
        self._tenants, self._devices, self._files, self._objects = (store.tenants, store.devices, store.files,
                                                                    store.objects)
        self._receipts = store.receipts
        self._requester, self._clock = requester, clock
        self._inactivity = timedelta(days=device_inactivity_days)
        self._stuck_after = timedelta(minutes=stuck_deletion_minutes)
        self._page_size = min(page_size, 500)  # one batch of receipts per page (Firestore: 500 writes)
        self._max_pages = max_pages
        self._orphan_scan_limit = orphan_scan_limit

    def sweep(self) -> SweepReport:
        now = self._clock()
        report = SweepReport()
        report.files = self._request_due(DeletionKind.FILE, self._files.expired(
            now, self._page_size, self._max_pages), timedelta(0), report)
        report.devices = self._request_due(DeletionKind.DEVICE, self._devices.inactive(
            now - self._inactivity, self._page_size, self._max_pages), self._inactivity, report)
        self._stuck_tenants(now, report)
        self._orphan_objects(now, report)
        return report

    # -- deadlines -------------------------------------------------------------------------------
    def _request_due(self, kind: DeletionKind, pages: Iterable[DuePage], grace: timedelta,
                     report: SweepReport) -> int:
        """Requests deletion of what each page found due; the requestId names the deadline
        (`deleteAfter` of a file, last seen + inactivity of a device)."""
        requested = 0
        for page in pages:
            report.skipped += page.skipped
            requests = []
            for due in page.due:
                request = DeletionRequest(kind, due.tenant_id, "", due.target_id)
                requests.append(request.with_request_id(deterministic_request_id(request, due.deadline + grace)))
            requested += self._request(requests, report)
        return requested

    def _stuck_tenants(self, now: datetime, report: SweepReport) -> None:
        requests = []
        for tenant in self._tenants.stuck_deletions(now - self._stuck_after, self._page_size):
            if not is_canonical_id(tenant.tenant_id) or not is_canonical_id(tenant.deletion_request_id):
                report.skipped += 1
                continue
            # The stored request: the same receipt finishes, and nobody has to know a new requestId.
            requests.append(DeletionRequest(DeletionKind.TENANT, tenant.tenant_id, tenant.deletion_request_id))
        # A long deletion that is still going (its attempts keep setting `progressAt`) is left alone: a
        # second chain of attempts would only compete with the first.
        progress = self._receipts.progress([r.request_id for r in requests]) if requests else {}
        quiet_since = now - self._stuck_after
        stuck = [r for r in requests if not _recent(progress.get(r.request_id), quiet_since)]
        report.progressing += len(requests) - len(stuck)
        for request in stuck:
            # The log-based metric behind the "deletion stuck" alert (terraform/monitoring.tf).
            log.warning("stuck tenant deletion published again", tenantId=request.tenant_id,
                        requestId=request.request_id)
        report.tenants += self._request(stuck, report)

    def _request(self, requests: list[DeletionRequest], report: SweepReport) -> int:
        accepted = self._requester.request_many(requests)
        report.skipped += accepted.skipped
        report.published += accepted.published
        report.batches += 1 if accepted.published else 0
        return accepted.published

    # -- orphan objects --------------------------------------------------------------------------
    def _orphan_objects(self, now: datetime, report: SweepReport) -> None:
        """Objects older than a day without a manifest naming them; at most `orphan_scan_limit` per run.

        Each run starts at another hex shard of the tenant IDs (by the hour) and wraps around, so a
        bucket larger than the limit is still covered over a day of runs.
        """
        objects = self._objects
        if objects is None:  # no technical-files bucket configured: no objects to judge
            return
        cutoff = now - ORPHAN_MIN_AGE
        start = f"tenants/{_SHARDS[int(now.timestamp() // 3600) % len(_SHARDS)]}"
        budget = self._orphan_scan_limit
        for window in ({"start_offset": start}, {"end_offset": start}):
            for page in objects.pages(max_results=budget, **window):
                budget -= len(page)
                report.scanned += len(page)
                old = [stored for stored in page if stored.created_at is not None and stored.created_at < cutoff]
                known = self._manifested([stored.name for stored in old])
                orphans = [(stored.name, stored.generation) for stored in old if stored.name not in known]
                if orphans:
                    # Only the generation we saw: an object written since then is not ours to judge.
                    report.orphans += objects.delete(orphans)
            if budget <= 0:
                return

    def _manifested(self, names: Iterable[str]) -> set[str]:
        """Names that a manifest document refers to (exactly, in the tenant the name says)."""
        candidates = {}
        for name in names:
            parsed = parse_object_name(name)
            if parsed is not None:
                candidates[name] = (parsed.tenant_id, parsed.file_id)
        return self._files.manifested(candidates)


def _recent(progress_at: object, since: datetime) -> bool:
    return isinstance(progress_at, datetime) and progress_at >= since
