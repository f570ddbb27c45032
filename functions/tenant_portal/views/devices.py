"""The tenant's registered devices: listed (paged) and revoked one by one."""
from __future__ import annotations

from flask import Response

from functions.tenant_portal.visit import FUNCTION, Visit, actor_of, admin, tenant_of, when
from shared import logs
from shared.ids import is_canonical_id

log = logs.get_logger(__name__)


def listing(visit: Visit) -> Response:
    tenant = tenant_of(visit)
    page = visit.portal.service.devices(tenant, visit.request.args.get("pageToken") or None)
    revoked = visit.request.args.get("revoked")
    return visit.html("devices.html", nav="devices", tenant=tenant, devices=[
        {"id": d.device_id, "registered": when(d.registered_at), "seen": when(d.last_seen_at)}
        for d in page.devices], next_token=page.next_page_token,
        first_page=not visit.request.args.get("pageToken"), revoked=revoked if is_canonical_id(revoked) else None)


def revoke(visit: Visit, deviceId: str) -> Response:
    tenant = tenant_of(visit)
    request_id = visit.portal.service.revoke_device(tenant, deviceId, actor_of(admin(visit)))
    log.info("device revocation requested", function=FUNCTION, tenantId=tenant.tenant_id, requestId=request_id)
    return visit.redirect("/devices", revoked=request_id)
