"""CloudEvent entry point `handle_deletion` (push subscription on `deletion-requests`).

Returning acknowledges the message; raising makes Pub/Sub redeliver it (and, once the delivery attempts
are used up, move it to `deletion-requests-dead-letter`). So: poison is logged and returned, anything
else is raised.
"""
from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING

import functions_framework
from cloudevents.http import CloudEvent

from shared import logs
from shared.clock import utc_now
from shared.errors import PoisonMessage, TransientError, reason_slug
from shared.events import DeletionRequest, parse_deletion_message
from shared.store.schema import DeletionKind
from shared.wiring import components

if TYPE_CHECKING:
    from functions.handle_deletion.service import DeletionService
    from shared.config import Settings
    from shared.store import Store

FUNCTION = "handle_deletion"
log = logs.get_logger(__name__)


@components(FUNCTION)
def deletion_service(config: Settings, store: Store) -> DeletionService:
    from functions.handle_deletion.service import DeletionService
    from shared import wiring

    return DeletionService(store, config.receipt_key, utc_now, wiring.deletion_publisher(config),
                           config.deletion_attempt_seconds)


PUBSUB_MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


def message_data(cloud_event: CloudEvent) -> bytes:
    """The Pub/Sub message's payload, base64-decoded strictly; PoisonMessage if there is none or the
    event is not a Pub/Sub message-published event (only those may delete anything)."""
    if cloud_event.get("type") != PUBSUB_MESSAGE_PUBLISHED:
        raise PoisonMessage("event is not a Pub/Sub message-published event")
    data = cloud_event.data
    message = data.get("message") if isinstance(data, dict) else None
    encoded = message.get("data") if isinstance(message, dict) else None
    if not isinstance(encoded, str) or not encoded:
        raise PoisonMessage("event carries no Pub/Sub message data")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PoisonMessage("message data is not base64") from None


def _message_id(cloud_event: CloudEvent) -> str | None:
    message = cloud_event.data.get("message") if isinstance(cloud_event.data, dict) else None
    value = message.get("messageId") if isinstance(message, dict) else None
    return value if isinstance(value, str) and value.isdigit() and len(value) <= 32 else None


@functions_framework.cloud_event
def handle_deletion(cloud_event: CloudEvent) -> None:
    started = time.perf_counter()
    message_id = _message_id(cloud_event)
    request = None
    try:
        request = parse_deletion_message(message_data(cloud_event))
        outcome = deletion_service().delete(request)
    except PoisonMessage as error:
        # Acknowledged: redelivery could never succeed. The reason is our own text, never the payload.
        log.error("poison deletion request acknowledged; nothing deleted", function=FUNCTION,
                  reason=reason_slug(error), messageId=message_id, **_ids(request))
        return
    except Exception as error:
        log.exception("deletion failed; Pub/Sub will redeliver", function=FUNCTION, messageId=message_id,
                      reason=reason_slug(error) if isinstance(error, TransientError) else None, **_ids(request))
        raise
    message = ("deletion continues in a new attempt" if outcome.continued
               else "deletion already completed" if outcome.already_completed else "deletion completed")
    log.info(message, function=FUNCTION, documents=outcome.documents, files=outcome.files,
             verified=outcome.verified, continuation=request.continuation, messageId=message_id,
             durationMs=round((time.perf_counter() - started) * 1000, 1), **_ids(request))


def _ids(request: DeletionRequest | None) -> dict[str, str | None]:
    """The validated IDs of a request, for its log lines (nothing from an unparsed payload)."""
    if request is None:
        return {}
    return {"kind": request.kind, "requestId": request.request_id, "tenantId": request.tenant_id,
            "deviceId": request.target_id if request.kind == DeletionKind.DEVICE else None,
            "fileId": request.target_id if request.kind == DeletionKind.FILE else None}
