"""What a signed-in tenant administrator may see and do, always within the session's own tenant.

Every method takes the tenant ID of the session, never one from a URL or form: an ID from the request
(a device, a receipt) is only ever looked up inside that tenant, so another tenant's data cannot be
reached whatever the request carries (docs/architecture.md, "tenant_portal").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions.manage_tenants.service import validate_name, validate_settings
from shared.clock import Clock
from shared.deletion_requests import DeletionRequester
from shared.errors import BadRequest, Conflict, NotFound
from shared.events import tenant_subject
from shared.ids import require_id
from shared.store import Store
from shared.store.records import Device, Receipt, Tenant
from shared.store.schema import RELAY_FIELDS, DeletionKind

DEVICES_PER_PAGE = 25
RECEIPTS_LISTED = 100


@dataclass(frozen=True)
class Overview:
    tenant: Tenant
    device_count: int


@dataclass(frozen=True)
class DevicePage:
    devices: list[Device]
    next_page_token: str | None


class TenantPortalService:
    def __init__(self, store: Store, requester: DeletionRequester, receipt_key: bytes, clock: Clock):
        self._tenants, self._devices, self._receipts = store.tenants, store.devices, store.receipts
        self._requester = requester
        self._receipt_key = receipt_key
        self._clock = clock

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
    def revoke_device(self, tenant: Tenant, device_id: str) -> str:
        require_id(device_id, "deviceId")
        self._require_active(tenant)
        if self._devices.get(tenant.tenant_id, device_id) is None:
            raise NotFound("the device is not registered in your organisation", slug="device-not-found")
        return self._requester.request(DeletionKind.DEVICE, tenant.tenant_id, device_id)

    def update_settings(self, tenant: Tenant, name: str, fields: list[str], region: str) -> Tenant:
        self._require_active(tenant)
        unknown = [field for field in fields if field not in RELAY_FIELDS]
        if unknown:
            raise BadRequest("unknown relay field", slug="invalid-settings")
        settings = validate_settings({"fields": list(dict.fromkeys(fields)), "defaultRegion": region or None},
                                     tenant.settings)
        return self._tenants.update(tenant.tenant_id, {"name": validate_name(name), "settings": settings})

    def delete_all(self, tenant: Tenant, typed_name: str) -> str:
        """Requests the deletion of everything of the tenant once the admin typed its name exactly."""
        self._require_active(tenant)
        if typed_name.strip() != tenant.name:
            raise BadRequest("the typed name does not match the organisation's name", slug="confirmation-mismatch")
        return self._requester.request_tenant(tenant.tenant_id)

    @staticmethod
    def _require_active(tenant: Tenant) -> None:
        if not tenant.active:
            raise Conflict("your organisation's data is being deleted", slug="tenant-deleting")


def receipt_document(receipt: Receipt) -> dict[str, Any]:
    """The receipt as the JSON download shows it (the view of manage_tenants: no subject, no ID in clear)."""
    from functions.manage_tenants.service import receipt_view

    return receipt_view(receipt)
