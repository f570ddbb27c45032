"""What a signed-in tenant administrator may see and do, always within the session's own tenant.

Every method takes the tenant ID of the session, never one from a URL or form: an ID from the request
(a device, a receipt) is only ever looked up inside that tenant, so another tenant's data cannot be
reached whatever the request carries (docs/architecture.md, "Tenant portal (`tenant_portal`)").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.audit import Actor, AuditTrail, after_audit_event, changed_keys, changed_settings, settings_target
from shared.clock import Clock
from shared.deletion_requests import DeletionRequester
from shared.errors import BadRequest, Conflict, NotFound
from shared.events import tenant_subject
from shared.ids import require_id
from shared.store import Store
from shared.store.records import AuditEvent, AuditPage, Device, Receipt, Tenant
from shared.store.schema import RELAY_FIELDS, SCOPE_FLAGS, AuditAction, DeletionKind, effective_scope
from shared.tenant_settings import validate_name, validate_settings

DEVICES_PER_PAGE = 25
RECEIPTS_LISTED = 100
EVENTS_PER_PAGE = 25
EVENTS_EXPORTED = 10000  # a download holds the newest this many events (a year of daily changes many times over)
_EXPORT_PAGE = 500


@dataclass(frozen=True)
class Overview:
    tenant: Tenant
    device_count: int


@dataclass(frozen=True)
class DevicePage:
    devices: list[Device]
    next_page_token: str | None


# A checkbox of the settings form posts a hidden "false" before its own "true", so an unticked box is
# told apart from a form that does not carry it (which keeps the stored value).
CHECKBOX_VALUES = {"true": True, "false": False}


@dataclass(frozen=True)
class SettingsForm:
    """The settings page as posted. `groups` (the textarea, one group ID per line), the scope flags and
    `photos` are None when the form did not carry them: those settings are then kept as they are."""
    name: str
    fields: list[str]
    region: str
    groups: str | None = None
    flags: dict[str, str] = field(default_factory=dict)  # scope flag -> the checkbox's value
    photos: str | None = None


@dataclass(frozen=True)
class SavedSettings:
    tenant: Tenant
    scope_changed: bool  # the phones then fetch the directory once in full (a settings change resets syncs)


def group_lines(text: str) -> list[str]:
    """The group IDs of the textarea: one per line, trimmed, blank lines left out. Whether each is a GUID,
    unique, and whether there are too many is `validate_settings`'s to say (the one validator)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _checkbox(value: str) -> bool:
    if value not in CHECKBOX_VALUES:
        raise BadRequest("a checkbox of the settings form carries an unknown value", slug="invalid-settings")
    return CHECKBOX_VALUES[value]


def _comparable(scope: dict[str, Any]) -> dict[str, Any]:
    return {**scope, "groups": sorted(scope["groups"])}


