"""The data model: the only collections and fields that may exist (ARCHITECTURE.md, "Data model").

Every write goes through `checked`, so a field outside this list is refused in code before it can be
stored. The data-inventory test checks the emulator against its own copy of the model.
"""
from __future__ import annotations

from typing import Any, Mapping

TENANTS = "tenants"
DEVICES = "devices"
FILES = "files"
RECEIPTS = "deletionReceipts"

RELAY_FIELDS = ("displayName", "givenName", "surname", "jobTitle", "department", "companyName", "mail",
                "mobilePhone", "businessPhones", "officeLocation")

TENANT_FIELDS = frozenset({"name", "status", "createdAt", "settings", "deletionRequestId",
                           "deletionRequestedAt"})
TENANT_SETTINGS_FIELDS = frozenset({"fields", "defaultRegion"})
DEVICE_FIELDS = frozenset({"registeredAt", "lastSeenAt"})
FILE_FIELDS = frozenset({"objectName", "format", "owner", "deviceId", "createdAt", "deleteAfter"})
RECEIPT_FIELDS = frozenset({"kind", "subject", "status", "requestedAt", "completedAt", "deleted", "verified"})
RECEIPT_DELETED_FIELDS = frozenset({"documents", "files"})

TENANT_STATUSES = ("active", "deleting")
FILE_FORMATS = ("json", "xml", "csv")
FILE_OWNERS = ("tenant", "device")
DELETION_KINDS = ("tenant", "device", "file")

_NESTED = {
    (TENANTS, "settings"): TENANT_SETTINGS_FIELDS,
    (RECEIPTS, "deleted"): RECEIPT_DELETED_FIELDS,
}
_TOP = {TENANTS: TENANT_FIELDS, DEVICES: DEVICE_FIELDS, FILES: FILE_FIELDS, RECEIPTS: RECEIPT_FIELDS}


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
