"""Sync admission: at most `RELAY_FULL_SYNCS_PER_TENANT` full syncs of one tenant at once, across every
relay instance (docs/capacity.md).

A full sync pages the tenant's whole directory from Graph, which allows each app a fixed resource-unit
budget per tenant; a rollout morning (thousands of phones of one tenant starting at once) would otherwise
run into Graph's 429s and end streams with errors. So every full round of `/users/delta` (a first sync,
and one that starts from an expired delta token or changed settings) first takes a lease; when none is
free the app gets `503` problem+json `sync-busy` with a jittered `Retry-After` of 5–120 s before the first
byte, and tries again later. Incremental syncs (a few changes, one page mostly) are never limited.

The lease is taken before the first byte (ContactRelayService._started) and released when the stream ends
(completed, error, disconnect); a lease of an instance that died lapses after LEASE_SECONDS.
"""
from __future__ import annotations

import random
from collections.abc import Callable

from shared import logs
from shared.clock import Clock
from shared.errors import ServiceUnavailable
from shared.store.leases import Lease, SyncLeaseRepository

log = logs.get_logger(__name__)

# The relay's timeout is 540 s (Terraform): no stream outlives it, so a lease outliving it belongs to a
# dead instance.
LEASE_SECONDS = 600.0
RETRY_AFTER_RANGE = (5.0, 120.0)


class SyncAdmission:
    def __init__(self, leases: SyncLeaseRepository, limit: int, clock: Clock, lease_seconds: float = LEASE_SECONDS,
                 jitter: Callable[[float, float], float] = random.uniform):
        self._leases = leases
        self._limit = limit
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._jitter = jitter

    def admit(self, tenant_id: str) -> Lease:
        """A lease for one full sync of the tenant, or ServiceUnavailable `sync-busy` (nothing streamed)."""
        lease = self._leases.acquire(tenant_id, self._limit, self._clock(), self._lease_seconds)
        if lease is None:
            # Jittered, so phones refused together do not come back together.
            retry_after = self._jitter(*RETRY_AFTER_RANGE)
            log.info("full sync refused: tenant at its limit", tenantId=tenant_id, limit=self._limit,
                     retryAfter=round(retry_after))
            raise ServiceUnavailable("too many full syncs of this tenant are running; try again later",
                                     retry_after=retry_after, slug="sync-busy")
        return lease

    def release(self, lease: Lease) -> None:
        try:
            self._leases.release(lease)
        except Exception:  # noqa: BLE001 - the lease lapses on its own; the sync itself went fine
            log.warning("sync lease not released; it lapses on its own", tenantId=lease.tenant_id)
