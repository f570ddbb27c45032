"""The portal's Activity page and downloads in a real browser (Chromium via Playwright, against the portal
process of the local stack), checked by axe-core and shot at phone and desktop widths into
test-artifacts/portal/ (activity-*.png: look at them)."""
from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from shared.clock import utc_now
from shared.processing_record import processing_record
from tests import portal, support
from tests.e2e.test_portal_browser import accessible, browser, page, shoot, sign_in, visible  # noqa: F401

pytestmark = pytest.mark.e2e


def downloaded(page, link_name: str) -> bytes:
    with page.expect_download() as download:
        page.get_by_role("link", name=link_name, exact=True).click()
    return Path(download.value.path()).read_bytes()


def older_events(tenant_id: str, count: int) -> None:
    """Events an operator made a day ago (in the shape manage_tenants writes), so the trail has pages."""
    db, at = support.db(), utc_now() - timedelta(days=1)
    for index in range(count):
        when = at - timedelta(minutes=index)
        db.document(f"tenants/{tenant_id}/auditEvents/{uuid.uuid4()}").set({
            "at": when, "action": "settings.update", "target": "name", "actorKind": "operator",
            "actorRole": "roles/run.invoker", "session": "operator", "expiresAt": when + timedelta(days=365)})


def test_activity_page_marks_this_session_pages_and_downloads(page, emulators):
    stack = emulators
    tenant_id = portal.onboard(stack, name="Fabrikam AG", defaultRegion="DE")
    other = portal.onboard(stack, name="Contoso GmbH")
    older_events(tenant_id, 24)
    device = str(uuid.uuid4())
    support.store().devices.register(tenant_id, device, utc_now(), 100)
    sign_in(page, stack, portal.accounts(stack, tenant_id)["admin"])

    # Two changes in this session: a revoke and a settings change.
    page.get_by_role("link", name="Devices", exact=True).click()
    page.get_by_role("button", name=f"Revoke device {device}").click()
    assert visible(page.get_by_role("status"))
    page.get_by_role("link", name="Settings", exact=True).click()
    page.get_by_label("Send profile photos to the phones").uncheck()
    page.get_by_role("button", name="Save").click()
    assert "saved" in page.get_by_role("status").inner_text()

    page.get_by_role("link", name="Activity", exact=True).click()
    assert page.get_by_role("heading", level=1).inner_text() == "Activity"
    rows = page.locator("tbody tr")
    assert rows.count() == 25
    first = rows.nth(0).inner_text()
    assert "Settings changed" in first and "photos" in first and "this session" in first
    assert "Device revoked" in rows.nth(1).inner_text() and device in rows.nth(1).inner_text()
    assert "Signed in to the portal" in rows.nth(2).inner_text() and "this session" in rows.nth(2).inner_text()
    assert "this session" not in rows.nth(3).inner_text() and "Organisation onboarded" in rows.nth(3).inner_text()
    assert "Operator (roles/run.invoker)" in rows.nth(3).inner_text()
    assert page.locator("tr.this-session").count() == 3
    accessible(page)
    shoot(page, "activity-1")

    # Newest first, then the older page: the oldest of the operator's changes of a day ago.
    page.get_by_role("link", name="Older").click()
    page.wait_for_url("**/activity?pageToken=*")
    assert page.locator("tbody tr").count() == 3  # 28 events: 24 seeded, onboarding, sign-in, revoke, settings
    assert "Settings changed" in page.locator("tbody tr").last.inner_text()
    assert page.locator("tr.this-session").count() == 0
    accessible(page)
    shoot(page, "activity-2")
    page.get_by_role("link", name="Newest").click()

    # German.
    page.get_by_role("link", name="Deutsch").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Aktivität"
    assert "diese Sitzung" in page.locator("tbody tr").first.inner_text()
    assert "Einstellungen geändert" in page.locator("tbody tr").first.inner_text()
    accessible(page)
    shoot(page, "activity-de")
    page.get_by_role("link", name="English").click()

    # Downloads: CSV and JSON hold the same rows, the page's rows first; never the other tenant's events.
    events = json.loads(downloaded(page, "Activity (JSON)"))["events"]
    table = list(csv.DictReader(io.StringIO(downloaded(page, "Activity (CSV)").decode("utf-8"))))
    assert len(events) == len(table) == 28
    assert [e["eventId"] for e in events] == [r["eventId"] for r in table]
    assert [e["action"] for e in events[:3]] == ["settings.update", "device.revoke", "portal.signin"]
    assert [e["thisSession"] for e in events[:4]] == [True, True, True, False]
    assert events[0]["target"] == "photos" and table[1]["target"] == device
    theirs = {s.id for s in support.db().collection(f"tenants/{other}/auditEvents").stream()}
    assert theirs and not theirs & {e["eventId"] for e in events}
    shown = page.locator("tbody").inner_text()
    assert all(e["at"][:16].replace("T", " ") in shown for e in events[:25])

    receipts = json.loads(downloaded(page, "Deletion receipts (JSON)"))["receipts"]
    receipts_csv = list(csv.DictReader(io.StringIO(downloaded(page, "Deletion receipts (CSV)").decode())))
    assert len(receipts) == len(receipts_csv) == 1 and receipts[0]["kind"] == "device"
    assert receipts[0]["subject"] == receipts_csv[0]["subject"] == support.store().receipts.get(
        receipts[0]["requestId"]).subject
    record = downloaded(page, "Record of processing (GDPR Art. 30(2), Markdown)").decode("utf-8")
    assert record == processing_record(support.settings())


def test_activity_page_is_empty_safe_at_phone_width(page, emulators):
    stack = emulators
    tenant_id = portal.onboard(stack, name="Northwind Traders AG")
    support.db().recursive_delete(support.db().collection(f"tenants/{tenant_id}/auditEvents"))
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, stack, portal.accounts(stack, tenant_id)["admin"])
    page.get_by_role("link", name="Activity", exact=True).click()
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and "this session" in rows.first.inner_text()  # the sign-in just now
    assert page.get_by_role("link", name="Older").count() == 0
    accessible(page)
    shoot(page, "activity-short")
