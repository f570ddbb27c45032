"""Sync leases: how many full syncs of one tenant run at once, across every relay instance.

`tenants/{tenantId}/syncLeases/{leaseId}` holds only `expiresAt`. The lease IDs are the slot numbers
`0` … `limit - 1`, so a tenant never has more lease documents than its limit, and taking a slot is one
atomic write: `create` for a free slot, or an update guarded by the last update time for a lapsed one
(exactly one of two instances racing for it wins). Releasing deletes the lease only if it is still ours
(a lease that lapsed and was taken over by another sync is left alone). A lease whose instance died
lapses at `expiresAt`; Firestore's TTL policy on `expiresAt` (Terraform) removes it later.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from shared.store import schema
from shared.store.schema import checked

if TYPE_CHECKING:
    from google.cloud.firestore import Client as FirestoreClient
    from google.cloud.firestore_v1 import CollectionReference, DocumentSnapshot


@dataclass(frozen=True)
class Lease:
    tenant_id: str
    lease_id: str
    expires_at: datetime
    version: Any  # the update time of our write: the precondition of the release


class SyncLeaseRepository:
    def __init__(self, db: FirestoreClient, shuffle: Callable[[list[Any]], None] = random.shuffle):
        self._db = db
        self._shuffle = shuffle  # spreads concurrent acquisitions over the free slots

    def _slots(self, tenant_id: str) -> CollectionReference:
        tenant = self._db.collection(schema.TENANTS).document(tenant_id)
        slots: CollectionReference = tenant.collection(schema.SYNC_LEASES)
        return slots

    def acquire(self, tenant_id: str, limit: int, now: datetime, seconds: float) -> Lease | None:
        """Takes one of the tenant's `limit` slots until `now + seconds`; None when every slot is held."""
        slots = self._slots(tenant_id)
        refs = [slots.document(str(slot)) for slot in range(limit)]
        held = {s.id: s for s in self._db.get_all(refs, field_paths=["expiresAt"]) if s.exists}
        expires_at = now + timedelta(seconds=seconds)
        document = checked(schema.SYNC_LEASES, {"expiresAt": expires_at})
        order = list(refs)
        self._shuffle(order)
        for ref in order:
            snapshot = held.get(ref.id)
            try:
                if snapshot is None:
                    result = ref.create(document)
                elif _lapsed(snapshot, now):
                    result = ref.update(document, option=self._db.write_option(last_update_time=snapshot.update_time))
                else:
                    continue
            except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
                continue  # another sync took this slot first (or it was just released): try the next
            return Lease(tenant_id, ref.id, expires_at, result.update_time)
        return None

    def renew(self, lease: Lease, now: datetime, seconds: float) -> Lease | None:
        """Extends our lease to `now + seconds`; None when it is not ours any more (lapsed and taken over)."""
        expires_at = now + timedelta(seconds=seconds)
        document = checked(schema.SYNC_LEASES, {"expiresAt": expires_at})
        ref = self._slots(lease.tenant_id).document(lease.lease_id)
        try:
            result = ref.update(document, option=self._db.write_option(last_update_time=lease.version))
        except (gexc.FailedPrecondition, gexc.NotFound):
            return None
        return Lease(lease.tenant_id, lease.lease_id, expires_at, result.update_time)

    def release(self, lease: Lease) -> None:
        """Frees the slot, unless it lapsed and another sync holds it now."""
        with contextlib.suppress(gexc.FailedPrecondition, gexc.NotFound):
            self._slots(lease.tenant_id).document(lease.lease_id).delete(
                option=self._db.write_option(last_update_time=lease.version))

    def held(self, tenant_id: str, now: datetime) -> int:
        """How many slots are held right now (lapsed leases do not count)."""
        return sum(1 for s in self._slots(tenant_id).stream() if not _lapsed(s, now))


def _lapsed(snapshot: DocumentSnapshot[Any], now: datetime) -> bool:
    expires_at = (snapshot.to_dict() or {}).get("expiresAt")
    return not isinstance(expires_at, datetime) or expires_at <= now
