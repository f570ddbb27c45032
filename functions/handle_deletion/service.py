"""Cascading deletion of a tenant, a device or a technical file: resumable, idempotent, verified.

One request runs these steps, each safe to repeat (ARCHITECTURE.md, "handle_deletion contract"):

1. receipt: create the `pending` receipt if missing; a requestId already used for another subject is
   poison. A receipt already `completed` means an earlier delivery finished: nothing more to do.
2. mark: a tenant gets `status=deleting` (registrations and uploads are refused from then on).
3. files: Storage objects named by the manifests and everything under the owner's prefix, deleted
   concurrently; not found is success.
4. documents: manifests and documents at any depth with a BulkWriter; the tenant document goes last,
   so an unfinished run stays visible to the sweeper (`deleting` since ...).
5. verify: re-read the prefix and the documents; leftovers get one more pass, then a TransientError.
6. counts are added to the receipt (summed over attempts), then the receipt is `completed`.

Write rate (Firestore's 500/50/5 rule): the BulkWriter starts at `DELETION_INITIAL_OPS_PER_SECOND`
(500) and grows by 50 % every 5 minutes up to `DELETION_MAX_OPS_PER_SECOND` (10000), which is the ramp
Firestore asks for on production traffic; the benchmarks lift both on the emulator.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_writer import BulkWriter, BulkWriterOptions

from shared import logs
from shared.clock import Clock
from shared.errors import PoisonMessage, TransientError
from shared.events import DeletionRequest, parse_deletion_message, receipt_subject
from shared.store import schema
from shared.store.repositories import FileRepository, ReceiptRepository, TenantRepository
from shared.store.technical_files import (ObjectsNotDeleted, delete_objects, device_prefix, first_object,
                                          object_pages, tenant_prefix)

log = logs.get_logger(__name__)

_NOT_FOUND = 5  # google.rpc.Code.NOT_FOUND: the document was already gone (precondition `exists`)
_WRITE_ATTEMPTS = 5  # per document, then verification notices and Pub/Sub redelivers


@dataclass(frozen=True)
class DeletionOutcome:
    request: DeletionRequest
    documents: int = 0
    files: int = 0
    verified: bool = False
    already_completed: bool = False


class _Tally:
    """What this attempt deleted; BulkWriter callbacks run on its worker threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.documents = 0
        self.files = 0

    def add(self, documents: int = 0, files: int = 0) -> None:
        with self._lock:
            self.documents += documents
            self.files += files


class _ExistingOnlyWriter(BulkWriter):
    """Deletes with the precondition `exists`, so only documents that really went are counted.

    `Client.recursive_delete` calls `delete(reference)`; with the precondition a document deleted
    meanwhile by a duplicate delivery fails with NOT_FOUND, which is success and is not counted twice.
    """

    def __init__(self, client, options: BulkWriterOptions, tally: _Tally):
        super().__init__(client, options)
        self._exists = client.write_option(exists=True)
        self.on_write_result(lambda reference, result, writer: tally.add(documents=1))
        self.on_write_error(lambda failure, writer: failure.code != _NOT_FOUND
                            and failure.attempts < _WRITE_ATTEMPTS)

    def delete(self, reference, option=None):
        return super().delete(reference, option=option or self._exists)


