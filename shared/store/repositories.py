"""Firestore repositories for tenants, devices, file manifests, deletion receipts and audit events.

This package is the only code that touches Firestore. Every write passes `schema.checked`, so nothing
outside the data model can be stored; every read returns plain values (`shared.store.records`).
Callers pass validated IDs only (shared.ids); the repositories build document paths from them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.base_query import BaseQuery, FieldFilter
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.transaction import Transaction

from shared.errors import Conflict, Forbidden, NotFound, TooManyRequests, TransientError
from shared.ids import is_canonical_id
from shared.store import schema
from shared.store.records import (
    AuditEvent,
    AuditPage,
    Device,
    Due,
    DuePage,
    FileManifest,
    Receipt,
    Registration,
    Tenant,
)
from shared.store.schema import (
    ActorKind,
    AuditAction,
    DeletionKind,
    FileFormat,
    FileOwner,
    ReceiptStatus,
    TenantStatus,
    checked,
)

# Writes that may meet a transaction's lock: Aborted means nothing was written, so retrying is safe (the
# client's default retry of a commit, ResourceExhausted and ServiceUnavailable, leaves Aborted out).
_CONTENDED = Retry(predicate=if_exception_type(gexc.Aborted, gexc.ResourceExhausted, gexc.ServiceUnavailable),
                   initial=0.05, maximum=1.0, multiplier=2.0, timeout=30.0)
# A transaction Firestore aborted (contention: a read that waited too long for a lock, or a commit that lost
# to another transaction) wrote nothing, so it runs again from the start. The client library retries only an
# aborted commit, five times without a pause, and never an aborted read (python-firestore issue 879).
_ABORTED_AGAIN = Retry(predicate=if_exception_type(gexc.Aborted), initial=0.05, maximum=1.0, multiplier=2.0,
                       timeout=10.0)


_P = ParamSpec("_P")
_R = TypeVar("_R")
_E = TypeVar("_E", bound=Enum)


def _transactional(apply: Callable[Concatenate[Transaction, _P], _R]) -> Callable[Concatenate[Transaction, _P], _R]:
    """`firestore.transactional` with the wrapped function's own signature (the library's is untyped)."""
    return cast(Callable[Concatenate[Transaction, _P], _R], firestore.transactional(apply))


def _transaction(db: firestore.Client, apply: Callable[Concatenate[Transaction, _P], _R],
                 *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Runs a `@_transactional` function in a new transaction, again while Firestore aborts it;
    TransientError when it is still contended after 10 s. Other errors propagate."""
    def attempt() -> _R:
        try:
            return apply(db.transaction(), *args, **kwargs)
        except ValueError as error:  # "Failed to commit transaction in 5 attempts"
            if isinstance(error.__cause__, gexc.Aborted):
                raise gexc.Aborted(str(error)) from error  # type: ignore[no-untyped-call]
            raise

    try:
        return _ABORTED_AGAIN(attempt)()
    except gexc.RetryError as error:
        raise TransientError("the transaction stayed contended") from error


def _transaction_or_contended(db: firestore.Client, apply: Callable[[Transaction], _R],
                              contended: Callable[[], _R]) -> _R:
    """`_transaction`; when it stayed contended (e.g. duplicate deliveries at once), asks `contended`
    what the outcome is instead."""
    try:
        return _transaction(db, apply)
    except TransientError:
        return contended()


def _enum(kind: type[_E], value: object) -> _E | None:
    try:
        return kind(value)
    except ValueError:
        return None


def _tenant(tenant_id: str, document: Mapping[str, Any] | None) -> Tenant:
    document = document or {}
    return Tenant(tenant_id, document.get("name", ""), _enum(TenantStatus, document.get("status")),
                  document.get("createdAt"), dict(document.get("settings") or {}),
                  document.get("deletionRequestId"), document.get("deletionRequestedAt"))


def _device(device_id: str, document: Mapping[str, Any] | None) -> Device:
    document = document or {}
    return Device(device_id, document.get("registeredAt"), document.get("lastSeenAt"))


def _manifest(file_id: str, document: Mapping[str, Any] | None) -> FileManifest:
    document = document or {}
    return FileManifest(file_id, document.get("objectName"), _enum(FileFormat, document.get("format")),
                        _enum(FileOwner, document.get("owner")), document.get("deviceId"),
                        document.get("createdAt"), document.get("deleteAfter"))


