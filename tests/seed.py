"""Seeding the emulators with tenants, devices and technical files, and Pub/Sub CloudEvents for the
deletion tests. Documents follow the data model; objects carry the metadata the file store writes."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from shared.store.objects import object_name
from tests import support

PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
PUBSUB_SOURCE = "//pubsub.googleapis.com/projects/demo-contact-sync/topics/deletion-requests"


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> datetime:
    return datetime.now(UTC)


def tenant(tenant_id: str | None = None, status: str = "active", requested_at: datetime | None = None,
           request_id: str | None = None) -> str:
    tenant_id = tenant_id or new_id()
    document: dict[str, Any] = {"name": "Fabrikam AG", "status": status, "createdAt": now(),
                                "settings": {"fields": ["displayName", "mobilePhone"], "defaultRegion": "DE"}}
    if status == "deleting":
        document.update(deletionRequestId=request_id or new_id(), deletionRequestedAt=requested_at or now())
    support.db().document(f"tenants/{tenant_id}").set(document)
    return tenant_id


def device(tenant_id: str, device_id: str | None = None, last_seen: datetime | None = None) -> str:
    device_id = device_id or new_id()
    seen = last_seen or now()
    support.db().document(f"tenants/{tenant_id}/devices/{device_id}").set(
        {"registeredAt": seen - timedelta(days=1), "lastSeenAt": seen})
    return device_id


def technical_file(tenant_id: str, device_id: str | None = None, fmt: str = "json",
                   delete_after: datetime | None = None, data: bytes | None = None,
                   with_object: bool = True, name: str | None = None) -> tuple[str, str]:
    """A manifest and (unless with_object=False) its object; returns (fileId, objectName)."""
    file_id = new_id()
    name = name or object_name(tenant_id, file_id, fmt, device_id)
    deadline = delete_after or now() + timedelta(days=30)
    manifest: dict[str, Any] = {"objectName": name, "format": fmt, "owner": "device" if device_id else "tenant",
                                "createdAt": now(), "deleteAfter": deadline}
    if device_id:
        manifest["deviceId"] = device_id
    support.db().document(f"tenants/{tenant_id}/files/{file_id}").set(manifest)
    if with_object:
        put_object(name, data or json.dumps({"file": file_id}).encode(), tenant_id,
                   "device" if device_id else "tenant", deadline)
    return file_id, name


def put_object(name: str, data: bytes = b"{}", tenant_id: str | None = None, owner: str = "tenant",
               delete_after: datetime | None = None) -> None:
    blob = support.bucket().blob(name)
    if tenant_id:
        blob.metadata = {"tenant-id": tenant_id, "owner": owner}
    if delete_after:
        blob.custom_time = delete_after
    blob.upload_from_string(data, content_type="application/json")


def populated_tenant(devices: int = 2, files_per_device: int = 1, tenant_files: int = 2,
                     stray_objects: int = 1, tenant_id: str | None = None) -> dict[str, Any]:
    """A tenant with devices, device files, tenant files and objects nobody has a manifest for."""
    tenant_id = tenant(tenant_id)
    shape: dict[str, Any] = {"tenantId": tenant_id, "devices": [], "files": []}
    for _ in range(devices):
        device_id = device(tenant_id)
        shape["devices"].append(device_id)
        for _ in range(files_per_device):
            shape["files"].append(technical_file(tenant_id, device_id, fmt="xml")[0])
    for _ in range(tenant_files):
        shape["files"].append(technical_file(tenant_id, fmt="csv")[0])
    for index in range(stray_objects):
        put_object(f"tenants/{tenant_id}/tenant/stray-{index}.json")
    shape["documents"] = 1 + devices + len(shape["files"])
    shape["objects"] = len(shape["files"]) + stray_objects
    return shape


def belongs_to(path: str, tenant_id: str) -> bool:
    """Whether a document path or object name is part of the tenant."""
    return path == f"tenants/{tenant_id}" or path.startswith(f"tenants/{tenant_id}/")


# -- events ----------------------------------------------------------------------------------------
def deletion_message(kind: str, tenant_id: str, request_id: str | None = None, target: str | None = None,
                     **extra: Any) -> bytes:
    body: dict[str, Any] = {"type": f"{kind}.delete", "tenantId": tenant_id,
                            "requestId": new_id() if request_id is None else request_id}
    if kind == "device":
        body["deviceId"] = target
    if kind == "file":
        body["fileId"] = target
    body.update(extra)
    return json.dumps(body).encode()


def pubsub_event(data: bytes | None = None, *, encoded: Any = None, message: Any = None,
                 event_data: Any = None) -> CloudEvent:
    """A messagePublished CloudEvent as Eventarc / functions-framework deliver it."""
    if event_data is None:
        if message is None:
            message = {"data": encoded if encoded is not None else base64.b64encode(data or b"").decode(),
                       "messageId": str(uuid.uuid4().int % 10**16), "publishTime": now().isoformat()}
        event_data = {"message": message,
                      "subscription": "projects/demo-contact-sync/subscriptions/deletion-requests-to-handle-deletion"}
    return CloudEvent({"type": PUBSUB_TYPE, "source": PUBSUB_SOURCE}, event_data)


def post_event(client, event: CloudEvent, mode: str = "structured"):
    headers, body = (to_structured if mode == "structured" else to_binary)(event)
    return client.post("/", headers=headers, data=body)