class DeletionService:
    def __init__(self, db, bucket, receipt_key: bytes, clock: Clock, *,
                 initial_ops_per_second: int = 500, max_ops_per_second: int = 10000,
                 storage_workers: int = 8):
        self._db = db
        self._bucket = bucket
        self._receipt_key = receipt_key
        self._clock = clock
        self._writer_options = BulkWriterOptions(initial_ops_per_second=initial_ops_per_second,
                                                 max_ops_per_second=max_ops_per_second)
        self._storage_workers = storage_workers
        self._tenants = TenantRepository(db)
        self._files = FileRepository(db, self._tenants)
        self._receipts = ReceiptRepository(db)

    # -- entry -----------------------------------------------------------------------------------
    def handle_message(self, data: bytes) -> DeletionOutcome:
        """Parses one message of `deletion-requests` and runs it; PoisonMessage if it can never succeed."""
        return self.delete(parse_deletion_message(data))

    def delete(self, request: DeletionRequest) -> DeletionOutcome:
        subject = receipt_subject(self._receipt_key, request)
        receipt = self._receipts.create_pending(request.request_id, request.kind, subject, self._clock())
        if receipt.get("subject") != subject or receipt.get("kind") != request.kind:
            raise PoisonMessage("requestId already used for a different subject")
        if receipt.get("status") == "completed":
            return DeletionOutcome(request, verified=bool(receipt.get("verified")), already_completed=True)

        steps = {"tenant": self._tenant_steps, "device": self._device_steps, "file": self._file_steps}
        run, leftovers = steps[request.kind](request)
        tally = _Tally()
        try:
            run(tally)
            left = leftovers()
            if left:
                # Something arrived while we deleted (e.g. an upload that had passed its check): once more.
                log.warning("leftovers after deletion; second pass", kind=request.kind, phase=left,
                            requestId=request.request_id, tenantId=request.tenant_id)
                run(tally)
                left = leftovers()
                if left:
                    raise TransientError(f"deletion not verified: {left} still present")
        finally:
            self._record_counts(request, tally, failing=sys.exc_info()[0] is not None)
        self._receipts.complete(request.request_id, verified=True, now=self._clock())
        return DeletionOutcome(request, tally.documents, tally.files, verified=True)

    def _record_counts(self, request: DeletionRequest, tally: _Tally, failing: bool) -> None:
        try:
            self._receipts.add_counts(request.request_id, documents=tally.documents, files=tally.files)
        except Exception:  # noqa: BLE001 - while another error propagates, that one is what matters
            if not failing:
                raise
            log.warning("counts of a failed attempt not recorded", requestId=request.request_id,
                        documents=tally.documents, files=tally.files)

    # -- tenant ----------------------------------------------------------------------------------
    def _tenant_steps(self, request: DeletionRequest):
        tenant_id = request.tenant_id
        tenant_ref = self._tenants.ref(tenant_id)
        prefix = tenant_prefix(tenant_id)

        def run(tally: _Tally) -> None:
            # Mark first: from now on registrations and uploads of this tenant are refused.
            self._tenants.mark_deleting(tenant_id, request.request_id, self._clock())
            manifests = self._manifest_objects(self._files.collection(tenant_id), prefix, request)
            self._delete_names([name for name in manifests.values() if name], tally)
            self._delete_prefix(prefix, tally)
            for collection in tenant_ref.collections():
                self._delete_recursively(collection, tally)
            # The tenant document last: while it says `deleting`, the sweeper can re-drive the request.
            if not self._documents_under(tenant_ref):
                self._delete_document(tenant_ref, tally)

        def leftovers() -> str | None:
            if first_object(self._bucket, prefix) is not None:
                return "objects"
            if self._documents_under(tenant_ref) or tenant_ref.get().exists:
                return "documents"
            return None

        return run, leftovers

    # -- device ----------------------------------------------------------------------------------
    def _device_steps(self, request: DeletionRequest):
        tenant_id, device_id = request.tenant_id, request.target_id
        device_ref = self._tenants.ref(tenant_id).collection(schema.DEVICES).document(device_id)
        manifests_query = self._files.collection(tenant_id).where(filter=FieldFilter("deviceId", "==", device_id))
        prefix = device_prefix(tenant_id, device_id)
        outside_prefix: set[str] = set()  # manifest objects of this device not under its prefix

        def run(tally: _Tally) -> None:
            manifests = self._manifest_objects(manifests_query, tenant_prefix(tenant_id), request)
            names = [name for name in manifests.values() if name]
            outside_prefix.update(name for name in names if not name.startswith(prefix))
            self._delete_names(names, tally)
            self._delete_prefix(prefix, tally)
            for manifest_id in manifests:
                self._delete_document(self._files.collection(tenant_id).document(manifest_id), tally)
            for collection in device_ref.collections():
                self._delete_recursively(collection, tally)
            self._delete_document(device_ref, tally)

        def leftovers() -> str | None:
            if first_object(self._bucket, prefix) is not None:
                return "objects"
            if any(self._object_exists(name) for name in outside_prefix):
                return "objects"
            if next(iter(manifests_query.limit(1).get()), None) is not None:
                return "documents"
            if device_ref.get().exists or self._documents_under(device_ref):
                return "documents"
            return None

        return run, leftovers

    # -- file ------------------------------------------------------------------------------------
    def _file_steps(self, request: DeletionRequest):
        tenant_id, file_id = request.tenant_id, request.target_id
        manifest_ref = self._files.collection(tenant_id).document(file_id)
        prefix = tenant_prefix(tenant_id)
        names: set[str] = set()

        def run(tally: _Tally) -> None:
            snapshot = manifest_ref.get()
            if snapshot.exists:
                name = self._object_of(snapshot, prefix, request)
                if name:
                    names.add(name)
                    self._delete_names([name], tally)
            self._delete_document(manifest_ref, tally)

        def leftovers() -> str | None:
            first_object(self._bucket, prefix)  # a missing bucket must never pass as "nothing left"
            if any(self._object_exists(name) for name in names):
                return "objects"
            if manifest_ref.get().exists:
                return "documents"
            return None

        return run, leftovers

    # -- Storage ---------------------------------------------------------------------------------
    def _manifest_objects(self, manifests, prefix: str, request: DeletionRequest) -> dict[str, str | None]:
        """{fileId: objectName} of the manifests matched; None where the name is not inside `prefix`."""
        return {snapshot.id: self._object_of(snapshot, prefix, request)
                for snapshot in manifests.select(["objectName"]).stream()}

    @staticmethod
    def _object_of(snapshot, prefix: str, request: DeletionRequest) -> str | None:
        name = (snapshot.to_dict() or {}).get("objectName")
        if isinstance(name, str) and name.startswith(prefix):
            return name
        # Never follow a name out of the tenant's prefix, whatever a manifest says.
        log.error("manifest names an object outside its tenant; object left alone", kind=request.kind,
                  tenantId=request.tenant_id, fileId=snapshot.id, requestId=request.request_id)
        return None

    def _delete_prefix(self, prefix: str, tally: _Tally) -> None:
        # Page by page: memory stays flat for tenants with many objects; deleting behind the page token is safe.
        for page in object_pages(self._bucket, prefix=prefix):
            self._delete_names([blob.name for blob in page], tally)

    def _delete_names(self, names: list[str], tally: _Tally) -> None:
        if not names:
            return
        try:
            tally.add(files=delete_objects(self._bucket, names, self._storage_workers))
        except ObjectsNotDeleted as error:
            tally.add(files=error.deleted)
            raise

    def _object_exists(self, name: str) -> bool:
        return first_object(self._bucket, name) == name

    # -- Firestore -------------------------------------------------------------------------------
    def _bulk_writer(self, tally: _Tally) -> BulkWriter:
        return _ExistingOnlyWriter(self._db, self._writer_options, tally)

    def _delete_recursively(self, reference, tally: _Tally) -> None:
        self._db.recursive_delete(reference, bulk_writer=self._bulk_writer(tally))

    def _delete_document(self, reference, tally: _Tally) -> None:
        try:
            reference.delete(option=self._db.write_option(exists=True))
        except gexc.NotFound:
            return
        tally.add(documents=1)

    @staticmethod
    def _documents_under(reference) -> bool:
        return any(next(iter(collection.recursive().limit(1).get()), None) is not None
                   for collection in reference.collections())