def _receipt(request_id: str, document: Mapping[str, Any] | None) -> Receipt:
    document = document or {}
    deleted = document.get("deleted") or {}
    return Receipt(request_id, _enum(DeletionKind, document.get("kind")), document.get("subject", ""),
                   _enum(ReceiptStatus, document.get("status")), document.get("requestedAt"),
                   document.get("completedAt"), int(deleted.get("documents", 0)), int(deleted.get("files", 0)),
                   bool(document.get("verified")), document.get("tenantSubject"), document.get("progressAt"))


def _audit_event(event_id: str, document: Mapping[str, Any] | None) -> AuditEvent:
    document = document or {}
    return AuditEvent(event_id, document.get("at"), _enum(AuditAction, document.get("action")),
                      document.get("target"), _enum(ActorKind, document.get("actorKind")),
                      str(document.get("actorRole", "")), str(document.get("session", "")),
                      document.get("expiresAt"))


def _audit_document(event: AuditEvent) -> dict[str, Any]:
    return checked(schema.AUDIT_EVENTS, {"at": event.at, "action": event.action, "target": event.target,
                                         "actorKind": event.actor_kind, "actorRole": event.actor_role,
                                         "session": event.session, "expiresAt": event.expires_at})


def _diagnostics_used(document: Mapping[str, Any] | None, day: str) -> int:
    """Uploads the device made on `day` (a count of another day means none yet)."""
    document = document or {}
    count = document.get("diagnosticsCount")
    return count if document.get("diagnosticsDay") == day and isinstance(count, int) and count > 0 else 0


def _pending_receipt_document(kind: DeletionKind, subject: str, now: datetime,
                              tenant_subject: str | None = None) -> dict[str, Any]:
    document = {"kind": kind, "subject": subject, "status": ReceiptStatus.PENDING, "requestedAt": now,
                "completedAt": None, "deleted": {"documents": 0, "files": 0}, "verified": False}
    if tenant_subject is not None:  # lists the receipt under its tenant (tenant_portal) without the ID in clear
        document["tenantSubject"] = tenant_subject
    return checked(schema.RECEIPTS, document)


def _deleting(request_id: str, now: datetime) -> dict[str, Any]:
    return checked(schema.TENANTS, {"status": TenantStatus.DELETING, "deletionRequestId": request_id,
                                    "deletionRequestedAt": now})


def _due_pages(query: BaseQuery, page_size: int, max_pages: int, collection: str,
               deadline_of: Callable[[DocumentSnapshot[Any]], Any]) -> Iterator[DuePage]:
    """Pages of a collection-group deadline query as plain values, at most `max_pages` of them."""
    after = None
    for _ in range(max_pages):
        page_query = query.limit(page_size) if after is None else query.start_after(after).limit(page_size)
        snapshots: list[Any] = list(page_query.stream())  # type: ignore[arg-type]  # sync client: a plain generator
        if not snapshots:
            return
        due, skipped = [], 0
        for snapshot in snapshots:
            ids = _owner_ids(snapshot.reference.path, collection)
            deadline = deadline_of(snapshot)
            if ids is None or not isinstance(deadline, datetime):
                skipped += 1
            else:
                due.append(Due(ids[0], ids[1], deadline))
        yield DuePage(due, skipped)
        if len(snapshots) < page_size:
            return
        after = snapshots[-1]


def _owner_ids(path: str, collection: str) -> tuple[str, str] | None:
    """(tenantId, id) of tenants/{tenantId}/{collection}/{id}; None for a path outside the data model."""
    parts = path.split("/")
    if (len(parts) != 4 or parts[0] != schema.TENANTS or parts[2] != collection
            or not is_canonical_id(parts[1]) or not is_canonical_id(parts[3])):
        return None
    return parts[1], parts[3]


