"""Firestore side of a cascading deletion: documents at any depth, counted exactly, safe to repeat.

Deletes use the precondition `exists`, so a document deleted meanwhile by a duplicate delivery fails with
NOT_FOUND, which is success and is not counted twice. Write rate (Firestore's 500/50/5 rule): the
BulkWriter starts at `initial_ops_per_second` and grows by 50 % every 5 minutes up to
`max_ops_per_second` (docs/architecture.md, "Configuration").
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_writer import BulkWriter, BulkWriterOptions
from google.cloud.firestore_v1.field_path import FieldPath

from shared.errors import TransientError
from shared.store import schema

Counter = Callable[[int], None]  # told how many documents went; called from BulkWriter threads too

_NOT_FOUND = 5  # google.rpc.Code.NOT_FOUND: the document was already gone (precondition `exists`)
_WRITE_ATTEMPTS = 5  # per document, then verification notices and Pub/Sub redelivers
CHUNK_SIZE = 1000  # documents per chunk: about 2 s at the initial 500 writes/s, so an attempt stops on time


class _ExistingOnlyWriter(BulkWriter):
    """`Client.recursive_delete` calls `delete(reference)`; this adds the precondition `exists`."""

    def __init__(self, client, options: BulkWriterOptions, counted: Counter):
        super().__init__(client, options)
        self._exists = client.write_option(exists=True)
        self.failed = 0  # deletes given up after _WRITE_ATTEMPTS (not found is not a failure)
        self.on_write_result(lambda reference, result, writer: counted(1))
        self.on_write_error(self._retry)

    def _retry(self, failure, writer) -> bool:
        if failure.code == _NOT_FOUND:
            return False
        if failure.attempts < _WRITE_ATTEMPTS:
            return True
        self.failed += 1
        return False

    def delete(self, reference, option=None):
        return super().delete(reference, option=option or self._exists)


class DocumentEraser:
    def __init__(self, db, initial_ops_per_second: int = 500, max_ops_per_second: int = 10000,
                 chunk_size: int = CHUNK_SIZE):
        self._db = db
        self._chunk_size = chunk_size
        self._options = BulkWriterOptions(initial_ops_per_second=initial_ops_per_second,
                                          max_ops_per_second=max_ops_per_second)

    # -- what to delete ----------------------------------------------------------------------------
    def _tenant(self, tenant_id: str):
        return self._db.collection(schema.TENANTS).document(tenant_id)

    def _device(self, tenant_id: str, device_id: str):
        return self._tenant(tenant_id).collection(schema.DEVICES).document(device_id)

    def _manifest(self, tenant_id: str, file_id: str):
        return self._tenant(tenant_id).collection(schema.FILES).document(file_id)

    def _device_manifests(self, tenant_id: str, device_id: str):
        return self._tenant(tenant_id).collection(schema.FILES).where(
            filter=FieldFilter("deviceId", "==", device_id))

    def object_names(self, tenant_id: str, device_id: str | None = None) -> dict[str, str | None]:
        """{fileId: objectName} of the tenant's manifests (only the device's when `device_id` is given)."""
        query = (self._tenant(tenant_id).collection(schema.FILES) if device_id is None
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
        """Deletes the tenant's documents chunk by chunk, yielding after each chunk has been written, so
        the caller can stop between chunks (a time-boxed attempt) and a later attempt goes on where this
        one stopped (what is deleted is no longer found). The tenant document goes last: while it says
        `deleting`, the sweeper can re-drive an unfinished deletion."""
        tenant = self._tenant(tenant_id)
        for collection in tenant.collections():
            # recursive() orders by document name and bounds the range to this collection's subtree.
            query = collection.recursive().select([FieldPath.document_id()]).limit(self._chunk_size)
            after = None
            while True:
                snapshots = list((query if after is None else query.start_after(after)).stream())
                if snapshots:
                    # A writer per chunk: a BulkWriter sends nothing more once flushed (its executor is shut down).
                    writer = _ExistingOnlyWriter(self._db, self._options, counted)
                    for snapshot in snapshots:
                        writer.delete(snapshot.reference)
                    writer.close()
                    if writer.failed:
                        # Never yield over a chunk that could not go: continuations would circle around it.
                        raise TransientError(f"{writer.failed} documents could not be deleted")
                    yield
                if len(snapshots) < self._chunk_size:
                    break
                after = snapshots[-1]
        if not _documents_under(tenant):
            self._delete(tenant, counted)

    def erase_device(self, tenant_id: str, device_id: str, manifest_ids: Iterable[str], counted: Counter) -> None:
        """The device's manifests, whatever is under the device, and the device document."""
        for file_id in manifest_ids:
            self._delete(self._manifest(tenant_id, file_id), counted)
        device = self._device(tenant_id, device_id)
        for collection in device.collections():
            self._db.recursive_delete(collection, bulk_writer=_ExistingOnlyWriter(self._db, self._options, counted))
        self._delete(device, counted)

    def erase_manifest(self, tenant_id: str, file_id: str, counted: Counter) -> None:
        self._delete(self._manifest(tenant_id, file_id), counted)

    def _delete(self, reference, counted: Counter) -> None:
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


def _documents_under(reference) -> bool:
    return any(next(iter(collection.recursive().limit(1).get()), None) is not None
               for collection in reference.collections())
