"""Sync admission: at most `RELAY_FULL_SYNCS_PER_TENANT` shared rounds of one tenant at once, across every
relay instance (docs/capacity.md).

A full sync pages the tenant's whole directory from Graph, which allows each app a fixed resource-unit
budget per tenant. The phones of one instance share that read (rounds.py): the phone that starts a feed of
rounds first takes a lease, the phones joining it take none. When the tenant has no lease left the app gets
`503` problem+json `sync-busy` with a jittered `Retry-After` of 5–120 s before the first byte, and tries
again later. Incremental syncs (a few changes, one page mostly) are never limited.

The lease is taken before the first byte (rounds.Feed.begin), kept over the feed's consecutive rounds
(renewed once half its time has passed) and released when the feed stops reading; a lease of an instance
that died lapses after LEASE_SECONDS.
"""
from __future__ import annotations

import random
from collections.abc import Callable

from shared import logs
from shared.clock import Clock
from shared.errors import ServiceUnavailable
from shared.store.leases import Lease, SyncLeaseRepository

log = logs.get_logger(__name__)

# The relay's timeout is 3,600 s (Terraform, the 2nd gen HTTP maximum): no stream outlives it and a feed
# renews its lease while it runs, so a lease outliving it belongs to a dead instance.
LEASE_SECONDS = 3660.0
RETRY_AFTER_RANGE = (5.0, 120.0)


class SyncAdmission:
    def __init__(self, leases: SyncLeaseRepository, limit: int, clock: Clock, lease_seconds: float = LEASE_SECONDS,
                 jitter: Callable[[float, float], float] = random.uniform):
        self._leases = leases
        self._limit = limit
        self._clock = clock
        self.lease_seconds = lease_seconds
        self._jitter = jitter

    def admit(self, tenant_id: str) -> Lease:
        """A lease for one full sync of the tenant, or ServiceUnavailable `sync-busy` (nothing streamed)."""
        lease = self._leases.acquire(tenant_id, self._limit, self._clock(), self.lease_seconds)
        if lease is None:
            # Jittered, so phones refused together do not come back together.
            retry_after = self._jitter(*RETRY_AFTER_RANGE)
            log.info("full sync refused: tenant at its limit", tenantId=tenant_id, limit=self._limit,
                     retryAfter=round(retry_after))
            raise ServiceUnavailable("too many full syncs of this tenant are running; try again later",
                                     retry_after=retry_after, slug="sync-busy")
        return lease

    def renew(self, lease: Lease) -> Lease:
        """The same lease for another LEASE_SECONDS (a feed that reads on); kept as it is when that fails."""
        try:
            renewed = self._leases.renew(lease, self._clock(), self.lease_seconds)
        except Exception:  # noqa: BLE001 - the stream goes on; at worst the lease lapses early
            renewed = None
        if renewed is None:
            log.warning("sync lease not renewed", tenantId=lease.tenant_id)
            return lease
        return renewed

    def release(self, lease: Lease) -> None:
        try:
            self._leases.release(lease)
        except Exception:  # noqa: BLE001 - the lease lapses on its own; the sync itself went fine
            log.warning("sync lease not released; it lapses on its own", tenantId=lease.tenant_id)
