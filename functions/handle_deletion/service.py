"""Cascading deletion of a tenant, a device or a technical file: resumable, idempotent, verified.

One request runs these steps, each safe to repeat (docs/architecture.md, "Deletion"):

1. receipt: create the `pending` receipt if missing; a requestId already used for another subject is
   poison. A receipt already `completed` means an earlier delivery finished: nothing more to do.
2. mark: a tenant gets `status=deleting` (registrations and uploads are refused from then on).
3. files: Storage objects named by the manifests and everything under the owner's prefix, deleted
   concurrently; not found is success.
4. documents: manifests and documents at any depth with a BulkWriter; the tenant document goes last,
   so an unfinished run stays visible to the sweeper (`deleting` since ...).
5. verify: re-read the prefix and the documents; leftovers get one more pass, then a TransientError.
6. counts are added to the receipt (summed over attempts), then the receipt is `completed` (once).

Deletion of any size: an attempt that has run `DELETION_ATTEMPT_SECONDS` stops between two chunks (a
page of objects, a chunk of documents), records its counts, publishes a continuation (same requestId,
`continuation` n + 1) and returns; the next attempt goes on where it stopped, because what is deleted is
no longer found. Only the attempt that verifies completes the receipt. Every attempt sets `progressAt`,
so the sweeper leaves a long deletion alone while it makes progress (docs/deletion.md).

Firestore is reached through `shared.store.erasure.DocumentEraser` (exact counts, Firestore's write
ramp), Storage through `shared.store.objects.ObjectStore`; this module decides the order and the checks.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from shared import logs
from shared.clock import Clock
from shared.config import ConfigError
from shared.errors import PoisonMessage, TransientError
from shared.events import DeletionRequest, receipt_subject, tenant_subject
from shared.store import Store
from shared.store.objects import ObjectsNotDeleted, ObjectStore, device_prefix, tenant_prefix
from shared.store.schema import DeletionKind

log = logs.get_logger(__name__)


@dataclass(frozen=True)
class DeletionOutcome:
    request: DeletionRequest
    documents: int = 0
    files: int = 0
    verified: bool = False
    already_completed: bool = False
    continued: bool = False  # stopped at the attempt's time budget; a continuation was published


class Continuations(Protocol):
    """Where a deletion that ran out of time publishes its continuation (topic `deletion-requests`)."""

    def publish(self, request: DeletionRequest) -> str: ...


class AttemptBudget:
    """The time one attempt may run before it hands over to a continuation."""

    def __init__(self, seconds: float, timer: Callable[[], float] = time.monotonic):
        self._timer = timer
        self._deadline = timer() + seconds

    def spent(self) -> bool:
        return self._timer() >= self._deadline


class _Tally:
    """What this attempt deleted; the eraser reports from its BulkWriter threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.documents = 0
        self.files = 0

    def add(self, documents: int = 0, files: int = 0) -> None:
        with self._lock:
            self.documents += documents
            self.files += files

    def document_deleted(self, count: int) -> None:
        self.add(documents=count)


