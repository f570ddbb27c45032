"""Device registration, unregistration and diagnostics uploads, for authenticated app callers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from functions.register_device.limits import MINUTE, UserRegistrationLimiter, minute_window, next_utc_day, seconds_until
from shared.auth import Caller
from shared.clock import Clock, timestamp
from shared.deletion_requests import DeletionRequester
from shared.errors import NotFound, TooManyRequests
from shared.ids import require_id
from shared.store import Store
from shared.store.schema import DeletionKind, FileFormat
from shared.store.technical_files import StoredFile


@dataclass(frozen=True)
class Limits:
    """Quota and abuse limits (docs/security.md)."""
    max_devices: int
    registrations_per_tenant_per_minute: int
    diagnostics_per_device_per_day: int
    diagnostics_retention_days: int


class DeviceRegistrationService:
    def __init__(self, store: Store, requester: DeletionRequester, clock: Clock, limits: Limits,
                 user_limiter: UserRegistrationLimiter):
        self._devices, self._file_store = store.devices, store.file_store
        self._requester = requester
        self._clock = clock
        self._limits = limits
        self._users = user_limiter
        self._retention = timedelta(days=limits.diagnostics_retention_days)

    def register(self, caller: Caller, device_id: Any) -> tuple[dict[str, Any], bool]:
        """Registers a new device or refreshes a known one (never limited). A new device must pass the
        user's limit (in memory), the tenant's registrations per minute, then the tenant's quota."""
        require_id(device_id, "deviceId")
        now = self._clock()
        window, window_end = minute_window(now)

        def admit_new() -> None:
            self._users.check(caller.user_key, now)
            if (self._devices.registrations_in_window(caller.tenant_id, window)
                    >= self._limits.registrations_per_tenant_per_minute):
                raise TooManyRequests("the tenant registers too many new devices this minute; try again later",
                                      slug="registration-rate", retry_after=seconds_until(now, window_end))

        registration = self._devices.register(caller.tenant_id, device_id, now, self._limits.max_devices,
                                              admit_new)
        if registration.created:
            self._users.record(caller.user_key, now)
            self._devices.count_registration(caller.tenant_id, window, window_end + MINUTE)
        return {"deviceId": device_id, "registeredAt": timestamp(registration.registered_at)}, registration.created

    def unregister(self, caller: Caller, device_id: str) -> str:
        self._registered(caller, device_id)
        return self._requester.request(DeletionKind.DEVICE, caller.tenant_id, device_id)

    def upload_diagnostics(self, caller: Caller, device_id: str, data: bytes, fmt: FileFormat) -> StoredFile:
        """Stores a diagnostics file if the device has a slot left today; an upload that is refused or
        fails gives its slot back."""
        self._registered(caller, device_id)
        now = self._clock()
        day = now.strftime("%Y-%m-%d")
        reserved = []

        def reserve_slot() -> None:
            self._devices.reserve_diagnostics(caller.tenant_id, device_id, day,
                                              self._limits.diagnostics_per_device_per_day,
                                              retry_after=seconds_until(now, next_utc_day(now)))
            reserved.append(day)

        try:
            return self._file_store.put(caller.tenant_id, data, fmt, now, now + self._retention,
                                        device_id=device_id, admit=reserve_slot)
        except Exception:
            if reserved:
                self._devices.release_diagnostics(caller.tenant_id, device_id, day)
            raise

    def _registered(self, caller: Caller, device_id: str) -> None:
        require_id(device_id, "deviceId")
        if self._devices.get(caller.tenant_id, device_id) is None:
            raise NotFound("device is not registered in this tenant", slug="device-not-found")
