"""Firestore side of a cascading deletion: documents at any depth, counted exactly, safe to repeat.

Deletes use the precondition `exists`, so a document deleted meanwhile by a duplicate delivery fails with
NOT_FOUND, which is success and is not counted twice. Write rate (Firestore's 500/50/5 rule): the
BulkWriter starts at `initial_ops_per_second` and grows by 50 % every 5 minutes up to
`max_ops_per_second` (docs/architecture.md, "Configuration").
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1._helpers import WriteOption
from google.cloud.firestore_v1.base_document import BaseDocumentReference, DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch
from google.cloud.firestore_v1.bulk_writer import BulkWriteFailure, BulkWriter, BulkWriterOptions
from google.cloud.firestore_v1.client import Client
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.query import Query
from google.cloud.firestore_v1.types.firestore import BatchWriteResponse
from google.cloud.firestore_v1.types.write import WriteResult
from google.rpc.status_pb2 import Status

from shared.errors import TransientError
from shared.store import schema

Counter = Callable[[int], None]  # told how many documents went; called from BulkWriter threads too

# google.rpc.Code of a write the BulkWriter may send again: Firestore did not apply it and says so for a
# while (load, contention, a restart). Anything else (PERMISSION_DENIED, INVALID_ARGUMENT, ...) will not
# change by retrying. NOT_FOUND is success: the document was already gone (precondition `exists`).
_TRANSIENT = frozenset({10, 14, 8, 4, 13})  # ABORTED, UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, INTERNAL
_NOT_FOUND = 5
_WRITE_RETRIES = 10  # per document (the BulkWriter waits 1 s, 2 s, ... between them: 55 s at most)
CHUNK_SIZE = 1000  # documents per chunk: about 2 s at the initial 500 writes/s, so an attempt stops on time


class _ExistingOnlyWriter(BulkWriter):
    """A BulkWriter whose deletes carry the precondition `exists` and count what they deleted.

    As python-firestore's BulkWriter (2.x) works: a write answered with an error is retried through
    `delete(reference, option=, attempts=)` (so the override takes `attempts`), and a retry that falls due
    while `close()` runs is refused ("BulkWriter is closed"), so `close()` flushes first. A BatchWrite call
    that fails as a whole would drop its writes without a callback (the exception stays in the executor's
    future): `_send` turns it into that error for each write, which the retry policy then sees.
    """

    def __init__(self, client: Client, options: BulkWriterOptions, counted: Counter):
        super().__init__(client, options)
        self._exists = client.write_option(exists=True)
        self.failed = 0  # deletes given up (not found is not a failure)
        self.on_write_result(lambda reference, result, writer: counted(1))
        self.on_write_error(self._retry)

    def _retry(self, failure: BulkWriteFailure, writer: BulkWriter) -> bool:
        if failure.code == _NOT_FOUND:
            return False
        if failure.code in _TRANSIENT and failure.attempts < _WRITE_RETRIES:
            return True
        self.failed += 1
        return False

    def delete(self, reference: BaseDocumentReference, option: WriteOption | None = None,
               attempts: int = 0) -> None:
        super().delete(reference, option=option or self._exists, attempts=attempts)

    def close(self) -> None:
        self.flush()  # type: ignore[no-untyped-call]  # the library leaves flush/close untyped
        super().close()  # type: ignore[no-untyped-call]

    def _send(self, batch: BulkWriteBatch) -> BatchWriteResponse:
        try:
            return super()._send(batch)
        except gexc.GoogleAPIError as error:
            status = getattr(error, "grpc_status_code", None)
            # No gRPC code: the client library's own retry ran out of time (RetryError), DEADLINE_EXCEEDED.
            failed = Status(code=status.value[0] if status is not None else 4, message=type(error).__name__)
            return BatchWriteResponse(write_results=[WriteResult() for _ in range(len(batch))],
                                      status=[failed] * len(batch))

    def raise_if_failed(self) -> None:
        if self.failed:
            raise TransientError(f"{self.failed} documents could not be deleted")


class DocumentEraser:
    def __init__(self, db: Client, initial_ops_per_second: int = 500, max_ops_per_second: int = 10000,
                 chunk_size: int = CHUNK_SIZE):
        self._db = db
        self._chunk_size = chunk_size
        self._options = BulkWriterOptions(initial_ops_per_second=initial_ops_per_second,
                                          max_ops_per_second=max_ops_per_second)

    # -- what to delete ----------------------------------------------------------------------------
    # The sync client's references and queries (the library types them as sync-or-async).
    def _tenant(self, tenant_id: str) -> DocumentReference:
        return self._db.collection(schema.TENANTS).document(tenant_id)

    def _collection(self, tenant_id: str, name: str) -> CollectionReference:
        return cast(CollectionReference, self._tenant(tenant_id).collection(name))

    def _device(self, tenant_id: str, device_id: str) -> DocumentReference:
        return self._collection(tenant_id, schema.DEVICES).document(device_id)

    def _manifest(self, tenant_id: str, file_id: str) -> DocumentReference:
        return self._collection(tenant_id, schema.FILES).document(file_id)

    def _device_manifests(self, tenant_id: str, device_id: str) -> Query:
        return self._collection(tenant_id, schema.FILES).where(filter=FieldFilter("deviceId", "==", device_id))

    def object_names(self, tenant_id: str, device_id: str | None = None) -> dict[str, str | None]:
        """{fileId: objectName} of the tenant's manifests (only the device's when `device_id` is given)."""
        query: CollectionReference | Query = (self._collection(tenant_id, schema.FILES) if device_id is None
                                              else self._device_manifests(tenant_id, device_id))
        names = {}
        for snapshot in query.select(["objectName"]).stream():
            name = (snapshot.to_dict() or {}).get("objectName")
            names[snapshot.id] = name if isinstance(name, str) else None
        return names

    def object_name(self, tenant_id: str, file_id: str) -> tuple[bool, str | None]:
        """(manifest exists, its objectName)."""
        snapshot = self._manifest(tenant_id, file_id).get()
        name = (snapshot.to_dict() or {}).get("objectName") if snapshot.exists else None
        return snapshot.exists, name if isinstance(name, str) else None

    # -- deleting ----------------------------------------------------------------------------------
    def erase_tenant_chunks(self, tenant_id: str, counted: Counter) -> Iterator[None]:
        """Deletes the tenant's documents chunk by chunk, yielding after each chunk has been handed to the
        writer, so the caller can stop between chunks (a time-boxed attempt; stopping waits for what was
        handed over) and a later attempt goes on where this one stopped (what is deleted is no longer
        found). The tenant document goes last: while it says `deleting`, the sweeper can re-drive an
        unfinished deletion."""
        tenant = self._tenant(tenant_id)
        with self._writer(counted) as writer:
            for collection in tenant.collections():
                for chunk in self._chunks(collection):
                    for snapshot in chunk:
                        writer.delete(snapshot.reference)
                    # Never yield over a write given up: continuations would circle around it.
                    writer.raise_if_failed()
                    yield
        if not _documents_under(tenant):
            self._delete(tenant, counted)

    def erase_device(self, tenant_id: str, device_id: str, manifest_ids: Iterable[str], counted: Counter) -> None:
        """The device's manifests, whatever is under the device, and the device document."""
        device = self._device(tenant_id, device_id)
        with self._writer(counted) as writer:
            for file_id in manifest_ids:
                writer.delete(self._manifest(tenant_id, file_id))
            for collection in device.collections():
                for chunk in self._chunks(collection):
                    for snapshot in chunk:
                        writer.delete(snapshot.reference)
        self._delete(device, counted)

    @contextlib.contextmanager
    def _writer(self, counted: Counter) -> Iterator[_ExistingOnlyWriter]:
        """One BulkWriter for a whole attempt, so its 500/50/5 ramp can grow (a writer starts again at
        `initial_ops_per_second`); on leaving, every write it was given has been answered."""
        writer = _ExistingOnlyWriter(self._db, self._options, counted)
        try:
            yield writer
        finally:
            writer.close()
        writer.raise_if_failed()

    def _chunks(self, collection: CollectionReference) -> Iterator[list[DocumentSnapshot[Any]]]:
        """The documents at any depth under `collection`, `chunk_size` at a time (IDs only)."""
        # recursive() orders by document name and bounds the range to this collection's subtree.
        query = collection.recursive().select([FieldPath.document_id()]).limit(self._chunk_size)
        after = None
        while True:
            snapshots = list((query if after is None else query.start_after(after)).stream())
            if snapshots:
                yield snapshots
            if len(snapshots) < self._chunk_size:
                return
            after = snapshots[-1]

    def erase_manifest(self, tenant_id: str, file_id: str, counted: Counter) -> None:
        self._delete(self._manifest(tenant_id, file_id), counted)

    def _delete(self, reference: DocumentReference, counted: Counter) -> None:
        try:
            reference.delete(option=self._db.write_option(exists=True))
        except gexc.NotFound:
            return
        counted(1)

    # -- verifying ---------------------------------------------------------------------------------
    def tenant_left(self, tenant_id: str) -> bool:
        tenant = self._tenant(tenant_id)
        return _documents_under(tenant) or tenant.get().exists

    def device_left(self, tenant_id: str, device_id: str) -> bool:
        device = self._device(tenant_id, device_id)
        return (next(iter(self._device_manifests(tenant_id, device_id).limit(1).get()), None) is not None
                or device.get().exists or _documents_under(device))

    def manifest_left(self, tenant_id: str, file_id: str) -> bool:
        return self._manifest(tenant_id, file_id).get().exists


def _documents_under(reference: DocumentReference) -> bool:
    return any(next(iter(collection.recursive().limit(1).get()), None) is not None
               for collection in reference.collections())
