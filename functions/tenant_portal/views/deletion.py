"""Deleting the whole organisation, its progress, and the deletion receipts (listed and as JSON)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Response

from functions.tenant_portal import session as cookies
from functions.tenant_portal.visit import FUNCTION, Redirect, Visit, actor_of, admin, tenant_of, when
from shared import http, logs
from shared.errors import BadRequest, NotFound
from shared.ids import is_canonical_id

if TYPE_CHECKING:
    from shared.store.records import Receipt

log = logs.get_logger(__name__)


def _following(visit: Visit, request_id: str) -> str | None:
    """The tenant whose deletion `request_id` this browser asked for (its sealed deletion cookie), if any."""
    sealed = visit.portal.sealer.unseal(cookies.DELETION_COOKIE, visit.request.cookies.get(cookies.DELETION_COOKIE))
    if (sealed is None or sealed.get("r") != request_id or not isinstance(sealed.get("exp"), int)
            or sealed["exp"] < visit.now or not is_canonical_id(sealed.get("t"))):
        return None
    return str(sealed["t"])


def _tenant_id_for(visit: Visit, request_id: str | None) -> str:
    """The signed-in administrator's tenant; without a session, the tenant whose deletion `request_id` this
    browser asked for (the deletion ends every session of the tenant, its progress page stays)."""
    if visit.session is None and request_id:
        followed = _following(visit, request_id)
        if followed is not None:
            return followed
    return admin(visit).tenant_id


def page(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    request_id = visit.request.args.get("requestId")
    tenant_id = _tenant_id_for(visit, request_id)
    if request_id:
        receipt = visit.portal.service.receipt(tenant_id, request_id)
        if receipt.kind != "tenant":
            raise NotFound("this receipt is not one of an organisation's deletion", slug="receipt-not-found")
        document = receipt_view(receipt)
        if receipt.completed and visit.portal.service.tenant(tenant_id) is not None:
            if visit.session is None:
                raise Redirect("/")
            raise Redirect("/receipts")  # an old deletion of a tenant onboarded again: its receipt is listed there
        if receipt.completed:
            if visit.session is not None:
                visit.portal.sessions.end(visit.session)
            visit.end_session = True  # the tenant is gone: so is the session
            visit.session = None
            visit.set_cookies.append(cookies.cleared_cookie_header(cookies.DELETION_COOKIE))
            from functions.tenant_portal.service import receipt_document

            return visit.html("deleted.html", receipt=document,
                              receipt_json=json.dumps(receipt_document(receipt), indent=2))
        return visit.html("deletion_progress.html", nav="deletion", receipt=document,
                          poll=visit.page.href(f"/receipts/{receipt.request_id}.json"))
    tenant = tenant_of(visit, allow_deleting=True)
    if not tenant.active and tenant.deletion_request_id:
        raise Redirect("/deletion", requestId=tenant.deletion_request_id)
    return visit.html("deletion.html", status, nav="deletion", tenant=tenant, error=error)


def delete_all(visit: Visit) -> Response:
    tenant = tenant_of(visit)
    session = admin(visit)
    if not session.authenticated_recently(visit.now):
        # ASVS 3.6.1/3.6.2: only a person who authenticated at Entra ID within 10 minutes deletes everything;
        # the page leads through a sign-in with max_age and back to this confirmation. Nothing is deleted.
        log.info("deletion needs a recent sign-in", function=FUNCTION, tenantId=tenant.tenant_id,
                 reason="reauthentication-required")
        return visit.html("deletion.html", 401, nav="deletion", tenant=tenant, error=None, reauth=True,
                          reauth_href=visit.page.href("/signin", next="/deletion", reauth="1"))
    try:
        request_id = visit.portal.service.delete_all(tenant, visit.value("confirmName"), actor_of(admin(visit)))
    except BadRequest as error:
        return page(visit, error=error.slug, status=400)
    log.info("tenant deletion requested", function=FUNCTION, tenantId=tenant.tenant_id, requestId=request_id)
    followed = {"r": request_id, "t": tenant.tenant_id, "exp": visit.now + cookies.DELETION_FOLLOW_SECONDS}
    visit.set_cookies.append(cookies.cookie_header(cookies.DELETION_COOKIE, visit.portal.sealer.seal(
        cookies.DELETION_COOKIE, followed), cookies.DELETION_FOLLOW_SECONDS))
    return visit.redirect("/deletion", requestId=request_id)


def receipts(visit: Visit) -> Response:
    session = admin(visit)
    listed = [receipt_view(r) for r in visit.portal.service.receipts(session.tenant_id)]
    return visit.html("receipts.html", nav="receipts", receipts=listed)


def receipt_json(visit: Visit, requestId: str) -> Response:
    from functions.tenant_portal.service import receipt_document

    tenant_id = _tenant_id_for(visit, requestId)
    response = http.json_response(receipt_document(visit.portal.service.receipt(tenant_id, requestId)))
    response.headers["Content-Disposition"] = f'attachment; filename="receipt-{requestId}.json"'
    return response


def receipt_view(receipt: Receipt) -> dict[str, Any]:
    """A receipt as the pages show it (times in minutes, UTC)."""
    return {"requestId": receipt.request_id, "kind": str(receipt.kind), "status": str(receipt.status),
            "completed": receipt.completed, "requestedAt": when(receipt.requested_at),
            "completedAt": when(receipt.completed_at) if receipt.completed_at else None,
            "documents": receipt.documents, "files": receipt.files, "verified": receipt.verified}
