"""Tenant administration for operators and support: onboarding, settings, devices, files, deletion."""
from __future__ import annotations

import base64
import binascii
import re
from datetime import timedelta
from typing import Any

from shared.audit import (
    OPERATOR,
    AuditTrail,
    after_audit_event,
    audit_page_token,
    changed_keys,
    changed_settings,
    event_view,
    settings_target,
)
from shared.clock import Clock, timestamp
from shared.deletion_requests import DeletionRequester
from shared.errors import BadRequest, NotFound
from shared.ids import is_canonical_id, require_id
from shared.receipts import receipt_view
from shared.store import Store, schema
from shared.store.records import AuditEvent, Device, FileManifest, Tenant
from shared.store.schema import AuditAction, DeletionKind, FileFormat
from shared.store.technical_files import StoredFile
from shared.tenant_settings import validate_name, validate_settings

MAX_PAGE_SIZE = 1000
MAX_RETENTION_DAYS = 3650


def tenant_view(tenant: Tenant) -> dict[str, Any]:
    return {"tenantId": tenant.tenant_id, "name": tenant.name, "status": tenant.status,
            "createdAt": timestamp(tenant.created_at),
            # Scope and photos as they apply, defaults included (what the relay and the portal act on).
            "settings": {**tenant.settings, "scope": schema.effective_scope(tenant.settings),
                         "photos": schema.photos_enabled(tenant.settings)}}


def tenant_summary(tenant: Tenant) -> dict[str, Any]:
    """A tenant as the operators' list shows it: name, ID, status, created (no settings)."""
    return {"tenantId": tenant.tenant_id, "name": tenant.name, "status": tenant.status,
            "createdAt": timestamp(tenant.created_at)}


def parse_page_size(value: Any, default: int = 100) -> int:
    """`pageSize` from a query string: absent or empty means `default`; else an integer in 1..MAX_PAGE_SIZE."""
    try:
        size = int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise BadRequest("pageSize must be an integer", slug="invalid-page-size") from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadRequest(f"pageSize must be between 1 and {MAX_PAGE_SIZE}", slug="invalid-page-size")
    return size


def tenant_page_token(tenant_id: str) -> str:
    """The opaque token of the tenant list's next page: the last listed tenant ID, base64url without padding.
    It carries a position only (no secret, nothing to tamper with beyond a position); `after_tenant`
    checks it is one."""
    return base64.urlsafe_b64encode(tenant_id.encode("ascii")).rstrip(b"=").decode("ascii")


def after_tenant(token: Any) -> str | None:
    """The tenant ID a page token continues after; None for no token; 400 for anything not made by
    `tenant_page_token` (the ID inside is validated before a document path is built from it)."""
    if token in (None, ""):
        return None
    invalid = BadRequest("pageToken is not a token this API returned", slug="invalid-page-token")
    if not isinstance(token, str) or len(token) > 64 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise invalid
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise invalid from None
    if not is_canonical_id(decoded) or tenant_page_token(decoded) != token:
        raise invalid
    return decoded


def device_view(device: Device) -> dict[str, Any]:
    return {"deviceId": device.device_id, "registeredAt": timestamp(device.registered_at),
            "lastSeenAt": timestamp(device.last_seen_at)}


def file_view(manifest: FileManifest) -> dict[str, Any]:
    return {"fileId": manifest.file_id, "format": manifest.format, "owner": manifest.owner,
            "createdAt": timestamp(manifest.created_at), "deleteAfter": timestamp(manifest.delete_after)}