class _Paths:
    """Document references built from validated IDs (shared by the repositories of this package)."""

    def __init__(self, db: firestore.Client):
        self.db = db

    def tenant(self, tenant_id: str) -> DocumentReference:
        return self.db.collection(schema.TENANTS).document(tenant_id)

    def devices(self, tenant_id: str) -> CollectionReference:
        return cast(CollectionReference, self.tenant(tenant_id).collection(schema.DEVICES))

    def files(self, tenant_id: str) -> CollectionReference:
        return cast(CollectionReference, self.tenant(tenant_id).collection(schema.FILES))

    def rate_window(self, tenant_id: str, window: str) -> DocumentReference:
        return self.collection_of(tenant_id, schema.RATE_WINDOWS).document(window)

    def collection_of(self, tenant_id: str, collection: str) -> CollectionReference:
        return cast(CollectionReference, self.tenant(tenant_id).collection(collection))

    def receipt(self, request_id: str) -> DocumentReference:
        return self.db.collection(schema.RECEIPTS).document(request_id)

    def audit_event(self, tenant_id: str, event: AuditEvent) -> tuple[DocumentReference, dict[str, Any]]:
        """Where the event of a change goes, and what is stored (written with the change it records)."""
        return self.collection_of(tenant_id, schema.AUDIT_EVENTS).document(event.event_id), _audit_document(event)

    def tenant_in(self, tenant_id: str, transaction: Transaction | None) -> Tenant | None:
        snapshot = self.tenant(tenant_id).get(transaction=transaction)
        return _tenant(tenant_id, snapshot.to_dict()) if snapshot.exists else None

    def active_tenant_in(self, tenant_id: str, transaction: Transaction | None) -> Tenant:
        tenant = self.tenant_in(tenant_id, transaction)
        if tenant is None or not tenant.active:
            raise Forbidden("tenant is not onboarded or not active", slug="tenant-not-active")
        return tenant


class TenantRepository:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._paths = _Paths(db)

    def create(self, tenant_id: str, name: str, settings: dict[str, Any], now: datetime,
               audit: AuditEvent | None = None) -> Tenant:
        """Creates the tenant (409 if it exists), with the audit event of the onboarding in the same batch."""
        document = checked(schema.TENANTS, {"name": name, "status": TenantStatus.ACTIVE, "createdAt": now,
                                            "settings": settings})
        batch = self._db.batch()
        batch.create(self._paths.tenant(tenant_id), document)
        if audit is not None:
            batch.create(*self._paths.audit_event(tenant_id, audit))
        try:
            batch.commit()
        except gexc.Conflict:
            raise Conflict("tenant already exists", slug="tenant-exists") from None
        return _tenant(tenant_id, document)

    def get(self, tenant_id: str) -> Tenant | None:
        return self._paths.tenant_in(tenant_id, None)

    def page(self, page_size: int, after: str | None) -> tuple[list[Tenant], str | None]:
        """Up to `page_size` tenants in ID order after the tenant ID `after`, and the ID to continue after
        (None on the last page). One query of page_size + 1 documents, so the cost grows with the page."""
        collection = self._db.collection(schema.TENANTS)
        query = collection.order_by("__name__").limit(page_size + 1)
        if after:
            query = query.start_after({"__name__": collection.document(after)})
        snapshots = list(query.stream())
        tenants = [_tenant(s.id, s.to_dict()) for s in snapshots[:page_size]]
        return tenants, (tenants[-1].tenant_id if len(snapshots) > page_size else None)

    def update(self, tenant_id: str, changes: dict[str, Any],
               audited: Callable[[Tenant], AuditEvent | None] = lambda before: None) -> Tenant:
        """Applies `changes` unless the tenant is missing (404) or being deleted (409); the event `audited`
        makes of the tenant as it was (None: nothing changed) is written in the same transaction."""
        changes = checked(schema.TENANTS, changes)
        ref = self._paths.tenant(tenant_id)

        @_transactional
        def apply(transaction: Transaction) -> Tenant:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                raise NotFound("tenant not found", slug="tenant-not-found")
            document = snapshot.to_dict() or {}
            if document.get("status") != TenantStatus.ACTIVE:
                raise Conflict("tenant is being deleted", slug="tenant-deleting")
            event = audited(_tenant(tenant_id, document))
            if changes:
                transaction.update(ref, changes)
            if event is not None:
                transaction.create(*self._paths.audit_event(tenant_id, event))
            document.update(changes)
            return _tenant(tenant_id, document)

        return _transaction(self._db, apply)

    def request_deletion(self, tenant_id: str, request_id: str, now: datetime, subject: str,
                         tenant_subject: str | None = None, audit: AuditEvent | None = None) -> tuple[str, bool]:
        """Marks the tenant `deleting` and writes the pending receipt (and the audit event) in one transaction.

        Returns (requestId, created). A tenant already being deleted keeps its first request ID, so a
        repeated DELETE neither forks receipts nor loses the original request.
        """

        @_transactional
        def apply(transaction: Transaction) -> tuple[str, bool]:
            tenant = self._paths.tenant_in(tenant_id, transaction)
            if tenant is None:
                raise NotFound("tenant not found", slug="tenant-not-found")
            if tenant.status == TenantStatus.DELETING:
                return str(tenant.deletion_request_id), False
            transaction.update(self._paths.tenant(tenant_id), _deleting(request_id, now))
            transaction.create(self._paths.receipt(request_id),
                               _pending_receipt_document(DeletionKind.TENANT, subject, now, tenant_subject))
            if audit is not None:
                transaction.create(*self._paths.audit_event(tenant_id, audit))
            return request_id, True

        return _transaction(self._db, apply)

    def mark_deleting(self, tenant_id: str, request_id: str, now: datetime) -> bool:
        """Sets `deleting` if the tenant still exists and is active; returns whether the tenant exists."""

        @_transactional
        def apply(transaction: Transaction) -> bool:
            tenant = self._paths.tenant_in(tenant_id, transaction)
            if tenant is None:
                return False
            if tenant.status != TenantStatus.DELETING:
                transaction.update(self._paths.tenant(tenant_id), _deleting(request_id, now))
            return True

        def contended() -> bool:
            # Duplicate deliveries marking the same tenant at once: if one got through, the tenant is marked.
            tenant = self.get(tenant_id)
            if tenant is None:
                return False
            if tenant.status == TenantStatus.DELETING:
                return True
            raise TransientError("the tenant could not be marked for deletion") from None

        return _transaction_or_contended(self._db, apply, contended)

    def stuck_deletions(self, requested_before: datetime, limit: int) -> list[Tenant]:
        """Tenants in `deleting` since before `requested_before` (at most `limit`)."""
        query = (self._db.collection(schema.TENANTS)
                 .where(filter=FieldFilter("status", "==", TenantStatus.DELETING.value))
                 .where(filter=FieldFilter("deletionRequestedAt", "<", requested_before))
                 .limit(limit))
        return [_tenant(snapshot.id, snapshot.to_dict()) for snapshot in query.stream()]