class TenantPortalService:
    """Every change is recorded in the tenant's audit trail as the `Actor`'s (a role and a random session ID),
    in the same write as the change; a refused change records nothing."""

    def __init__(self, store: Store, requester: DeletionRequester, receipt_key: bytes, clock: Clock,
                 trail: AuditTrail):
        self._tenants, self._devices, self._receipts = store.tenants, store.devices, store.receipts
        self._audit = store.audit
        self._requester = requester
        self._receipt_key = receipt_key
        self._clock = clock
        self._trail = trail

    # -- the audit trail ---------------------------------------------------------------------------
    def signed_in(self, tenant_id: str, actor: Actor) -> bool:
        """Records the sign-in of an administrator to an active tenant (nothing for any other sign-in)."""
        return self._audit.record_if_active(tenant_id, self._trail.event(actor, AuditAction.PORTAL_SIGNIN))

    def activity(self, tenant_id: str, page_token: str | None) -> AuditPage:
        """A page of the session's tenant's trail, newest first (`page_token`: the previous page's)."""
        return self._audit.page(tenant_id, EVENTS_PER_PAGE, after_audit_event(page_token))

    def all_activity(self, tenant_id: str) -> list[AuditEvent]:
        """The tenant's trail for a download, newest first (at most EVENTS_EXPORTED events)."""
        events: list[AuditEvent] = []
        after = None
        while len(events) < EVENTS_EXPORTED:
            page = self._audit.page(tenant_id, min(_EXPORT_PAGE, EVENTS_EXPORTED - len(events)), after)
            events += page.events
            if page.after is None:
                break
            after = page.after
        return events

    # -- reading -----------------------------------------------------------------------------------
    def tenant(self, tenant_id: str) -> Tenant | None:
        return self._tenants.get(tenant_id)

    def overview(self, tenant: Tenant) -> Overview:
        return Overview(tenant, self._devices.count(tenant.tenant_id))

    def devices(self, tenant: Tenant, page_token: str | None) -> DevicePage:
        after = require_id(page_token, "pageToken") if page_token else None
        devices, next_token = self._devices.page(tenant.tenant_id, DEVICES_PER_PAGE, after)
        return DevicePage(devices, next_token)

    def receipts(self, tenant_id: str) -> list[Receipt]:
        return self._receipts.for_tenant(tenant_subject(self._receipt_key, tenant_id), RECEIPTS_LISTED)

    def receipt(self, tenant_id: str, request_id: str) -> Receipt:
        """The receipt if it belongs to the tenant; any other requestId is simply not found."""
        require_id(request_id, "requestId")
        receipt = self._receipts.get(request_id)
        if receipt is None or receipt.tenant_subject != tenant_subject(self._receipt_key, tenant_id):
            raise NotFound("no receipt with this requestId in your organisation", slug="receipt-not-found")
        return receipt

    # -- changing ----------------------------------------------------------------------------------
    def revoke_device(self, tenant: Tenant, device_id: str, actor: Actor) -> str:
        require_id(device_id, "deviceId")
        self._require_active(tenant)
        if self._devices.get(tenant.tenant_id, device_id) is None:
            raise NotFound("the device is not registered in your organisation", slug="device-not-found")
        return self._requester.request(DeletionKind.DEVICE, tenant.tenant_id, device_id,
                                       self._trail.event(actor, AuditAction.DEVICE_REVOKE, device_id))

    def update_settings(self, tenant: Tenant, form: SettingsForm, actor: Actor) -> SavedSettings:
        """Name, relay fields, region and, when the form carries them, directory scope and photos; every
        value is checked by `validate_settings` (merged over the stored settings, so nothing else is lost)
        before anything is written."""
        self._require_active(tenant)
        unknown = [name for name in form.fields if name not in RELAY_FIELDS]
        if unknown:
            raise BadRequest("unknown relay field", slug="invalid-settings")
        if set(form.flags) - set(SCOPE_FLAGS):
            raise BadRequest("unknown scope setting", slug="invalid-settings")
        changes: dict[str, Any] = {"fields": list(dict.fromkeys(form.fields)), "defaultRegion": form.region or None}
        scope: dict[str, Any] = {flag: _checkbox(value) for flag, value in form.flags.items()}
        if form.groups is not None:
            scope["groups"] = group_lines(form.groups)
        if scope:
            changes["scope"] = scope
        if form.photos is not None:
            changes["photos"] = _checkbox(form.photos)
        settings = validate_settings(changes, tenant.settings)
        name = validate_name(form.name)

        def audited(before: Tenant) -> AuditEvent | None:
            changed = changed_keys({"name": before.name}, {"name": name}) + changed_settings(before.settings, settings)
            return (self._trail.event(actor, AuditAction.SETTINGS_UPDATE, settings_target(changed))
                    if changed else None)

        updated = self._tenants.update(tenant.tenant_id, {"name": name, "settings": settings}, audited)
        changed = _comparable(effective_scope(settings)) != _comparable(effective_scope(tenant.settings))
        return SavedSettings(updated, changed)

    def delete_all(self, tenant: Tenant, typed_name: str, actor: Actor) -> str:
        """Requests the deletion of everything of the tenant once the admin typed its name exactly."""
        self._require_active(tenant)
        if typed_name.strip() != tenant.name:
            raise BadRequest("the typed name does not match the organisation's name", slug="confirmation-mismatch")
        return self._requester.request_tenant(
            tenant.tenant_id, lambda request_id: self._trail.event(actor, AuditAction.TENANT_DELETE_REQUEST,
                                                                   request_id))

    @staticmethod
    def _require_active(tenant: Tenant) -> None:
        if not tenant.active:
            raise Conflict("your organisation's data is being deleted", slug="tenant-deleting")


def receipt_document(receipt: Receipt) -> dict[str, Any]:
    """The receipt as the JSON download shows it (the view of manage_tenants: no subject, no ID in clear)."""
    from shared.receipts import receipt_view

    return receipt_view(receipt)
