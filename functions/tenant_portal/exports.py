"""The portal's downloads: the audit trail and the deletion receipts as CSV and JSON, the same rows in both.

A receipt is exported as its verifiable fields, including its keyed `subject` (docs/deletion.md, "Verify an
exported receipt"); an event as the operators' API shows it, plus whether it is of the downloading session.
CSV cells that a spreadsheet would run as a formula are prefixed with an apostrophe.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from shared.audit import event_view
from shared.clock import timestamp
from shared.store.records import AuditEvent, Receipt

EVENT_COLUMNS = ("eventId", "at", "action", "target", "actorKind", "actorRole", "session", "thisSession")
RECEIPT_COLUMNS = ("requestId", "kind", "status", "requestedAt", "completedAt", "documents", "files", "verified",
                   "subject")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def event_rows(events: Iterable[AuditEvent], session: str) -> list[dict[str, Any]]:
    return [{key: view[key] for key in EVENT_COLUMNS} for view in (event_view(e, session) for e in events)]


def receipt_rows(receipts: Iterable[Receipt]) -> list[dict[str, Any]]:
    """A receipt's verifiable fields: what was deleted, when, whether the re-read found nothing, and the keyed
    subject the operator recomputes to show which organisation, device or file it is about."""
    return [{"requestId": r.request_id, "kind": r.kind, "status": r.status, "requestedAt": timestamp(r.requested_at),
             "completedAt": timestamp(r.completed_at), "documents": r.documents, "files": r.files,
             "verified": r.verified, "subject": r.subject} for r in receipts]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def as_csv(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[column]) for column in columns])
    return out.getvalue().encode("utf-8")


def as_json(key: str, rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({key: rows}, ensure_ascii=False, indent=2).encode("utf-8")
