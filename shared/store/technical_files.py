"""Technical files: a Storage object and its manifest document, written so no object is ever unknown.

Write order: manifest first, then the object; if the upload fails the manifest is removed again. A crash
between the two leaves at most a manifest without object, which the sweeper removes at its deadline.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.clock import timestamp
from shared.errors import BadRequest, Forbidden, TransientError
from shared.ids import new_id
from shared.store.objects import ObjectStore, object_name
from shared.store.repositories import FileRepository
from shared.store.schema import FileFormat, FileOwner


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
    except (ValueError, UnicodeDecodeError, csv.Error, SyntaxError, RecursionError):
        # ElementTree.ParseError is a SyntaxError; the parser's message may quote content, so drop it.
        raise BadRequest(f"the {fmt.upper()} file is not well-formed", slug="malformed-file") from None


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    delete_after: datetime

    def view(self) -> dict[str, str | None]:
        return {"fileId": self.file_id, "deleteAfter": timestamp(self.delete_after)}


class TechnicalFileStore:
    def __init__(self, objects: ObjectStore, files: FileRepository):
        self._objects = objects
        self._files = files

    def put(self, tenant_id: str, data: bytes, fmt: FileFormat, now: datetime, delete_after: datetime,
            device_id: str | None = None, admit: Callable[[], None] = lambda: None) -> StoredFile:
        """Stores the file. `admit` runs once the file is known to be well-formed, before anything is
        written (a limit that raises refuses the upload, and bad files never reach it)."""
        check_well_formed(data, fmt)
        admit()
        fmt = FileFormat(fmt)
        file_id = new_id()
        name = object_name(tenant_id, file_id, fmt, device_id)
        owner = FileOwner.DEVICE if device_id else FileOwner.TENANT
        manifest = {"objectName": name, "format": fmt, "owner": owner, "createdAt": now,
                    "deleteAfter": delete_after}
        if device_id:
            manifest["deviceId"] = device_id
        self._files.create_if_owner_active(tenant_id, file_id, manifest, device_id)
        try:
            self._objects.create(name, data, fmt, {"tenant-id": tenant_id, "owner": owner}, delete_after)
        except Exception as error:
            self._files.delete(tenant_id, file_id)
            raise TransientError("the file could not be stored") from error
        if not self._files.owner_active(tenant_id, device_id):
            # A deletion of the owner started while the object was uploading and may already have
            # listed the prefix: take the object back so it cannot outlive its owner.
            self._objects.delete([name])
            self._files.delete(tenant_id, file_id)
            raise Forbidden("the owner of the file is being deleted", slug="owner-deleted")
        return StoredFile(file_id, delete_after)
