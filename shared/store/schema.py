"""The data model: the only collections and fields that may exist, and the values of its enumerations.

See docs/architecture.md, "Data model". Every write goes through `checked`, so a field outside this list
is refused in code before it can be stored. The data-inventory test checks the emulator against its own
copy of the model. Statuses, kinds and formats are the enums below, used by every module (kept
import-light: handlers import this at cold start).
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

TENANTS = "tenants"
DEVICES = "devices"
FILES = "files"
RECEIPTS = "deletionReceipts"
RATE_WINDOWS = "rateWindows"  # tenants/{tenantId}/rateWindows/{UTC minute YYYYMMDDHHMM}
SYNC_LEASES = "syncLeases"  # tenants/{tenantId}/syncLeases/{leaseId}: full syncs running (relay admission)
AUDIT_EVENTS = "auditEvents"  # tenants/{tenantId}/auditEvents/{eventId}: who-did-what without anyone's identity
PORTAL_SESSIONS = "portalSessions"  # tenants/{tenantId}/portalSessions/{sessionId}: portal sign-ins


class TenantStatus(StrEnum):
    ACTIVE = "active"
    DELETING = "deleting"


class ReceiptStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"


class DeletionKind(StrEnum):
    """What a deletion request deletes; also the first part of its event type (`tenant.delete`)."""
    TENANT = "tenant"
    DEVICE = "device"
    FILE = "file"


class AuditAction(StrEnum):
    """What an audit event records (docs/architecture.md, "Audit trail")."""
    DEVICE_REVOKE = "device.revoke"
    SETTINGS_UPDATE = "settings.update"
    TENANT_DELETE_REQUEST = "tenant.delete.request"
    TENANT_ONBOARD = "tenant.onboard"
    PORTAL_SIGNIN = "portal.signin"


class ActorKind(StrEnum):
    """Who made an audited change: a tenant administrator in the portal, or an operator (manage_tenants)."""
    ADMIN = "admin"
    OPERATOR = "operator"


class FileOwner(StrEnum):
    TENANT = "tenant"
    DEVICE = "device"


class FileFormat(StrEnum):
    JSON = "json"
    XML = "xml"
    CSV = "csv"

    @property
    def content_type(self) -> str:
        """The media type a stored object of this format carries."""
        return _OBJECT_CONTENT_TYPES[self]


# The one file-format map: media types accepted for technical files, and the format each one means.
CONTENT_TYPES: dict[str, FileFormat] = {"application/json": FileFormat.JSON, "application/xml": FileFormat.XML,
                                        "text/xml": FileFormat.XML, "text/csv": FileFormat.CSV}
_OBJECT_CONTENT_TYPES = {FileFormat.JSON: "application/json", FileFormat.XML: "application/xml",
                         FileFormat.CSV: "text/csv"}

RELAY_FIELDS = ("displayName", "givenName", "surname", "jobTitle", "department", "companyName", "mail",
                "mobilePhone", "businessPhones", "officeLocation")

TENANT_FIELDS = frozenset({"name", "status", "createdAt", "settings", "deletionRequestId",
                           "deletionRequestedAt"})
TENANT_SETTINGS_FIELDS = frozenset({"fields", "defaultRegion", "scope", "photos"})
# Directory scope (`settings.scope`): which users the relay sends. A tenant without it gets these defaults
# (disabled and guest accounts leave the phones on purpose); `groups` empty = the whole directory.
SCOPE_FIELDS = ("groups", "excludeDisabled", "excludeGuests", "requirePhone")
SCOPE_FLAGS = ("excludeDisabled", "excludeGuests", "requirePhone")
DEFAULT_SCOPE: dict[str, Any] = {"groups": [], "excludeDisabled": True, "excludeGuests": True, "requirePhone": False}
MAX_SCOPE_GROUPS = 20  # checkMemberGroups checks at most 20 groups per call (docs/architecture.md, "Directory scope")
DEFAULT_PHOTOS = True


def effective_scope(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The tenant's scope with defaults for what is not set (a fresh dict, groups a fresh list)."""
    scope = {**DEFAULT_SCOPE, **(settings.get("scope") or {})}
    scope["groups"] = list(scope["groups"])
    return scope


def photos_enabled(settings: Mapping[str, Any]) -> bool:
    return bool(settings.get("photos", DEFAULT_PHOTOS))
DEVICE_FIELDS = frozenset({"registeredAt", "lastSeenAt", "diagnosticsDay", "diagnosticsCount"})
FILE_FIELDS = frozenset({"objectName", "format", "owner", "deviceId", "createdAt", "deleteAfter"})
RECEIPT_FIELDS = frozenset({"kind", "subject", "status", "requestedAt", "completedAt", "deleted", "verified",
                            "tenantSubject", "progressAt"})
RECEIPT_DELETED_FIELDS = frozenset({"documents", "files"})
RATE_WINDOW_FIELDS = frozenset({"count", "expiresAt"})
SYNC_LEASE_FIELDS = frozenset({"expiresAt"})
# Nothing that identifies a person: `session` is the portal session's random ID (operators: "operator"),
# `target` a device ID, changed settings keys or a request ID, never a value (docs/architecture.md).
AUDIT_EVENT_FIELDS = frozenset({"at", "action", "target", "actorKind", "actorRole", "session", "expiresAt"})
PORTAL_SESSION_FIELDS = frozenset({"role", "createdAt", "lastUsedAt", "expiresAt"})

_NESTED = {
    (TENANTS, "settings"): TENANT_SETTINGS_FIELDS,
    (RECEIPTS, "deleted"): RECEIPT_DELETED_FIELDS,
}
_TOP = {TENANTS: TENANT_FIELDS, DEVICES: DEVICE_FIELDS, FILES: FILE_FIELDS, RECEIPTS: RECEIPT_FIELDS,
        RATE_WINDOWS: RATE_WINDOW_FIELDS, SYNC_LEASES: SYNC_LEASE_FIELDS, AUDIT_EVENTS: AUDIT_EVENT_FIELDS,
        PORTAL_SESSIONS: PORTAL_SESSION_FIELDS}


def stored_fields() -> dict[str, tuple[str, ...]]:
    """Every collection `checked` lets code write to, with every field it allows there (a nested field as
    `settings.fields`, after its parent). The one source of the public data-handling page (/privacy)."""
    model: dict[str, tuple[str, ...]] = {}
    for collection, fields in _TOP.items():
        paths: list[str] = []
        for name in sorted(fields):
            paths.append(name)
            paths += [f"{name}.{sub}" for sub in sorted(_NESTED.get((collection, name), ()))]
        model[collection] = tuple(paths)
    return model


class SchemaViolation(ValueError):
    """Code tried to store a field the data model does not allow (a bug, never user input)."""


def checked(collection: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """Returns `document` if every (dotted) field is allowed in `collection`, else raises SchemaViolation."""
    allowed = _TOP[collection]
    for key, value in document.items():
        top, _, nested = key.partition(".")
        if top not in allowed:
            raise SchemaViolation(f"field {top!r} is not allowed in {collection}")
        sub_allowed = _NESTED.get((collection, top))
        if sub_allowed is not None:
            names = [nested] if nested else (list(value) if isinstance(value, Mapping) else [])
            for name in names:
                if name not in sub_allowed:
                    raise SchemaViolation(f"field {top}.{name} is not allowed in {collection}")
        elif nested:
            raise SchemaViolation(f"field {key!r} is not allowed in {collection}")
    return dict(document)
