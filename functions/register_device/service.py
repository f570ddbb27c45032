"""Device registration, unregistration and diagnostics uploads, for authenticated app callers."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.auth import Caller
from shared.clock import Clock, timestamp
from shared.deletion_requests import DeletionRequester
from shared.errors import NotFound
from shared.ids import require_id
from shared.store import Store
from shared.store.schema import DeletionKind, FileFormat
from shared.store.technical_files import StoredFile


class DeviceRegistrationService:
    def __init__(self, store: Store, requester: DeletionRequester, clock: Clock, max_devices: int,
                 diagnostics_retention_days: int):
        self._devices, self._file_store = store.devices, store.file_store
        self._requester = requester
        self._clock = clock
        self._max_devices = max_devices
        self._retention = timedelta(days=diagnostics_retention_days)

    def register(self, caller: Caller, device_id: Any) -> tuple[dict[str, Any], bool]:
        require_id(device_id, "deviceId")
        registration = self._devices.register(caller.tenant_id, device_id, self._clock(), self._max_devices)
        return {"deviceId": device_id, "registeredAt": timestamp(registration.registered_at)}, registration.created

    def unregister(self, caller: Caller, device_id: str) -> str:
        self._registered(caller, device_id)
        return self._requester.request(DeletionKind.DEVICE, caller.tenant_id, device_id)

    def upload_diagnostics(self, caller: Caller, device_id: str, data: bytes, fmt: FileFormat) -> StoredFile:
        self._registered(caller, device_id)
        now = self._clock()
        return self._file_store.put(caller.tenant_id, data, fmt, now, now + self._retention, device_id=device_id)

    def _registered(self, caller: Caller, device_id: str) -> None:
        require_id(device_id, "deviceId")
        if self._devices.get(caller.tenant_id, device_id) is None:
            raise NotFound("device is not registered in this tenant", slug="device-not-found")