class TenantAdminService:
    """Every change an operator makes here is recorded in the tenant's audit trail as the operator's
    (`OPERATOR`), in the same write as the change; a refused or failed change records nothing."""

    def __init__(self, store: Store, requester: DeletionRequester, clock: Clock, trail: AuditTrail):
        self._tenants, self._devices, self._files, self._receipts = (store.tenants, store.devices, store.files,
                                                                     store.receipts)
        self._audit = store.audit
        self._file_store = store.file_store
        self._requester = requester
        self._clock = clock
        self._trail = trail

    def onboard(self, tenant_id: str, name: Any, settings: Any = None) -> dict[str, Any]:
        require_id(tenant_id, "tenantId")
        name = validate_name(name)
        merged = validate_settings(settings if settings is not None else {})
        now = self._clock()
        event = self._trail.event(OPERATOR, AuditAction.TENANT_ONBOARD, at=now)
        return tenant_view(self._tenants.create(tenant_id, name, merged, now, event))

    def read(self, tenant_id: str) -> dict[str, Any]:
        return tenant_view(self._existing(tenant_id))

    def update(self, tenant_id: str, name: Any = None, settings: Any = None) -> dict[str, Any]:
        current = self._existing(tenant_id)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = validate_name(name)
        if settings is not None:
            changes["settings"] = validate_settings(settings, current.settings)

        def audited(before: Tenant) -> AuditEvent | None:
            changed = changed_keys({"name": before.name}, {"name": changes.get("name", before.name)})
            if "settings" in changes:
                changed += changed_settings(before.settings, changes["settings"])
            return (self._trail.event(OPERATOR, AuditAction.SETTINGS_UPDATE, settings_target(changed))
                    if changed else None)

        return tenant_view(self._tenants.update(tenant_id, changes, audited))

    def audit_trail(self, tenant_id: str, page_size: Any, page_token: Any) -> dict[str, Any]:
        """One page of the tenant's audit trail, newest first: {"events": [...], "nextPageToken": opaque or None}."""
        size = parse_page_size(page_size)
        after = after_audit_event(page_token)
        self._existing(tenant_id)
        page = self._audit.page(tenant_id, size, after)
        return {"events": [event_view(event) for event in page.events],
                "nextPageToken": audit_page_token(page.after) if page.after else None}

    def list_tenants(self, page_size: Any, page_token: Any) -> dict[str, Any]:
        """One page of all tenants in ID order: {"tenants": [...], "nextPageToken": opaque or None}."""
        size = parse_page_size(page_size)
        after = after_tenant(page_token)
        tenants, last = self._tenants.page(size, after)
        return {"tenants": [tenant_summary(tenant) for tenant in tenants],
                "nextPageToken": tenant_page_token(last) if last else None}

    def list_devices(self, tenant_id: str, page_size: Any, page_token: Any) -> dict[str, Any]:
        self._existing(tenant_id)
        size = parse_page_size(page_size)
        after = require_id(page_token, "pageToken") if page_token not in (None, "") else None
        devices, next_token = self._devices.page(tenant_id, size, after)
        return {"devices": [device_view(device) for device in devices], "nextPageToken": next_token}

    def revoke_device(self, tenant_id: str, device_id: str) -> str:
        self._existing(tenant_id)
        require_id(device_id, "deviceId")
        if self._devices.get(tenant_id, device_id) is None:
            raise NotFound("device is not registered in this tenant", slug="device-not-found")
        return self._requester.request(DeletionKind.DEVICE, tenant_id, device_id,
                                       self._trail.event(OPERATOR, AuditAction.DEVICE_REVOKE, device_id))

    def request_deletion(self, tenant_id: str) -> str:
        require_id(tenant_id, "tenantId")
        return self._requester.request_tenant(
            tenant_id, lambda request_id: self._trail.event(OPERATOR, AuditAction.TENANT_DELETE_REQUEST, request_id))

    def attach_file(self, tenant_id: str, data: bytes, fmt: FileFormat, retention_days: Any) -> StoredFile:
        require_id(tenant_id, "tenantId")
        try:
            days = int(retention_days)
        except (TypeError, ValueError):
            raise BadRequest("retentionDays must be an integer", slug="invalid-retention") from None
        if not 1 <= days <= MAX_RETENTION_DAYS:
            raise BadRequest(f"retentionDays must be between 1 and {MAX_RETENTION_DAYS}", slug="invalid-retention")
        now = self._clock()
        return self._file_store.put(tenant_id, data, fmt, now, now + timedelta(days=days))

    def list_files(self, tenant_id: str) -> dict[str, Any]:
        self._existing(tenant_id)
        return {"files": [file_view(manifest) for manifest in self._files.list(tenant_id)]}

    def read_receipt(self, request_id: str) -> dict[str, Any]:
        require_id(request_id, "requestId")
        receipt = self._receipts.get(request_id)
        if receipt is None:
            raise NotFound("no receipt with this requestId", slug="receipt-not-found")
        return receipt_view(receipt)

    def _existing(self, tenant_id: str) -> Tenant:
        require_id(tenant_id, "tenantId")
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise NotFound("tenant not found", slug="tenant-not-found")
        return tenant
