"""Deletion requests: the message contract of topic `deletion-requests`, its parser and its publisher."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.errors import PoisonMessage
from shared.ids import is_canonical_id
from shared.store.schema import DeletionKind

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient

_TARGET_KEY = {DeletionKind.TENANT: None, DeletionKind.DEVICE: "deviceId", DeletionKind.FILE: "fileId"}
MAX_MESSAGE_BYTES = 4096
MAX_CONTINUATION = 2**31 - 1  # far beyond any deletion (one continuation per DELETION_ATTEMPT_SECONDS)


@dataclass(frozen=True)
class DeletionRequest:
    kind: DeletionKind
    tenant_id: str
    request_id: str
    target_id: str | None = None  # deviceId or fileId
    continuation: int = 0  # 0: the request itself; n > 0: the n-th continuation of a long deletion

    @property
    def type(self) -> str:
        return f"{self.kind}.delete"

    def next_continuation(self) -> DeletionRequest:
        """The same request (same requestId, so the same receipt), continued by the next attempt."""
        return dataclasses.replace(self, continuation=self.continuation + 1)

    def with_request_id(self, request_id: str) -> DeletionRequest:
        return dataclasses.replace(self, request_id=request_id)

    def subject_text(self) -> str:
        return f"{self.kind}:{self.tenant_id}" + (f":{self.target_id}" if self.target_id else "")

    def to_message(self) -> bytes:
        body: dict[str, str | int] = {"type": self.type, "tenantId": self.tenant_id, "requestId": self.request_id}
        target_key = _TARGET_KEY.get(self.kind)
        if self.target_id and target_key:
            body[target_key] = self.target_id
        if self.continuation:
            body["continuation"] = self.continuation
        return json.dumps(body, separators=(",", ":")).encode()


def receipt_subject(receipt_key: bytes, request: DeletionRequest) -> str:
    """Hex HMAC-SHA256 of "{kind}:{tenantId}[:{id}]": proves what was deleted without keeping the IDs."""
    return hmac.new(receipt_key, request.subject_text().encode(), hashlib.sha256).hexdigest()


def tenant_subject(receipt_key: bytes, tenant_id: str) -> str:
    """Hex HMAC-SHA256 of "tenant:{tenantId}": lists a tenant's receipts (any kind) without its ID in clear."""
    return hmac.new(receipt_key, f"tenant:{tenant_id}".encode(), hashlib.sha256).hexdigest()


def parse_deletion_message(data: bytes) -> DeletionRequest:
    """Decodes one message; anything that is not exactly a valid request is PoisonMessage."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise PoisonMessage("message too large")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise PoisonMessage("message is not UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise PoisonMessage("message is not a JSON object")
    kind_type = body.get("type")
    kind = kind_type[:-len(".delete")] if isinstance(kind_type, str) and kind_type.endswith(".delete") else None
    if kind not in _TARGET_KEY:
        raise PoisonMessage("unknown message type")
    kind = DeletionKind(kind)
    for key in ("tenantId", "requestId"):
        if not is_canonical_id(body.get(key)):
            raise PoisonMessage(f"{key} missing or not a canonical UUID")
    target_key = _TARGET_KEY[kind]
    target = None
    if target_key:
        target = body.get(target_key)
        if not is_canonical_id(target):
            raise PoisonMessage(f"{target_key} missing or not a canonical UUID")
    continuation = body.get("continuation", 0)
    if "continuation" in body and not (type(continuation) is int and 0 < continuation <= MAX_CONTINUATION):
        raise PoisonMessage("continuation is not a positive integer")
    return DeletionRequest(kind, body["tenantId"], body["requestId"], target, continuation)


class DeletionPublisher:
    """Publishes deletion requests and waits for the server's acknowledgement."""

    def __init__(self, publisher: PublisherClient, project: str, topic: str, timeout: float = 30.0):
        self._publisher = publisher
        self._topic_path = publisher.topic_path(project, topic)
        self._timeout = timeout

    def publish(self, request: DeletionRequest) -> str:
        return self.publish_many([request])[0]

    def publish_many(self, requests: Iterable[DeletionRequest]) -> list[str]:
        futures = [self._publisher.publish(self._topic_path, r.to_message(), type=r.type) for r in requests]
        return [future.result(timeout=self._timeout) for future in futures]

