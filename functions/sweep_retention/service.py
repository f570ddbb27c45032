"""The retention sweeper: finds what passed its deadline and asks `handle_deletion` to delete it.

- files past `deleteAfter` → `file.delete`; devices silent for `DEVICE_INACTIVITY_DAYS` → `device.delete`
  (collection-group queries on the indexed `deleteAfter` / `lastSeenAt`, page by page, publishing as it
  goes, so a run costs what has expired, not what is stored);
- tenants in `deleting` for longer than `STUCK_DELETION_MINUTES` → `tenant.delete` again, with the
  stored `deletionRequestId` (same receipt);
- Storage objects without manifest older than a day are removed here (no manifest, so no request can
  name them); the scan is bounded per run and the bucket's lifecycle rule is the backstop.

Request IDs are UUIDv5 of what and which deadline, so repeated sweeps reuse the same receipts.
Every request gets its `pending` receipt before it is published, as the contract asks of whoever accepts
a deletion request.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from google.api_core import exceptions as gexc

from shared import logs
from shared.clock import Clock
from shared.events import DeletionPublisher, DeletionRequest, receipt_subject
from shared.ids import is_canonical_id
from shared.store import schema
from shared.store.repositories import (DeviceRepository, FileRepository, ReceiptRepository, TenantRepository,
                                       pending_receipt)
from shared.store.technical_files import delete_objects, object_pages, parse_object_name

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


class RetentionSweeper:
    def __init__(self, db, bucket, publisher: DeletionPublisher, receipt_key: bytes, clock: Clock, *,
                 device_inactivity_days: int = 180, stuck_deletion_minutes: int = 60,
                 page_size: int = 500, max_pages: int = 40, orphan_scan_limit: int = 20000):
        self._db = db
        self._bucket = bucket
        self._publisher = publisher
        self._receipt_key = receipt_key
        self._clock = clock
        self._inactivity = timedelta(days=device_inactivity_days)
        self._stuck_after = timedelta(minutes=stuck_deletion_minutes)
        self._page_size = min(page_size, 500)  # one WriteBatch of receipts per page (Firestore: 500 writes)
        self._max_pages = max_pages
        self._orphan_scan_limit = orphan_scan_limit
        self._tenants = TenantRepository(db)
        self._devices = DeviceRepository(db, self._tenants)
        self._files = FileRepository(db, self._tenants)
        self._receipts = ReceiptRepository(db)

    def sweep(self) -> SweepReport:
        now = self._clock()
        report = SweepReport()
        self._expired_files(now, report)
        self._inactive_devices(now, report)
        self._stuck_tenants(now, report)
        self._orphan_objects(now, report)
        return report

    # -- deadlines -------------------------------------------------------------------------------
    def _expired_files(self, now: datetime, report: SweepReport) -> None:
        for page in self._pages(lambda after: self._files.expired(now, self._page_size, after)):
            requests = []
            for snapshot in page:
                ids = _owner_ids(snapshot, schema.FILES)
                deadline = snapshot.get("deleteAfter")
                if ids is None or not isinstance(deadline, datetime):
                    report.skipped += 1
                    continue
                request = DeletionRequest("file", ids[0], "", ids[1])
                requests.append(_with_id(request, deterministic_request_id(request, deadline)))
            report.files += self._request(requests, report)

    def _inactive_devices(self, now: datetime, report: SweepReport) -> None:
        seen_before = now - self._inactivity
        for page in self._pages(lambda after: self._devices.inactive(seen_before, self._page_size, after)):
            requests = []
            for snapshot in page:
                ids = _owner_ids(snapshot, schema.DEVICES)
                last_seen = snapshot.get("lastSeenAt")
                if ids is None or not isinstance(last_seen, datetime):
                    report.skipped += 1
                    continue
                request = DeletionRequest("device", ids[0], "", ids[1])
                requests.append(_with_id(request, deterministic_request_id(request, last_seen + self._inactivity)))
            report.devices += self._request(requests, report)

    def _stuck_tenants(self, now: datetime, report: SweepReport) -> None:
        requests = []
        for tenant_id, tenant in self._tenants.stuck_deletions(now - self._stuck_after, self._page_size):
            request_id = tenant.get("deletionRequestId")
            if not is_canonical_id(tenant_id) or not is_canonical_id(request_id):
                report.skipped += 1
                continue
            # The stored request: the same receipt finishes, and nobody has to know a new requestId.
            requests.append(DeletionRequest("tenant", tenant_id, request_id))
        report.tenants += self._request(requests, report)

    def _pages(self, fetch):
        after = None
        for _ in range(self._max_pages):
            page = fetch(after)
            if not page:
                return
            yield page
            if len(page) < self._page_size:
                return
            after = page[-1]

    def _request(self, requests: list[DeletionRequest], report: SweepReport) -> int:
        """Pending receipts first (one batch), then the messages (one publish batch); returns how many."""
        if not requests:
            return 0
        now = self._clock()
        subjects = {r.request_id: receipt_subject(self._receipt_key, r) for r in requests}
        refs = [self._receipts.ref(r.request_id) for r in requests]
        existing = {s.id: s.to_dict() for s in self._db.get_all(refs, field_paths=["subject", "status"]) if s.exists}
        missing = [r for r in requests if r.request_id not in existing]
        if missing:
            batch = self._db.batch()
            for r in missing:
                batch.create(self._receipts.ref(r.request_id), pending_receipt(r.kind, subjects[r.request_id], now))
            try:
                batch.commit()
            except gexc.Conflict:  # a concurrent sweep wrote some of them: one by one, keeping theirs
                for r in missing:
                    self._receipts.create_pending(r.request_id, r.kind, subjects[r.request_id], now)
        due = []
        for r in requests:
            receipt = existing.get(r.request_id)
            if receipt is not None and (receipt.get("subject") != subjects[r.request_id]
                                        or receipt.get("status") == "completed"):
                report.skipped += 1  # done already (or not ours): publishing again would change nothing
                continue
            due.append(r)
        if due:
            self._publisher.publish_many(due)
            report.published += len(due)
            report.batches += 1
        return len(due)

    # -- orphan objects --------------------------------------------------------------------------
    def _orphan_objects(self, now: datetime, report: SweepReport) -> None:
        """Objects older than a day without a manifest naming them; at most `orphan_scan_limit` per run.

        Each run starts at another hex shard of the tenant IDs (by the hour) and wraps around, so a
        bucket larger than the limit is still covered over a day of runs.
        """
        cutoff = now - ORPHAN_MIN_AGE
        start = f"tenants/{_SHARDS[int(now.timestamp() // 3600) % len(_SHARDS)]}"
        budget = self._orphan_scan_limit
        for window in ({"start_offset": start}, {"end_offset": start}):
            for page in object_pages(self._bucket, max_results=budget, **window):
                budget -= len(page)
                report.scanned += len(page)
                old = [blob for blob in page if blob.time_created is not None and blob.time_created < cutoff]
                known = self._manifested([blob.name for blob in old])
                orphans = [(blob.name, blob.generation) for blob in old if blob.name not in known]
                if orphans:
                    # Only the generation we saw: an object written since then is not ours to judge.
                    report.orphans += delete_objects(self._bucket, orphans)
            if budget <= 0:
                return

    def _manifested(self, names: Iterable[str]) -> set[str]:
        """Names that a manifest document refers to (exactly, in the tenant the name says)."""
        refs = {}
        for name in names:
            parsed = parse_object_name(name)
            if parsed is not None:
                refs[name] = self._files.collection(parsed.tenant_id).document(parsed.file_id)
        if not refs:
            return set()
        found = {s.reference.path: s.get("objectName")
                 for s in self._db.get_all(list(refs.values()), field_paths=["objectName"]) if s.exists}
        return {name for name, ref in refs.items() if found.get(ref.path) == name}


def _owner_ids(snapshot, collection: str) -> tuple[str, str] | None:
    """(tenantId, id) of tenants/{tenantId}/{collection}/{id}; None for a path outside the data model."""
    parts = snapshot.reference.path.split("/")
    if (len(parts) != 4 or parts[0] != schema.TENANTS or parts[2] != collection
            or not is_canonical_id(parts[1]) or not is_canonical_id(parts[3])):
        return None
    return parts[1], parts[3]


def _with_id(request: DeletionRequest, request_id: str) -> DeletionRequest:
    return DeletionRequest(request.kind, request.tenant_id, request_id, request.target_id)
