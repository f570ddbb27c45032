"""The only code that touches Firestore and Cloud Storage; `Store` bundles it for the services."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.store.erasure import DocumentEraser
    from shared.store.leases import SyncLeaseRepository
    from shared.store.objects import ObjectStore
    from shared.store.portal_sessions import PortalSessionRepository
    from shared.store.repositories import (
        AuditRepository,
        DeviceRepository,
        FileRepository,
        ReceiptRepository,
        TenantRepository,
    )
    from shared.store.technical_files import TechnicalFileStore


@dataclass(frozen=True)
class Store:
    """Every repository over one Firestore client, and the technical-files bucket (if configured)."""
    tenants: TenantRepository
    devices: DeviceRepository
    files: FileRepository
    receipts: ReceiptRepository
    eraser: DocumentEraser
    objects: ObjectStore | None
    sync_leases: SyncLeaseRepository
    audit: AuditRepository
    portal_sessions: PortalSessionRepository

    @property
    def file_store(self) -> TechnicalFileStore:
        from shared.config import ConfigError
        from shared.store.technical_files import TechnicalFileStore

        if self.objects is None:
            raise ConfigError("technical files need TECHNICAL_FILES_BUCKET")
        return TechnicalFileStore(self.objects, self.files)