class DeviceRepository:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._paths = _Paths(db)

    def register(self, tenant_id: str, device_id: str, now: datetime, max_devices: int,
                 admit_new: Callable[[], None] = lambda: None) -> Registration:
        """Creates or refreshes a device in the transaction that checks the tenant is active.

        A tenant deletion marks the tenant before it lists devices, and this transaction reads the
        tenant document, so a registration racing a deletion either lands before the listing or fails.
        Refreshing a registered device is never limited; a new one is first put to `admit_new` (the
        abuse limits, which raise to refuse) and then to the tenant's quota.
        """
        device_ref = self._paths.devices(tenant_id).document(device_id)

        @_transactional
        def apply(transaction: Transaction, count_checked: bool) -> Registration | None:
            self._paths.active_tenant_in(tenant_id, transaction)
            existing = device_ref.get(transaction=transaction)
            if existing.exists:
                transaction.update(device_ref, checked(schema.DEVICES, {"lastSeenAt": now}))
                return Registration(existing.get("registeredAt"), False)
            if not count_checked:
                return None
            transaction.create(device_ref, checked(schema.DEVICES, {"registeredAt": now, "lastSeenAt": now}))
            return Registration(now, True)

        result = _transaction(self._db, apply, False)
        if result is not None:
            return result
        admit_new()
        # New device: the quota is checked with an aggregation count (approximate under races, as allowed).
        if self.count(tenant_id) >= max_devices:
            raise TooManyRequests("the tenant's device quota is reached", slug="device-quota")
        registered = _transaction(self._db, apply, True)
        assert registered is not None  # with the count checked, apply creates or refreshes
        return registered

    def registrations_in_window(self, tenant_id: str, window: str) -> int:
        """New devices counted in the tenant's rate window `window` (UTC minute YYYYMMDDHHMM)."""
        snapshot = self._paths.rate_window(tenant_id, window).get()
        count = snapshot.get("count") if snapshot.exists else 0
        return count if isinstance(count, int) else 0

    def count_registration(self, tenant_id: str, window: str, expires_at: datetime) -> None:
        """Adds one new device to the window with a blind increment (no read, no transaction), so
        concurrent registrations of all instances add up without contending for the document."""
        self._paths.rate_window(tenant_id, window).set(
            checked(schema.RATE_WINDOWS, {"count": firestore.Increment(1), "expiresAt": expires_at}), merge=True,
            retry=_CONTENDED)

    def reserve_diagnostics(self, tenant_id: str, device_id: str, day: str, per_day: int,
                            retry_after: float) -> None:
        """Takes one of the device's diagnostics slots of the UTC day `day` (YYYY-MM-DD), in a transaction.

        404 if the device is not registered; 429 `diagnostics-rate` if the day's slots are used up.
        """
        device_ref = self._paths.devices(tenant_id).document(device_id)

        @_transactional
        def apply(transaction: Transaction) -> None:
            snapshot = device_ref.get(transaction=transaction)
            if not snapshot.exists:
                raise NotFound("device is not registered in this tenant", slug="device-not-found")
            used = _diagnostics_used(snapshot.to_dict(), day)
            if used >= per_day:
                raise TooManyRequests("the device's diagnostics uploads for today are used up",
                                      slug="diagnostics-rate", retry_after=retry_after)
            transaction.update(device_ref, checked(schema.DEVICES, {"diagnosticsDay": day,
                                                                     "diagnosticsCount": used + 1}))

        _transaction(self._db, apply)

    def release_diagnostics(self, tenant_id: str, device_id: str, day: str) -> None:
        """Gives back a slot taken by `reserve_diagnostics` for an upload that did not complete."""
        device_ref = self._paths.devices(tenant_id).document(device_id)

        @_transactional
        def apply(transaction: Transaction) -> None:
            snapshot = device_ref.get(transaction=transaction)
            if snapshot.exists and _diagnostics_used(snapshot.to_dict(), day) > 0:
                transaction.update(device_ref, checked(schema.DEVICES, {
                    "diagnosticsCount": _diagnostics_used(snapshot.to_dict(), day) - 1}))

        _transaction(self._db, apply)

    def get(self, tenant_id: str, device_id: str) -> Device | None:
        snapshot = self._paths.devices(tenant_id).document(device_id).get()
        return _device(device_id, snapshot.to_dict()) if snapshot.exists else None

    def count(self, tenant_id: str) -> int:
        """How many devices the tenant has (an aggregation query: no document is read)."""
        devices: Any = self._paths.devices(tenant_id)  # the library leaves count() untyped
        return int(devices.count().get()[0][0].value)

    def touch(self, tenant_id: str, device_id: str, now: datetime) -> bool:
        """Updates lastSeenAt; never re-creates a deleted device. Returns False if it is gone."""
        try:
            self._paths.devices(tenant_id).document(device_id).update(
                checked(schema.DEVICES, {"lastSeenAt": now}))
        except gexc.NotFound:
            return False
        return True

    def page(self, tenant_id: str, page_size: int, after: str | None) -> tuple[list[Device], str | None]:
        """Up to `page_size` devices in ID order after the device ID `after`, and the next page's token."""
        collection = self._paths.devices(tenant_id)
        query = collection.order_by("__name__").limit(page_size + 1)
        if after:
            query = query.start_after({"__name__": collection.document(after)})
        snapshots = list(query.stream())
        more = len(snapshots) > page_size
        devices = [_device(s.id, s.to_dict()) for s in snapshots[:page_size]]
        return devices, (devices[-1].device_id if more else None)

    def inactive(self, seen_before: datetime, page_size: int, max_pages: int) -> Iterator[DuePage]:
        """Devices of every tenant silent since `seen_before` (collection-group query on lastSeenAt);
        an entry's deadline is its `lastSeenAt`."""
        query = (self._db.collection_group(schema.DEVICES)
                 .where(filter=FieldFilter("lastSeenAt", "<", seen_before)).order_by("lastSeenAt"))
        return _due_pages(query, page_size, max_pages, schema.DEVICES, lambda s: s.get("lastSeenAt"))


