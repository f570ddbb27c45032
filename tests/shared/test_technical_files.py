"""The technical-file store: manifest and object together; never an object without its manifest."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from local.stack import BUCKET, PROJECT
from shared.errors import BadRequest, Forbidden, TransientError
from shared.store.objects import ObjectStore
from shared.store.technical_files import TechnicalFileStore, check_well_formed
from shared.wiring import storage_bucket
from tests import support

NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.fixture
def repos(emulators):
    store = support.store()
    tenant_id = str(uuid.uuid4())
    store.tenants.create(tenant_id, "Files GmbH", {"fields": []}, NOW)
    return tenant_id, store.tenants, store.files


def test_manifest_and_object_are_written_together(repos):
    tenant_id, _, files = repos
    store = TechnicalFileStore(ObjectStore(storage_bucket(PROJECT, BUCKET)), files)
    stored = store.put(tenant_id, b'{"a":1}', "json", NOW, NOW + timedelta(days=3))
    manifest = files.get(tenant_id, stored.file_id)
    blob = support.bucket().get_blob(manifest.object_name)
    assert blob is not None and blob.custom_time == NOW + timedelta(days=3)
    assert blob.metadata == {"tenant-id": tenant_id, "owner": "tenant"}


def test_failed_upload_leaves_neither_object_nor_manifest(repos):
    tenant_id, _, files = repos
    missing_bucket = storage_bucket(PROJECT, f"no-such-bucket-{uuid.uuid4().hex[:8]}")
    store = TechnicalFileStore(ObjectStore(missing_bucket), files)
    before = support.world()
    with pytest.raises(TransientError):
        store.put(tenant_id, b"a,b\n", "csv", NOW, NOW + timedelta(days=1))
    assert support.world() == before
    assert files.list(tenant_id) == []


def test_tenant_not_active_writes_nothing(repos):
    tenant_id, tenants, files = repos
    tenants.mark_deleting(tenant_id, str(uuid.uuid4()), NOW)
    store = TechnicalFileStore(ObjectStore(storage_bucket(PROJECT, BUCKET)), files)
    before = support.world()
    with pytest.raises(Forbidden):
        store.put(tenant_id, b"{}", "json", NOW, NOW + timedelta(days=1))
    assert support.world() == before


@pytest.mark.parametrize("data, fmt", [
    (b"{", "json"), (b"\xff", "json"), (b"<a>", "xml"), (b"<!DOCTYPE a []><a/>", "xml"),
    (b'"a,b\n', "csv"), (b"a,b\n1\n", "csv"), (b"{}", "pdf"),
])
def test_malformed_files_are_refused(data, fmt):
    with pytest.raises(BadRequest):
        check_well_formed(data, fmt)


class _BucketWhereDeletionStartsDuringUpload:
    """The real bucket; while an object uploads, the tenant's deletion is requested (the race)."""

    def __init__(self, bucket, on_upload):
        self._bucket = bucket
        self._on_upload = on_upload

    def __getattr__(self, name):
        return getattr(self._bucket, name)

    def blob(self, name):
        blob = self._bucket.blob(name)
        upload = blob.upload_from_string

        def racing_upload(*args, **kwargs):
            upload(*args, **kwargs)
            self._on_upload()

        blob.upload_from_string = racing_upload
        return blob


def test_an_upload_racing_its_owners_deletion_takes_its_object_back(repos):
    tenant_id, tenants, files = repos
    bucket = _BucketWhereDeletionStartsDuringUpload(
        storage_bucket(PROJECT, BUCKET), lambda: tenants.mark_deleting(tenant_id, str(uuid.uuid4()), NOW))
    store = TechnicalFileStore(ObjectStore(bucket), files)
    with pytest.raises(Forbidden):
        store.put(tenant_id, b"{}", "json", NOW, NOW + timedelta(days=1))
    assert support.bucket_snapshot() == {}
    assert files.list(tenant_id) == []
