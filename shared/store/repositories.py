"""Firestore repositories for tenants, devices, file manifests and deletion receipts.

Every write passes `schema.checked`, so nothing outside the data model can be stored. Callers pass
validated IDs only (shared.ids); the repositories build document paths from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.errors import Conflict, Forbidden, NotFound, TooManyRequests
from shared.store import schema
from shared.store.schema import checked


def timestamp(value: Any) -> str | None:
    """A stored time as RFC 3339 UTC text ("…Z"), as the HTTP views show it."""
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else None


class TenantRepository:
    def __init__(self, db: firestore.Client):
        self._db = db

    def ref(self, tenant_id: str):
        return self._db.collection(schema.TENANTS).document(tenant_id)

    def create(self, tenant_id: str, name: str, settings: dict[str, Any], now: datetime) -> dict[str, Any]:
        document = checked(schema.TENANTS, {"name": name, "status": "active", "createdAt": now,
                                            "settings": settings})
        try:
            self.ref(tenant_id).create(document)
        except gexc.Conflict:
            raise Conflict("tenant already exists", slug="tenant-exists") from None
        return document

    def get(self, tenant_id: str, transaction=None) -> dict[str, Any] | None:
        snapshot = self.ref(tenant_id).get(transaction=transaction)
        return snapshot.to_dict() if snapshot.exists else None

    def update(self, tenant_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Applies `changes` unless the tenant is missing (404) or being deleted (409)."""
        changes = checked(schema.TENANTS, changes)

        @firestore.transactional
        def apply(transaction):
            tenant = self.get(tenant_id, transaction)
            if tenant is None:
                raise NotFound("tenant not found", slug="tenant-not-found")
            if tenant["status"] != "active":
                raise Conflict("tenant is being deleted", slug="tenant-deleting")
            if changes:
                transaction.update(self.ref(tenant_id), changes)
            tenant.update(changes)
            return tenant

        return apply(self._db.transaction())

    def request_deletion(self, tenant_id: str, request_id: str, now: datetime,
                         receipt: dict[str, Any]) -> tuple[str, bool]:
        """Marks the tenant `deleting` and writes the pending receipt in one transaction.

        Returns (requestId, created). A tenant already being deleted keeps its first request ID, so a
        repeated DELETE neither forks receipts nor loses the original request.
        """
        receipts = self._db.collection(schema.RECEIPTS)

        @firestore.transactional
        def apply(transaction):
            tenant = self.get(tenant_id, transaction)
            if tenant is None:
                raise NotFound("tenant not found", slug="tenant-not-found")
            if tenant["status"] == "deleting":
                return tenant["deletionRequestId"], False
            transaction.update(self.ref(tenant_id), checked(schema.TENANTS, {
                "status": "deleting", "deletionRequestId": request_id, "deletionRequestedAt": now}))
            transaction.create(receipts.document(request_id), checked(schema.RECEIPTS, receipt))
            return request_id, True

        return apply(self._db.transaction())

    def mark_deleting(self, tenant_id: str, request_id: str, now: datetime) -> bool:
        """Sets `deleting` if the tenant still exists and is active; returns whether the tenant exists."""

        @firestore.transactional
        def apply(transaction):
            tenant = self.get(tenant_id, transaction)
            if tenant is None:
                return False
            if tenant["status"] != "deleting":
                transaction.update(self.ref(tenant_id), checked(schema.TENANTS, {
                    "status": "deleting", "deletionRequestId": request_id, "deletionRequestedAt": now}))
            return True

        return apply(self._db.transaction())

    def stuck_deletions(self, requested_before: datetime, limit: int) -> Iterator[tuple[str, dict[str, Any]]]:
        query = (self._db.collection(schema.TENANTS)
                 .where(filter=FieldFilter("status", "==", "deleting"))
                 .where(filter=FieldFilter("deletionRequestedAt", "<", requested_before))
                 .limit(limit))
        for snapshot in query.stream():
            yield snapshot.id, snapshot.to_dict()


