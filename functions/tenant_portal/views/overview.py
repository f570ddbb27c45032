"""The landing page, a tenant's overview, `/privacy` and the static assets."""
from __future__ import annotations

from pathlib import Path

from flask import Response

from functions.tenant_portal.visit import Visit, admin, when
from shared.errors import NotFound

STATIC = {"portal.css": "text/css; charset=utf-8", "portal.js": "text/javascript; charset=utf-8"}
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def home(visit: Visit) -> Response:
    if visit.session is None:
        return visit.html("landing.html", signed_out_everywhere=visit.request.args.get("signedOut") == "everywhere")
    session = admin(visit)
    tenant = visit.portal.service.tenant(session.tenant_id)
    if tenant is None:
        return visit.html("not_onboarded.html")
    overview = visit.portal.service.overview(tenant)
    # ASVS 3.3.4: the organisation's active sessions, by the same 8-character reference the Activity page shows.
    sessions = [{"ref": record.session_id[:8], "role": record.role, "created": when(record.created_at),
                 "used": when(record.last_used_at), "this": record.session_id == session.session_id}
                for record in visit.portal.sessions.active(session.tenant_id)]
    return visit.html("overview.html", nav="overview", tenant=tenant, device_count=overview.device_count,
                      created=when(tenant.created_at), onboarded=visit.request.args.get("onboarded") == "1",
                      sessions=sessions)


def privacy(visit: Visit) -> Response:
    from functions.tenant_portal.privacy import privacy_page

    return visit.html("privacy.html", privacy=privacy_page(visit.page.lang, visit.portal.settings))


def static(visit: Visit, name: str) -> Response:
    if name not in STATIC:
        raise NotFound("no such file")
    response = Response((STATIC_DIR / name).read_bytes(), content_type=STATIC[name])
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
