"""What the repositories return: plain values, never Firestore references or snapshots."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.store.schema import ActorKind, AuditAction, DeletionKind, FileFormat, FileOwner, ReceiptStatus, TenantStatus


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    status: TenantStatus | None  # None: a stored value outside the schema's enum
    created_at: datetime | None
    settings: dict[str, Any] = field(default_factory=dict)
    deletion_request_id: str | None = None
    deletion_requested_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == TenantStatus.ACTIVE


@dataclass(frozen=True)
class Device:
    device_id: str
    registered_at: datetime | None
    last_seen_at: datetime | None


@dataclass(frozen=True)
class Registration:
    registered_at: datetime
    created: bool


@dataclass(frozen=True)
class FileManifest:
    file_id: str
    object_name: str | None
    format: FileFormat | None
    owner: FileOwner | None
    device_id: str | None
    created_at: datetime | None
    delete_after: datetime | None


@dataclass(frozen=True)
class Receipt:
    request_id: str
    kind: DeletionKind | None  # None: a stored value outside the schema's enum
    subject: str
    status: ReceiptStatus | None
    requested_at: datetime | None = None
    completed_at: datetime | None = None
    documents: int = 0
    files: int = 0
    verified: bool = False
    tenant_subject: str | None = None
    progress_at: datetime | None = None  # when an attempt last started or recorded counts

    @property
    def completed(self) -> bool:
        return self.status == ReceiptStatus.COMPLETED


@dataclass(frozen=True)
class Due:
    """A file or device of `tenant_id` whose deadline has passed (found by a collection-group query)."""
    tenant_id: str
    target_id: str
    deadline: datetime


@dataclass(frozen=True)
class DuePage:
    """One page of a deadline query: the valid entries, and how many documents had to be skipped
    (a path or deadline outside the data model; they are never acted on)."""
    due: list[Due]
    skipped: int


@dataclass(frozen=True)
class AuditEvent:
    """One change to a tenant, as its audit trail records it: when, what, on what, which kind of actor with
    which role, in which portal session (a random ID; operators: "operator"). Never who the person was."""
    event_id: str
    at: datetime | None  # None: a stored value outside the data model
    action: AuditAction | None  # None: a stored value outside the schema's enum
    target: str | None
    actor_kind: ActorKind | None
    actor_role: str
    session: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class AuditPage:
    """Events newest first, and the position to continue after (None on the last page)."""
    events: list[AuditEvent]
    after: tuple[datetime, str] | None
