"""Cloud Storage: the bucket of technical files, behind the few operations the services need.

Besides the repositories, the only code that touches a Google client; it returns plain values.
Object names are built and parsed here, from validated IDs only.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from shared.errors import TransientError
from shared.ids import UUID_PATTERN
from shared.store.schema import FileFormat

if TYPE_CHECKING:
    from google.cloud.storage import Bucket

_OBJECT_NAME = re.compile(rf"tenants/(?P<tenant>{UUID_PATTERN})/(?:tenant|devices/(?P<device>{UUID_PATTERN}))/"
                          rf"(?P<file>{UUID_PATTERN})\.(?P<format>json|xml|csv)")
# Concurrent deletes: the JSON API's batch endpoint is not available on fake-gcs-server, and a small
# pool matches the HTTP connection pool of the storage client (10 connections).
DELETE_WORKERS = 10
LIST_PAGE_SIZE = 1000


def object_name(tenant_id: str, file_id: str, fmt: FileFormat, device_id: str | None = None) -> str:
    if device_id is None:
        return f"tenants/{tenant_id}/tenant/{file_id}.{fmt}"
    return f"tenants/{tenant_id}/devices/{device_id}/{file_id}.{fmt}"


def tenant_prefix(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/"


def device_prefix(tenant_id: str, device_id: str) -> str:
    return f"tenants/{tenant_id}/devices/{device_id}/"


@dataclass(frozen=True)
class ObjectName:
    tenant_id: str
    file_id: str
    fmt: FileFormat
    device_id: str | None = None


def parse_object_name(name: str) -> ObjectName | None:
    """The IDs in a well-formed object name, or None for any other name."""
    match = _OBJECT_NAME.fullmatch(name)
    if match is None:
        return None
    return ObjectName(match["tenant"], match["file"], FileFormat(match["format"]), match["device"])


@dataclass(frozen=True)
class StoredObject:
    name: str
    generation: int | None
    created_at: datetime | None


class ObjectsNotDeleted(TransientError):
    """Some deletions failed; `deleted` says how many objects did go (for the receipt's counts)."""

    def __init__(self, deleted: int):
        super().__init__("some technical files could not be deleted")
        self.deleted = deleted


class ObjectStore:
    """The technical-files bucket. A missing bucket is a TransientError, never "empty"."""

    def __init__(self, bucket: Bucket, delete_workers: int = DELETE_WORKERS):
        self._bucket = bucket
        self._delete_workers = delete_workers

    def pages(self, prefix: str | None = None, start_offset: str | None = None, end_offset: str | None = None,
              max_results: int | None = None) -> Iterator[list[StoredObject]]:
        """Pages of objects (name, generation, creation time) in name order; memory stays flat."""
        from google.api_core import exceptions as gexc

        try:
            iterator = self._bucket.list_blobs(prefix=prefix, start_offset=start_offset, end_offset=end_offset,
                                               max_results=max_results, page_size=LIST_PAGE_SIZE,
                                               fields="items(name,generation,timeCreated),nextPageToken")
            for page in iterator.pages:
                yield [StoredObject(blob.name, blob.generation, blob.time_created) for blob in page]
        except gexc.NotFound:
            raise TransientError("the technical-files bucket does not exist") from None

    def first(self, prefix: str) -> str | None:
        """Name of one object under `prefix` (None if there is none): a cheap re-read for verification."""
        for page in self.pages(prefix=prefix, max_results=1):
            return page[0].name if page else None
        return None

    def exists(self, name: str) -> bool:
        return self.first(name) == name

    def delete(self, objects: Iterable[str | tuple[str, int | None]]) -> int:
        """Deletes objects concurrently; returns how many existed. Not found counts as done.

        An item may be (name, generation): then only that generation is deleted (a newer one is kept).
        After every delete has finished, the first failure is raised as ObjectsNotDeleted.
        """
        from google.api_core import exceptions as gexc

        def delete(item: str | tuple[str, int | None]) -> int:
            name, generation = item if isinstance(item, tuple) else (item, None)
            try:
                self._bucket.delete_blob(name, if_generation_match=generation)
            except (gexc.NotFound, gexc.PreconditionFailed):
                return 0
            return 1

        deleted, failure = 0, None
        with ThreadPoolExecutor(max_workers=self._delete_workers) as pool:
            for future in [pool.submit(delete, item) for item in objects]:
                try:
                    deleted += future.result()
                except Exception as error:  # noqa: BLE001 - collected, re-raised below after the others finish
                    failure = failure or error
        if failure is not None:
            raise ObjectsNotDeleted(deleted) from failure
        return deleted

    def create(self, name: str, data: bytes, fmt: FileFormat, metadata: dict[str, str],
               custom_time: datetime) -> None:
        """Uploads a new object (never overwrites one); raises on any failure."""
        blob = self._bucket.blob(name)
        blob.metadata = metadata
        blob.custom_time = custom_time
        blob.upload_from_string(data, content_type=fmt.content_type, if_generation_match=0)
