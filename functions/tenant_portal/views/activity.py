"""The tenant's audit trail ("Activity": paged, newest first, this session's events marked) and the
downloads: the trail and the deletion receipts as CSV and JSON, the record of processing as Markdown."""
from __future__ import annotations

from flask import Response

from functions.tenant_portal import exports
from functions.tenant_portal.visit import Visit, admin, tenant_of, when


def page(visit: Visit) -> Response:
    session = admin(visit)
    tenant = tenant_of(visit)
    token = visit.request.args.get("pageToken") or None
    trail = visit.portal.service.activity(tenant.tenant_id, token)
    rows = [{**row, "when": when(event.at)} for row, event in
            zip(exports.event_rows(trail.events, session.session_id), trail.events, strict=True)]
    from shared.audit import audit_page_token

    return visit.html("activity.html", nav="activity", tenant=tenant, events=rows, first_page=token is None,
                      next_token=audit_page_token(trail.after) if trail.after else None,
                      session_ref=session.session_id[:8])


def _download(body: bytes, media_type: str, filename: str) -> Response:
    response = Response(body, 200, content_type=media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def activity_csv(visit: Visit) -> Response:
    session, tenant = admin(visit), tenant_of(visit)
    rows = exports.event_rows(visit.portal.service.all_activity(tenant.tenant_id), session.session_id)
    return _download(exports.as_csv(rows, exports.EVENT_COLUMNS), "text/csv; charset=utf-8", "activity.csv")


def activity_json(visit: Visit) -> Response:
    session, tenant = admin(visit), tenant_of(visit)
    rows = exports.event_rows(visit.portal.service.all_activity(tenant.tenant_id), session.session_id)
    return _download(exports.as_json("events", rows), "application/json", "activity.json")


def receipts_csv(visit: Visit) -> Response:
    session = admin(visit)
    rows = exports.receipt_rows(visit.portal.service.receipts(session.tenant_id))
    return _download(exports.as_csv(rows, exports.RECEIPT_COLUMNS), "text/csv; charset=utf-8", "receipts.csv")


def receipts_json(visit: Visit) -> Response:
    session = admin(visit)
    rows = exports.receipt_rows(visit.portal.service.receipts(session.tenant_id))
    return _download(exports.as_json("receipts", rows), "application/json", "receipts.json")


def record_of_processing(visit: Visit) -> Response:
    from shared.processing_record import processing_record

    admin(visit)
    return _download(processing_record(visit.portal.settings).encode("utf-8"), "text/markdown; charset=utf-8",
                     "record-of-processing.md")