@dataclass(frozen=True)
class Registration:
    registered_at: datetime
    created: bool


class DeviceRepository:
    def __init__(self, db: firestore.Client, tenants: TenantRepository):
        self._db = db
        self._tenants = tenants

    def collection(self, tenant_id: str):
        return self._tenants.ref(tenant_id).collection(schema.DEVICES)

    def register(self, tenant_id: str, device_id: str, now: datetime, max_devices: int) -> Registration:
        """Creates or refreshes a device in the transaction that checks the tenant is active.

        A tenant deletion marks the tenant before it lists devices, and this transaction reads the
        tenant document, so a registration racing a deletion either lands before the listing or fails.
        """
        device_ref = self.collection(tenant_id).document(device_id)

        @firestore.transactional
        def apply(transaction, count_checked: bool):
            tenant = self._tenants.get(tenant_id, transaction)
            if tenant is None or tenant.get("status") != "active":
                raise Forbidden("tenant is not onboarded or not active", slug="tenant-not-active")
            existing = device_ref.get(transaction=transaction)
            if existing.exists:
                transaction.update(device_ref, checked(schema.DEVICES, {"lastSeenAt": now}))
                return Registration(existing.get("registeredAt"), False)
            if not count_checked:
                return None
            transaction.create(device_ref, checked(schema.DEVICES, {"registeredAt": now, "lastSeenAt": now}))
            return Registration(now, True)

        result = apply(self._db.transaction(), False)
        if result is not None:
            return result
        # New device: the quota is checked with an aggregation count (approximate under races, as allowed).
        count = self.collection(tenant_id).count().get()[0][0].value
        if count >= max_devices:
            raise TooManyRequests("the tenant's device quota is reached", slug="device-quota")
        return apply(self._db.transaction(), True)

    def get(self, tenant_id: str, device_id: str) -> dict[str, Any] | None:
        snapshot = self.collection(tenant_id).document(device_id).get()
        return snapshot.to_dict() if snapshot.exists else None

    def touch(self, tenant_id: str, device_id: str, now: datetime) -> bool:
        """Updates lastSeenAt; never re-creates a deleted device. Returns False if it is gone."""
        try:
            self.collection(tenant_id).document(device_id).update(checked(schema.DEVICES, {"lastSeenAt": now}))
        except gexc.NotFound:
            return False
        return True

    def page(self, tenant_id: str, page_size: int, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
        query = self.collection(tenant_id).order_by("__name__").limit(page_size + 1)
        if after:
            query = query.start_after({"__name__": self.collection(tenant_id).document(after)})
        snapshots = list(query.stream())
        more = len(snapshots) > page_size
        snapshots = snapshots[:page_size]
        devices = [{"deviceId": s.id, "registeredAt": timestamp(s.get("registeredAt")),
                    "lastSeenAt": timestamp(s.get("lastSeenAt"))} for s in snapshots]
        return devices, (snapshots[-1].id if more else None)

    def inactive(self, seen_before: datetime, limit: int, after=None):
        """Devices of every tenant silent since `seen_before` (collection-group query on lastSeenAt)."""
        query = (self._db.collection_group(schema.DEVICES)
                 .where(filter=FieldFilter("lastSeenAt", "<", seen_before))
                 .order_by("lastSeenAt").limit(limit))
        if after is not None:
            query = query.start_after(after)
        return list(query.stream())


class FileRepository:
    def __init__(self, db: firestore.Client, tenants: TenantRepository):
        self._db = db
        self._tenants = tenants

    def collection(self, tenant_id: str):
        return self._tenants.ref(tenant_id).collection(schema.FILES)

    def create(self, tenant_id: str, file_id: str, manifest: dict[str, Any]) -> None:
        self.collection(tenant_id).document(file_id).create(checked(schema.FILES, manifest))

    def create_if_tenant_active(self, tenant_id: str, file_id: str, manifest: dict[str, Any],
                                device_id: str | None = None) -> None:
        """Writes a manifest only while the tenant is active (and, for device files, the device exists)."""
        file_ref = self.collection(tenant_id).document(file_id)
        manifest = checked(schema.FILES, manifest)

        @firestore.transactional
        def apply(transaction):
            tenant = self._tenants.get(tenant_id, transaction)
            if tenant is None or tenant.get("status") != "active":
                raise Forbidden("tenant is not onboarded or not active", slug="tenant-not-active")
            if device_id is not None:
                device = self._tenants.ref(tenant_id).collection(schema.DEVICES).document(device_id)
                if not device.get(transaction=transaction).exists:
                    raise NotFound("device is not registered", slug="device-not-found")
            transaction.create(file_ref, manifest)

        apply(self._db.transaction())

    def owner_active(self, tenant_id: str, device_id: str | None = None) -> bool:
        """Whether the tenant is still active (and the device still registered) right now."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None or tenant.get("status") != "active":
            return False
        if device_id is None:
            return True
        return self._tenants.ref(tenant_id).collection(schema.DEVICES).document(device_id).get().exists

    def get(self, tenant_id: str, file_id: str) -> dict[str, Any] | None:
        snapshot = self.collection(tenant_id).document(file_id).get()
        return snapshot.to_dict() if snapshot.exists else None

    def delete(self, tenant_id: str, file_id: str) -> None:
        self.collection(tenant_id).document(file_id).delete()

    def list(self, tenant_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        query = self.collection(tenant_id).order_by("__name__").limit(limit)
        return [{"fileId": s.id, "format": s.get("format"), "owner": s.get("owner"),
                 "createdAt": timestamp(s.get("createdAt")), "deleteAfter": timestamp(s.get("deleteAfter"))}
                for s in query.stream()]

    def expired(self, now: datetime, limit: int, after=None):
        query = (self._db.collection_group(schema.FILES)
                 .where(filter=FieldFilter("deleteAfter", "<", now))
                 .order_by("deleteAfter").limit(limit))
        if after is not None:
            query = query.start_after(after)
        return list(query.stream())


class ReceiptRepository:
    def __init__(self, db: firestore.Client):
        self._db = db

    def ref(self, request_id: str):
        return self._db.collection(schema.RECEIPTS).document(request_id)

    def get(self, request_id: str) -> dict[str, Any] | None:
        snapshot = self.ref(request_id).get()
        return snapshot.to_dict() if snapshot.exists else None

    def create_pending(self, request_id: str, kind: str, subject: str, now: datetime) -> dict[str, Any]:
        """Creates the pending receipt, or returns the existing one (which the caller checks for subject)."""
        document = pending_receipt(kind, subject, now)
        try:
            self.ref(request_id).create(document)
            return document
        except gexc.Conflict:
            existing = self.get(request_id)
            return existing if existing is not None else document

    def add_counts(self, request_id: str, documents: int = 0, files: int = 0) -> None:
        if documents or files:
            self.ref(request_id).update(checked(schema.RECEIPTS, {
                "deleted.documents": firestore.Increment(documents),
                "deleted.files": firestore.Increment(files)}))

    def complete(self, request_id: str, verified: bool, now: datetime) -> None:
        self.ref(request_id).update(checked(schema.RECEIPTS, {
            "status": "completed", "completedAt": now, "verified": verified}))


def pending_receipt(kind: str, subject: str, now: datetime) -> dict[str, Any]:
    return checked(schema.RECEIPTS, {"kind": kind, "subject": subject, "status": "pending",
                                     "requestedAt": now, "completedAt": None,
                                     "deleted": {"documents": 0, "files": 0}, "verified": False})


def receipt_view(request_id: str, receipt: dict[str, Any]) -> dict[str, Any]:
    return {"requestId": request_id, "kind": receipt["kind"], "status": receipt["status"],
            "requestedAt": timestamp(receipt.get("requestedAt")), "completedAt": timestamp(receipt.get("completedAt")),
            "deleted": {"documents": int(receipt.get("deleted", {}).get("documents", 0)),
                        "files": int(receipt.get("deleted", {}).get("files", 0))},
            "verified": bool(receipt.get("verified"))}

