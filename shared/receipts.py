"""A deletion receipt as the operator API and the portal's JSON download show it: what was deleted and
whether the check after it found nothing; never its keyed subjects, never an ID in clear beyond the request."""
from __future__ import annotations

from typing import Any

from shared.clock import timestamp
from shared.store.records import Receipt


def receipt_view(receipt: Receipt) -> dict[str, Any]:
    return {"requestId": receipt.request_id, "kind": receipt.kind, "status": receipt.status,
            "requestedAt": timestamp(receipt.requested_at), "completedAt": timestamp(receipt.completed_at),
            "deleted": {"documents": receipt.documents, "files": receipt.files}, "verified": receipt.verified}
