"""Accepting deletion requests, the one place that does it: the pending receipt first (readable at
once), then the message (docs/architecture.md, "Deletion requests").

Used by every caller: the app's unregister, the operators' revoke and tenant deletion, the sweeper.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.clock import Clock
from shared.errors import TransientError
from shared.events import DeletionPublisher, DeletionRequest, receipt_subject, tenant_subject
from shared.store import Store
from shared.store.records import AuditEvent
from shared.store.schema import DeletionKind


@dataclass(frozen=True)
class Accepted:
    """What `request_many` did: requests published, and those left out because their receipt was
    already completed or belongs to another subject (publishing again would change nothing)."""
    published: int
    skipped: int


class DeletionRequester:
    def __init__(self, store: Store, publisher: DeletionPublisher, receipt_key: bytes, clock: Clock,
                 new_request_id: Callable[[], str]):
        self._receipts, self._tenants = store.receipts, store.tenants
        self._publisher = publisher
        self._receipt_key = receipt_key
        self._clock = clock
        self._new_request_id = new_request_id

    def request(self, kind: DeletionKind, tenant_id: str, target_id: str | None = None,
                audit: AuditEvent | None = None) -> str:
        """A new request for a device or file (a fresh requestId); returns the requestId. `audit`: the event
        of the request (an administrator's or operator's revoke), written with the receipt."""
        request = DeletionRequest(kind, tenant_id, self._new_request_id(), target_id)
        self._receipts.create_pending(request.request_id, request.kind, self._subject(request), self._clock(),
                                      self._tenant_subject(tenant_id),
                                      (tenant_id, audit) if audit is not None else None)
        self._publish([request])
        return request.request_id

    def request_tenant(self, tenant_id: str, audit: Callable[[str], AuditEvent] | None = None) -> str:
        """Marks the tenant `deleting` with its pending receipt (one transaction), then publishes.

        A tenant already being deleted keeps its first requestId; its request is published again, so a
        lost publish is healed by asking again. `audit` makes the event of the request from its requestId;
        it is written in the same transaction, only by the request that marks the tenant.
        """
        request = DeletionRequest(DeletionKind.TENANT, tenant_id, self._new_request_id())
        request_id, _ = self._tenants.request_deletion(tenant_id, request.request_id, self._clock(),
                                                       self._subject(request), self._tenant_subject(tenant_id),
                                                       audit(request.request_id) if audit is not None else None)
        self._publish([request.with_request_id(request_id)])
        return request_id

    def request_many(self, requests: list[DeletionRequest]) -> Accepted:
        """Requests with IDs chosen by the caller (e.g. deterministic ones): receipts in one batch, then
        one publish batch for those not done already. At most 500 requests."""
        if not requests:
            return Accepted(0, 0)
        subjects = {r.request_id: (r.kind, self._subject(r), self._tenant_subject(r.tenant_id)) for r in requests}
        receipts = self._receipts.create_pending_many(subjects, self._clock())
        due = [r for r in requests
               if receipts[r.request_id].subject == subjects[r.request_id][1] and not receipts[r.request_id].completed]
        self._publish(due)
        return Accepted(len(due), len(requests) - len(due))

    def _subject(self, request: DeletionRequest) -> str:
        return receipt_subject(self._receipt_key, request)

    def _tenant_subject(self, tenant_id: str) -> str:
        return tenant_subject(self._receipt_key, tenant_id)

    def _publish(self, requests: list[DeletionRequest]) -> None:
        if not requests:
            return
        try:
            self._publisher.publish_many(requests)
        except Exception as error:  # the receipts stay pending; the caller (or the next sweep) may retry
            raise TransientError("the deletion request could not be published") from error
