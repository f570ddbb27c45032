"""Accepting a deletion request: the pending receipt first (readable at once), then the message."""
from __future__ import annotations

from shared.clock import Clock
from shared.errors import TransientError
from shared.events import DeletionPublisher, DeletionRequest, receipt_subject
from shared.store.repositories import ReceiptRepository


class DeletionRequester:
    def __init__(self, receipts: ReceiptRepository, publisher: DeletionPublisher, receipt_key: bytes,
                 clock: Clock):
        self._receipts = receipts
        self._publisher = publisher
        self._receipt_key = receipt_key
        self._clock = clock

    def subject(self, request: DeletionRequest) -> str:
        return receipt_subject(self._receipt_key, request)

    def request(self, request: DeletionRequest) -> str:
        self._receipts.create_pending(request.request_id, request.kind, self.subject(request), self._clock())
        self.publish(request)
        return request.request_id

    def publish(self, request: DeletionRequest) -> None:
        try:
            self._publisher.publish(request)
        except Exception as error:  # the receipt stays pending; the caller may retry
            raise TransientError("the deletion request could not be published") from error