class FileRepository:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._paths = _Paths(db)

    def create_if_owner_active(self, tenant_id: str, file_id: str, manifest: dict[str, Any],
                               device_id: str | None = None) -> None:
        """Writes a manifest only while the tenant is active (and, for device files, the device exists)."""
        file_ref = self._paths.files(tenant_id).document(file_id)
        manifest = checked(schema.FILES, manifest)

        @_transactional
        def apply(transaction: Transaction) -> None:
            self._paths.active_tenant_in(tenant_id, transaction)
            if device_id is not None:
                device = self._paths.devices(tenant_id).document(device_id)
                if not device.get(transaction=transaction).exists:
                    raise NotFound("device is not registered", slug="device-not-found")
            transaction.create(file_ref, manifest)

        _transaction(self._db, apply)

    def owner_active(self, tenant_id: str, device_id: str | None = None) -> bool:
        """Whether the tenant is still active (and the device still registered) right now."""
        tenant = self._paths.tenant_in(tenant_id, None)
        if tenant is None or not tenant.active:
            return False
        if device_id is None:
            return True
        return self._paths.devices(tenant_id).document(device_id).get().exists

    def get(self, tenant_id: str, file_id: str) -> FileManifest | None:
        snapshot = self._paths.files(tenant_id).document(file_id).get()
        return _manifest(file_id, snapshot.to_dict()) if snapshot.exists else None

    def delete(self, tenant_id: str, file_id: str) -> None:
        self._paths.files(tenant_id).document(file_id).delete()

    def list(self, tenant_id: str, limit: int = 1000) -> list[FileManifest]:
        query = self._paths.files(tenant_id).order_by("__name__").limit(limit)
        return [_manifest(s.id, s.to_dict()) for s in query.stream()]

    def expired(self, now: datetime, page_size: int, max_pages: int) -> Iterator[DuePage]:
        """Manifests of every tenant past `deleteAfter` (collection-group query on the indexed field)."""
        query = (self._db.collection_group(schema.FILES)
                 .where(filter=FieldFilter("deleteAfter", "<", now)).order_by("deleteAfter"))
        return _due_pages(query, page_size, max_pages, schema.FILES, lambda s: s.get("deleteAfter"))

    def manifested(self, candidates: dict[str, tuple[str, str]]) -> set[str]:
        """Of {objectName: (tenantId, fileId)}, the names that the manifest they point at really names."""
        if not candidates:
            return set()
        refs = {name: self._paths.files(tenant_id).document(file_id)
                for name, (tenant_id, file_id) in candidates.items()}
        found = {s.reference.path: s.get("objectName")
                 for s in self._db.get_all(list(refs.values()), field_paths=["objectName"]) if s.exists}
        return {name for name, ref in refs.items() if found.get(ref.path) == name}