class DeletionService:
    def __init__(self, store: Store, receipt_key: bytes, clock: Clock, continuations: Continuations,
                 attempt_seconds: float = 420.0, timer: Callable[[], float] = time.monotonic):
        if store.objects is None:
            raise ConfigError("handle_deletion needs TECHNICAL_FILES_BUCKET (the deletion deletes objects too)")
        self._tenants, self._receipts, self._eraser = store.tenants, store.receipts, store.eraser
        self._objects: ObjectStore = store.objects
        self._receipt_key = receipt_key
        self._clock = clock
        self._continuations = continuations
        self._attempt_seconds = attempt_seconds
        self._timer = timer

    # -- entry -----------------------------------------------------------------------------------
    def delete(self, request: DeletionRequest) -> DeletionOutcome:
        subject = receipt_subject(self._receipt_key, request)
        receipt = self._receipts.create_pending(request.request_id, request.kind, subject, self._clock(),
                                                tenant_subject(self._receipt_key, request.tenant_id))
        if receipt.subject != subject or receipt.kind != request.kind:
            raise PoisonMessage("requestId already used for a different subject")
        if receipt.completed:
            # A duplicate, or a continuation of a deletion another attempt has finished: nothing to do.
            return DeletionOutcome(request, verified=receipt.verified, already_completed=True)
        self._receipts.progressed(request.request_id, self._clock())

        steps = {DeletionKind.TENANT: self._tenant_steps, DeletionKind.DEVICE: self._device_steps,
                 DeletionKind.FILE: self._file_steps}
        run, leftovers = steps[request.kind](request)
        budget = AttemptBudget(self._attempt_seconds, self._timer)
        tally = _Tally()
        try:
            finished = _within(budget, run(tally))
            left = leftovers() if finished else None
            if left:
                # Something arrived while we deleted (e.g. an upload that had passed its check): once more.
                log.warning("leftovers after deletion; second pass", kind=request.kind, phase=left,
                            requestId=request.request_id, tenantId=request.tenant_id)
                finished = _within(budget, run(tally))
                left = leftovers() if finished else None
                if left:
                    raise TransientError(f"deletion not verified: {left} still present")
        finally:
            # Counts first: a crash after this line loses nothing (redelivery finds what is left).
            self._record_counts(request, tally, failing=sys.exc_info()[0] is not None)
        if not finished:
            try:
                self._continuations.publish(request.next_continuation())
            except Exception as error:  # this attempt's message is redelivered and goes on from here
                raise TransientError("the continuation could not be published") from error
            return DeletionOutcome(request, tally.documents, tally.files, continued=True)
        completed_now = self._receipts.complete(request.request_id, verified=True, now=self._clock())
        return DeletionOutcome(request, tally.documents, tally.files, verified=True,
                               already_completed=not completed_now)

    def _record_counts(self, request: DeletionRequest, tally: _Tally, failing: bool) -> None:
        try:
            self._receipts.add_counts(request.request_id, documents=tally.documents, files=tally.files,
                                      now=self._clock())
        except Exception:
            if not failing:
                raise
            log.warning("counts of a failed attempt not recorded", requestId=request.request_id,
                        documents=tally.documents, files=tally.files)

    # -- tenant ----------------------------------------------------------------------------------
    def _tenant_steps(self, request: DeletionRequest) -> _Steps:
        tenant_id = request.tenant_id
        prefix = tenant_prefix(tenant_id)

        def run(tally: _Tally) -> Iterator[None]:
            # Mark first: from now on registrations and uploads of this tenant are refused.
            self._tenants.mark_deleting(tenant_id, request.request_id, self._clock())
            # Objects by prefix only: every name a manifest may follow lies under it (see _inside), and a
            # continuation must not re-read 500k manifests to delete objects that are gone already.
            yield from self._delete_prefix(prefix, tally)
            yield from self._eraser.erase_tenant_chunks(tenant_id, tally.document_deleted)

        def leftovers() -> str | None:
            if self._objects.first(prefix) is not None:
                return "objects"
            if self._eraser.tenant_left(tenant_id):
                return "documents"
            return None

        return run, leftovers

    # -- device ----------------------------------------------------------------------------------
    def _device_steps(self, request: DeletionRequest) -> _Steps:
        tenant_id, device_id = request.tenant_id, _target(request)
        prefix = device_prefix(tenant_id, device_id)
        outside_prefix: set[str] = set()  # manifest objects of this device not under its prefix

        def run(tally: _Tally) -> Iterator[None]:
            manifests = self._eraser.object_names(tenant_id, device_id)
            names = list(self._inside(tenant_prefix(tenant_id), manifests, request).values())
            outside_prefix.update(name for name in names if not name.startswith(prefix))
            self._delete_objects(names, tally)
            yield from self._delete_prefix(prefix, tally)
            self._eraser.erase_device(tenant_id, device_id, manifests, tally.document_deleted)

        def leftovers() -> str | None:
            if self._objects.first(prefix) is not None or any(self._objects.exists(n) for n in outside_prefix):
                return "objects"
            if self._eraser.device_left(tenant_id, device_id):
                return "documents"
            return None

        return run, leftovers

    # -- file ------------------------------------------------------------------------------------
    def _file_steps(self, request: DeletionRequest) -> _Steps:
        tenant_id, file_id = request.tenant_id, _target(request)
        prefix = tenant_prefix(tenant_id)
        names: set[str] = set()

        def run(tally: _Tally) -> Iterator[None]:
            yield from ()  # one step, no place to stop
            exists, name = self._eraser.object_name(tenant_id, file_id)
            if exists:
                inside = self._inside(prefix, {file_id: name}, request)
                names.update(inside.values())
                self._delete_objects(list(inside.values()), tally)
            self._eraser.erase_manifest(tenant_id, file_id, tally.document_deleted)

        def leftovers() -> str | None:
            self._objects.first(prefix)  # a missing bucket must never pass as "nothing left"
            if any(self._objects.exists(name) for name in names):
                return "objects"
            if self._eraser.manifest_left(tenant_id, file_id):
                return "documents"
            return None

        return run, leftovers

    # -- Storage ---------------------------------------------------------------------------------
    @staticmethod
    def _inside(prefix: str, names: dict[str, str | None], request: DeletionRequest) -> dict[str, str]:
        """The {fileId: objectName} whose object lies inside `prefix`; others are logged and left alone."""
        inside = {}
        for file_id, name in names.items():
            if name is not None and name.startswith(prefix):
                inside[file_id] = name
            else:
                # Never follow a name out of the tenant's prefix, whatever a manifest says.
                log.error("manifest names an object outside its tenant; object left alone", kind=request.kind,
                          tenantId=request.tenant_id, fileId=file_id, requestId=request.request_id)
        return inside

    def _delete_prefix(self, prefix: str, tally: _Tally) -> Iterator[None]:
        # Page by page: memory stays flat for tenants with many objects; deleting behind the page token is
        # safe. Yields after each page that deleted something, where a time-boxed attempt may stop (only
        # after real work, so a chain of continuations always gets somewhere).
        for page in self._objects.pages(prefix=prefix):
            if page:
                self._delete_objects([stored.name for stored in page], tally)
                yield

    def _delete_objects(self, names: list[str], tally: _Tally) -> None:
        if not names:
            return
        try:
            tally.add(files=self._objects.delete(names))
        except ObjectsNotDeleted as error:
            tally.add(files=error.deleted)
            raise


# An attempt's work (steps that yield where it may stop) and its check of what is left (None: nothing).
_Steps = tuple[Callable[["_Tally"], Iterator[None]], Callable[[], "str | None"]]


def _target(request: DeletionRequest) -> str:
    """The deviceId or fileId of a device or file request (parse_deletion_message requires one)."""
    if request.target_id is None:
        raise PoisonMessage(f"a {request.kind} deletion names no target")
    return request.target_id


def _within(budget: AttemptBudget, work: Iterator[None]) -> bool:
    """Runs `work` step by step until it is done (True) or the budget is spent after a step (False).
    At least one step runs, and a step yields only after deleting something (a step that cannot delete
    raises), so every attempt makes progress however small its budget."""
    try:
        return all(not budget.spent() for _ in work)
    finally:
        close = getattr(work, "close", None)
        if close is not None:
            close()
