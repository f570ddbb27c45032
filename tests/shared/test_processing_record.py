"""The record of processing (GDPR Art. 30(2)) is generated from the data model and configuration: the
committed docs/record-of-processing.md is exactly what the code generates, and a collection or field of the
data model without an entry in the record stops the generator (so the two cannot drift apart)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from local.fake_microsoft.state import AppRegistration
from shared import processing_record as record
from shared.config import Settings, load_settings
from shared.store import schema

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "record-of-processing.md"


def test_the_committed_record_is_what_the_code_generates():
    assert DOCUMENT.read_text() == record.processing_record(), (
        "docs/record-of-processing.md is out of date: run `make record`")


def test_every_collection_and_field_of_the_data_model_is_in_the_record():
    text = record.processing_record()
    for collection, fields in schema.stored_fields().items():
        section = text.split(f"### `{record.COLLECTION_PATHS[collection]}`", 1)[1].split("\n### ", 1)[0]
        assert "- Purpose: " in section and "- Retention: " in section
        assert [f"`{name}`" for name in fields] == re.findall(r"^\| (`[\w.]+`) \|", section, re.M)


def test_a_field_added_to_the_schema_without_a_record_entry_fails(monkeypatch):
    monkeypatch.setitem(schema._TOP, schema.AUDIT_EVENTS, schema.AUDIT_EVENT_FIELDS | {"userPrincipalName"})
    with pytest.raises(record.Unrecorded, match="userPrincipalName"):
        record.processing_record()


def test_a_collection_added_to_the_schema_without_a_record_entry_fails(monkeypatch):
    monkeypatch.setitem(schema._TOP, "pushTokens", frozenset({"expiresAt"}))
    with pytest.raises(record.Unrecorded, match="pushTokens"):
        record.processing_record()


def test_a_record_entry_for_a_field_no_longer_stored_fails(monkeypatch):
    monkeypatch.setitem(schema._TOP, schema.DEVICES, schema.DEVICE_FIELDS - {"diagnosticsDay"})
    with pytest.raises(record.Unrecorded, match="diagnosticsDay"):
        record.processing_record()


def test_retention_and_egress_follow_the_configuration():
    settings = load_settings(environ={"AUDIT_RETENTION_DAYS": "90", "DEVICE_INACTIVITY_DAYS": "30",
                                      "GRAPH_BASE_URL": "https://graph.microsoft.de/v1.0"})
    text = record.processing_record(settings)
    assert "90 days (TTL policy on expiresAt)" in text and "or 30 days without a sync" in text
    assert "https://graph.microsoft.de" in text and "https://graph.microsoft.com" not in text
    assert "365 days (TTL policy" in record.processing_record(Settings())


def test_sub_processors_and_measures_are_the_deployments():
    variables = (ROOT / "terraform" / "variables.tf").read_text()

    def default(name: str) -> str:
        block = re.search(rf'variable "{name}" \{{(.*?)\n\}}', variables, re.S)
        assert block, name
        return re.search(r'default\s*=\s*"([^"]+)"', block.group(1)).group(1)

    assert (default("region"), default("firestore_location"), default("storage_location")) == (
        record.FUNCTIONS_REGION, record.FIRESTORE_LOCATION, record.STORAGE_LOCATION)
    secrets = re.search(r'for_each = toset\(\[(.*?)\]\)', (ROOT / "terraform" / "secrets.tf").read_text())
    text = record.processing_record()
    assert sorted(re.findall(r'"(\w+)"', secrets.group(1))) == sorted(
        re.search(r"Secrets \(([A-Z_, ]+)\)", text).group(1).split(", "))
    # The permissions the app registration is given (the fake Entra ID grants the contract's three).
    assert AppRegistration("x", None).roles == record.GRAPH_PERMISSIONS
    expiring = sorted(c for c, fields in schema._TOP.items() if "expiresAt" in fields)
    assert f"TTL policies on `expiresAt` of {', '.join(f'`{c}`' for c in expiring)}" in text
    for word in ("oid", "@", "upn"):
        assert word not in text.split("## 3.")[1].split("## 4.")[0]