class ReceiptRepository:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._paths = _Paths(db)

    def get(self, request_id: str) -> Receipt | None:
        snapshot = self._paths.receipt(request_id).get()
        return _receipt(request_id, snapshot.to_dict()) if snapshot.exists else None

    def create_pending(self, request_id: str, kind: DeletionKind, subject: str, now: datetime,
                       tenant_subject: str | None = None,
                       audit: tuple[str, AuditEvent] | None = None) -> Receipt:
        """Creates the pending receipt, or returns the existing one (which the caller checks for subject).
        `audit` (tenantId, event): the event of the request, in the same batch as the new receipt."""
        document = _pending_receipt_document(kind, subject, now, tenant_subject)
        try:
            if audit is None:
                self._paths.receipt(request_id).create(document)
            else:
                batch = self._db.batch()
                batch.create(self._paths.receipt(request_id), document)
                batch.create(*self._paths.audit_event(*audit))
                batch.commit()
            return _receipt(request_id, document)
        except gexc.Conflict:
            existing = self.get(request_id)
            return existing if existing is not None else _receipt(request_id, document)

    def create_pending_many(self, subjects: Mapping[str, tuple[DeletionKind, str, str | None]], now: datetime
                            ) -> dict[str, Receipt]:
        """Pending receipts for {requestId: (kind, subject, tenantSubject)} (at most 500) in one batch; returns the
        receipt each request has now: the new one, or the one that already existed."""
        refs = [self._paths.receipt(request_id) for request_id in subjects]
        existing = {s.id: _receipt(s.id, s.to_dict()) for s in self._db.get_all(refs) if s.exists}
        missing = [request_id for request_id in subjects if request_id not in existing]
        created = {request_id: _pending_receipt_document(*subjects[request_id][:2], now, *subjects[request_id][2:])
                   for request_id in missing}
        if created:
            batch = self._db.batch()
            for request_id, document in created.items():
                batch.create(self._paths.receipt(request_id), document)
            try:
                batch.commit()
            except gexc.Conflict:  # a concurrent writer created some of them: one by one, keeping theirs
                return {**existing, **{request_id: self.create_pending(request_id, *subjects[request_id][:2], now,
                                                                       *subjects[request_id][2:])
                                       for request_id in missing}}
        return {**existing, **{request_id: _receipt(request_id, document)
                               for request_id, document in created.items()}}

    def for_tenant(self, tenant_subject: str, limit: int = 100) -> list[Receipt]:
        """The newest receipts (at most `limit`) listed under `tenantSubject` (composite index
        tenantSubject + requestedAt, declared in Terraform)."""
        query = (self._db.collection(schema.RECEIPTS)
                 .where(filter=FieldFilter("tenantSubject", "==", tenant_subject))
                 .order_by("requestedAt", direction=firestore.Query.DESCENDING).limit(limit))
        return [_receipt(s.id, s.to_dict()) for s in query.stream()]

    def add_counts(self, request_id: str, documents: int = 0, files: int = 0, now: datetime | None = None) -> None:
        """Adds an attempt's counts (increments: concurrent attempts never lose each other's) and, with
        `now`, records it as the receipt's `progressAt`."""
        changes: dict[str, Any] = {"progressAt": now} if now is not None else {}
        if documents or files:
            changes.update({"deleted.documents": firestore.Increment(documents),
                            "deleted.files": firestore.Increment(files)})
        if changes:
            # A blind update, retried when the emulator or Firestore aborts it for a lock another attempt's
            # transaction holds on the receipt (duplicate deliveries completing it at the same moment).
            self._paths.receipt(request_id).update(checked(schema.RECEIPTS, changes), retry=_CONTENDED)

    def progressed(self, request_id: str, now: datetime) -> None:
        """An attempt started: `progressAt` tells the sweeper this deletion is not stuck."""
        self.add_counts(request_id, now=now)

    def progress(self, request_ids: list[str]) -> dict[str, datetime | None]:
        """{requestId: progressAt} of the receipts that exist (None where no attempt recorded progress)."""
        refs = [self._paths.receipt(request_id) for request_id in request_ids]
        return {s.id: (s.to_dict() or {}).get("progressAt")
                for s in self._db.get_all(refs, field_paths=["progressAt"]) if s.exists}

    def complete(self, request_id: str, verified: bool, now: datetime) -> bool:
        """Completes a pending receipt, once: returns False when another attempt completed it first."""
        ref = self._paths.receipt(request_id)

        @_transactional
        def apply(transaction: Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists and snapshot.get("status") == ReceiptStatus.COMPLETED:
                return False
            transaction.update(ref, checked(schema.RECEIPTS, {
                "status": ReceiptStatus.COMPLETED, "completedAt": now, "verified": verified, "progressAt": now}))
            return True

        def contended() -> bool:
            # Duplicate attempts completing at once: if one got through, this one did not.
            receipt = self.get(request_id)
            if receipt is not None and receipt.completed:
                return False
            raise TransientError("the receipt could not be completed") from None

        return _transaction_or_contended(self._db, apply, contended)



class AuditRepository:
    """Reads a tenant's audit trail (its events are written by the repositories making the changes) and
    records the events that change nothing stored (a sign-in)."""

    def __init__(self, db: firestore.Client):
        self._db = db
        self._paths = _Paths(db)

    def record_if_active(self, tenant_id: str, event: AuditEvent) -> bool:
        """Writes `event` if the tenant exists and is active (in a transaction that reads it, so no event is
        left under a tenant being deleted or never onboarded); returns whether it was written."""

        @_transactional
        def apply(transaction: Transaction) -> bool:
            tenant = self._paths.tenant_in(tenant_id, transaction)
            if tenant is None or not tenant.active:
                return False
            transaction.create(*self._paths.audit_event(tenant_id, event))
            return True

        return _transaction(self._db, apply)

    def page(self, tenant_id: str, page_size: int, after: tuple[datetime, str] | None = None) -> AuditPage:
        """Up to `page_size` events of the tenant, newest first (ties by event ID), after the position
        `after` (an event's time and ID). One query of page_size + 1 documents."""
        collection = self._paths.collection_of(tenant_id, schema.AUDIT_EVENTS)
        query = (collection.order_by("at", direction=firestore.Query.DESCENDING)
                 .order_by("__name__", direction=firestore.Query.DESCENDING).limit(page_size + 1))
        if after is not None:
            query = query.start_after({"at": after[0], "__name__": collection.document(after[1])})
        snapshots = list(query.stream())
        events = [_audit_event(s.id, s.to_dict()) for s in snapshots[:page_size]]
        last_at = events[-1].at if len(snapshots) > page_size else None
        return AuditPage(events, (last_at, events[-1].event_id) if isinstance(last_at, datetime) else None)
