"""Technical files: a Storage object and its manifest document, written so no object is ever unknown.

Write order: manifest first, then the object; if the upload fails the manifest is removed again. A crash
between the two leaves at most a manifest without object, which the sweeper removes at its deadline.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime

from shared.errors import BadRequest, TransientError
from shared.ids import new_id
from shared.store.repositories import FileRepository

CONTENT_TYPES = {"application/json": "json", "application/xml": "xml", "text/xml": "xml", "text/csv": "csv"}
_OBJECT_CONTENT_TYPE = {"json": "application/json", "xml": "application/xml", "csv": "text/csv"}


def object_name(tenant_id: str, file_id: str, fmt: str, device_id: str | None = None) -> str:
    if device_id is None:
        return f"tenants/{tenant_id}/tenant/{file_id}.{fmt}"
    return f"tenants/{tenant_id}/devices/{device_id}/{file_id}.{fmt}"


def tenant_prefix(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/"


def device_prefix(tenant_id: str, device_id: str) -> str:
    return f"tenants/{tenant_id}/devices/{device_id}/"


def check_well_formed(data: bytes, fmt: str) -> None:
    """Parses the file with a hardened parser; 400 if it is not well-formed (DTDs and entities refused)."""
    try:
        if fmt == "json":
            json.loads(data.decode("utf-8"))
        elif fmt == "xml":
            from defusedxml import ElementTree
            from defusedxml.common import DefusedXmlException

            try:
                ElementTree.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
            except DefusedXmlException:
                raise BadRequest("XML with DTDs or entities is refused", slug="xml-forbidden") from None
        elif fmt == "csv":
            rows = csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True)
            widths = {len(row) for row in rows if row}
            if len(widths) > 1:
                raise BadRequest("CSV rows have differing numbers of columns", slug="malformed-file")
        else:
            raise BadRequest("unsupported format", slug="unsupported-format")
    except BadRequest:
        raise
    except (ValueError, UnicodeDecodeError, csv.Error, SyntaxError):
        # ElementTree.ParseError is a SyntaxError; the parser's message may quote content, so drop it.
        raise BadRequest(f"the {fmt.upper()} file is not well-formed", slug="malformed-file") from None


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    delete_after: datetime


class TechnicalFileStore:
    def __init__(self, bucket, files: FileRepository):
        self._bucket = bucket
        self._files = files

    def put(self, tenant_id: str, data: bytes, fmt: str, now: datetime, delete_after: datetime,
            device_id: str | None = None) -> StoredFile:
        check_well_formed(data, fmt)
        file_id = new_id()
        name = object_name(tenant_id, file_id, fmt, device_id)
        owner = "device" if device_id else "tenant"
        manifest = {"objectName": name, "format": fmt, "owner": owner, "createdAt": now,
                    "deleteAfter": delete_after}
        if device_id:
            manifest["deviceId"] = device_id
        self._files.create_if_tenant_active(tenant_id, file_id, manifest, device_id)
        blob = self._bucket.blob(name)
        blob.metadata = {"tenant-id": tenant_id, "owner": owner}
        blob.custom_time = delete_after
        try:
            blob.upload_from_string(data, content_type=_OBJECT_CONTENT_TYPE[fmt], if_generation_match=0)
        except Exception as error:
            self._files.delete(tenant_id, file_id)
            raise TransientError("the file could not be stored") from error
        return StoredFile(file_id, delete_after)
