"""Technical files: a Storage object and its manifest document, written so no object is ever unknown.

Write order: manifest first, then the object; if the upload fails the manifest is removed again. A crash
between the two leaves at most a manifest without object, which the sweeper removes at its deadline.
"""
from __future__ import annotations

import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator

from shared.errors import BadRequest, Forbidden, TransientError
from shared.ids import new_id
from shared.media import CONTENT_TYPES  # noqa: F401 - re-exported for callers of the store
from shared.store.repositories import FileRepository, timestamp

_OBJECT_CONTENT_TYPE = {"json": "application/json", "xml": "application/xml", "csv": "text/csv"}


def object_name(tenant_id: str, file_id: str, fmt: str, device_id: str | None = None) -> str:
    if device_id is None:
        return f"tenants/{tenant_id}/tenant/{file_id}.{fmt}"
    return f"tenants/{tenant_id}/devices/{device_id}/{file_id}.{fmt}"


def tenant_prefix(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/"


def device_prefix(tenant_id: str, device_id: str) -> str:
    return f"tenants/{tenant_id}/devices/{device_id}/"


_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_OBJECT_NAME = re.compile(rf"^tenants/(?P<tenant>{_UUID})/(?:tenant|devices/(?P<device>{_UUID}))/"
                          rf"(?P<file>{_UUID})\.(?P<format>json|xml|csv)$")
# Concurrent deletes: the JSON API's batch endpoint is not available on fake-gcs-server, and a small
# pool matches the HTTP connection pool of the storage client (10 connections).
DELETE_WORKERS = 10
LIST_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ObjectName:
    tenant_id: str
    file_id: str
    fmt: str
    device_id: str | None = None


def parse_object_name(name: str) -> ObjectName | None:
    """The IDs in a well-formed object name, or None for any other name."""
    match = _OBJECT_NAME.fullmatch(name)
    if match is None:
        return None
    return ObjectName(match["tenant"], match["file"], match["format"], match["device"])


class ObjectsNotDeleted(TransientError):
    """Some deletions failed; `deleted` says how many objects did go (for the receipt's counts)."""

    def __init__(self, deleted: int):
        super().__init__("some technical files could not be deleted")
        self.deleted = deleted


def object_pages(bucket, prefix: str | None = None, start_offset: str | None = None,
                 end_offset: str | None = None, max_results: int | None = None) -> Iterator[list]:
    """Pages of blobs (name, generation, timeCreated); a missing bucket is a TransientError, never "empty"."""
    from google.api_core import exceptions as gexc

    try:
        iterator = bucket.list_blobs(prefix=prefix, start_offset=start_offset, end_offset=end_offset,
                                     max_results=max_results, page_size=LIST_PAGE_SIZE,
                                     fields="items(name,generation,timeCreated),nextPageToken")
        for page in iterator.pages:
            yield list(page)
    except gexc.NotFound:
        raise TransientError("the technical-files bucket does not exist") from None


def first_object(bucket, prefix: str) -> str | None:
    """Name of one object under `prefix` (None if there is none): a cheap re-read for verification."""
    for page in object_pages(bucket, prefix=prefix, max_results=1):
        return page[0].name if page else None
    return None


def delete_objects(bucket, objects: Iterable[str | tuple[str, int]], workers: int = DELETE_WORKERS) -> int:
    """Deletes objects concurrently; returns how many existed. Not found counts as done.

    An item may be (name, generation): then only that generation is deleted (a newer one is kept).
    After every delete has finished, the first failure is raised as ObjectsNotDeleted.
    """
    from google.api_core import exceptions as gexc

    def delete(item: str | tuple[str, int]) -> int:
        name, generation = item if isinstance(item, tuple) else (item, None)
        try:
            bucket.delete_blob(name, if_generation_match=generation)
        except (gexc.NotFound, gexc.PreconditionFailed):
            return 0
        return 1

    deleted, failure = 0, None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(delete, item) for item in objects]:
            try:
                deleted += future.result()
            except Exception as error:  # noqa: BLE001 - collected, re-raised below after the others finish
                failure = failure or error
    if failure is not None:
        raise ObjectsNotDeleted(deleted) from failure
    return deleted


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

    def view(self) -> dict[str, str | None]:
        return {"fileId": self.file_id, "deleteAfter": timestamp(self.delete_after)}


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
        if not self._files.owner_active(tenant_id, device_id):
            # A deletion of the owner started while the object was uploading and may already have
            # listed the prefix: take the object back so it cannot outlive its owner.
            self._take_back(blob, tenant_id, file_id)
            raise Forbidden("the owner of the file is being deleted", slug="owner-deleted")
        return StoredFile(file_id, delete_after)

    def _take_back(self, blob, tenant_id: str, file_id: str) -> None:
        from google.api_core import exceptions as gexc

        try:
            blob.delete()
        except gexc.NotFound:
            pass
        self._files.delete(tenant_id, file_id)
