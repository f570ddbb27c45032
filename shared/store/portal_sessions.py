"""Portal sessions: `tenants/{tenantId}/portalSessions/{sessionId}`, one per sign-in to tenant_portal.

A record holds `role` (what the ID token allowed: an Entra ID directory role or app role that administers the
tenant, or `member`), `createdAt`, `lastUsedAt` and `expiresAt`; nothing about the person. The session ID is
random (128 bits) and only in the visitor's sealed cookie. Deleting the record ends the session at once on
every copy of the cookie; Firestore's TTL policy on `expiresAt` (Terraform) removes records that lapsed; a
tenant's deletion takes them with every other document under the tenant (erasure.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from shared.store import schema
from shared.store.schema import checked

if TYPE_CHECKING:
    from google.cloud.firestore import Client as FirestoreClient
    from google.cloud.firestore_v1 import CollectionReference

_DELETE_BATCH = 500  # Firestore's most writes per batch


@dataclass(frozen=True)
class PortalSessionRecord:
    tenant_id: str
    session_id: str
    role: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime


class PortalSessionRepository:
    def __init__(self, db: FirestoreClient):
        self._db = db

    def _sessions(self, tenant_id: str) -> CollectionReference:
        sessions: CollectionReference = self._db.collection(schema.TENANTS).document(tenant_id).collection(
            schema.PORTAL_SESSIONS)
        return sessions

    def create(self, tenant_id: str, session_id: str, role: str, now: datetime, expires_at: datetime
               ) -> PortalSessionRecord:
        """A new session (`create`: a session ID is never reused)."""
        self._sessions(tenant_id).document(session_id).create(checked(schema.PORTAL_SESSIONS, {
            "role": role, "createdAt": now, "lastUsedAt": now, "expiresAt": expires_at}))
        return PortalSessionRecord(tenant_id, session_id, role, now, now, expires_at)

    def get(self, tenant_id: str, session_id: str) -> PortalSessionRecord | None:
        """The record (one read), or None when there is none or it is not one this code wrote."""
        snapshot = self._sessions(tenant_id).document(session_id).get()
        if not snapshot.exists:
            return None
        document: dict[str, Any] = snapshot.to_dict() or {}
        role, created, used, expires = (document.get(k) for k in ("role", "createdAt", "lastUsedAt", "expiresAt"))
        if not (isinstance(role, str) and isinstance(created, datetime) and isinstance(used, datetime)
                and isinstance(expires, datetime)):
            return None
        return PortalSessionRecord(tenant_id, session_id, role, created, used, expires)

    def touch(self, tenant_id: str, session_id: str, now: datetime, expires_at: datetime) -> bool:
        """Records a use (`lastUsedAt`, the new `expiresAt`); False when the record is gone meanwhile (an update,
        never a write that would bring back a session signed out a moment ago)."""
        try:
            self._sessions(tenant_id).document(session_id).update(checked(schema.PORTAL_SESSIONS, {
                "lastUsedAt": now, "expiresAt": expires_at}))
        except gexc.NotFound:
            return False
        return True

    def delete(self, tenant_id: str, session_id: str) -> None:
        self._sessions(tenant_id).document(session_id).delete()

    def delete_all(self, tenant_id: str) -> int:
        """Deletes every session of the tenant; how many there were."""
        deleted = 0
        while True:
            refs = [s.reference for s in self._sessions(tenant_id).select([]).limit(_DELETE_BATCH).stream()]
            if not refs:
                return deleted
            batch = self._db.batch()
            for ref in refs:
                batch.delete(ref)
            batch.commit()
            deleted += len(refs)

    def listed(self, tenant_id: str, limit: int = 100) -> list[PortalSessionRecord]:
        """The tenant's session records, at most `limit` (lapsed ones included until the TTL policy or the next
        use removes them: the caller decides what is still alive)."""
        records = []
        for snapshot in self._sessions(tenant_id).limit(limit).stream():
            document: dict[str, Any] = snapshot.to_dict() or {}
            role, created, used, expires = (document.get(k) for k in ("role", "createdAt", "lastUsedAt",
                                                                       "expiresAt"))
            if (isinstance(role, str) and isinstance(created, datetime) and isinstance(used, datetime)
                    and isinstance(expires, datetime)):
                records.append(PortalSessionRecord(tenant_id, snapshot.id, role, created, used, expires))
        return records

    def count(self, tenant_id: str) -> int:
        return sum(1 for _ in self._sessions(tenant_id).select([]).stream())
