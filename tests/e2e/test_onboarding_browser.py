"""Self-service onboarding in a real browser (Playwright, Debian's Chromium) against the portal process of
the local stack and the fake Entra ID's sign-in and admin-consent pages: a new customer's administrator goes
from the landing page to the overview in one visit, operators see the tenant, and its phones sync at once.
Also a consent that takes Microsoft a while to replicate (the waiting page), a declined consent (in German),
a non-admin, and /privacy in both languages.

Screenshots land in test-artifacts/portal/ (2x-*.png); axe-core checks every portal page.
"""
from __future__ import annotations

import uuid

import pytest
import requests

from functions.tenant_portal import session as cookies
from tests import portal, support
from tests.e2e.processes import Processes
from tests.e2e.test_portal_browser import accessible, browser, page, relay_fields, shoot, url  # noqa: F401 - fixtures by name
from tests.fake_ms import FakeMicrosoftControl

pytestmark = pytest.mark.e2e


@pytest.fixture
def newcomer(emulators):
    """A Microsoft 365 organisation that never consented to the app, and its admin's sign-in name."""
    tenant_id = str(uuid.uuid4())
    FakeMicrosoftControl(emulators).consent(tenant_id, "not_consented")
    return tenant_id, portal.accounts(emulators, tenant_id)


def onboarding_cookie(page):
    return [c for c in page.context.cookies() if c["name"] == cookies.ONBOARDING_COOKIE]


def test_a_new_customer_onboards_in_one_visit(page, emulators, newcomer):
    tenant_id, accounts = newcomer
    name = "Tailspin Toys GmbH"
    page.goto(url(emulators))
    page.get_by_role("link", name="Add your organisation").click()
    page.wait_for_url("**/oauth2/v2.0/authorize**")  # sign in first …
    page.get_by_role("button", name=accounts["admin"]).click()
    page.wait_for_url(url(emulators, "/onboard"))  # … and back to the name form
    assert page.get_by_role("heading", level=1).inner_text() == "Add your organisation"
    accessible(page)
    shoot(page, "20-onboard-name")
    page.get_by_label("Organisation name").fill(name)
    page.get_by_role("button", name="Continue to Microsoft").click()

    page.wait_for_url(f"**/{tenant_id}/v2.0/adminconsent?**")  # Microsoft's consent page (the fake's)
    assert "User.Read.All" in page.locator("#permissions").inner_text()
    assert onboarding_cookie(page) and support.store().tenants.get(tenant_id) is None
    shoot(page, "21-consent-page-fake")
    page.get_by_role("button", name="Accept").click()

    page.wait_for_url(url(emulators, "/?onboarded=1"))
    assert page.get_by_role("heading", level=1).inner_text() == name
    assert "Your organisation was added" in page.get_by_role("status").inner_text()
    facts = page.locator("dl").inner_text()
    assert tenant_id in facts and "active" in facts
    assert onboarding_cookie(page) == []  # the state was used once
    accessible(page)
    shoot(page, "22-onboarded-overview")

    # Operators see it at once …
    listed = requests.get(emulators.urls["manage_tenants"] + "/tenants", params={"pageSize": 1000}, timeout=30)
    assert {"tenantId": tenant_id, "name": name, "status": "active"}.items() <= next(
        t for t in listed.json()["tenants"] if t["tenantId"] == tenant_id).items()
    # … and a phone of the organisation registers and syncs its directory at once.
    device = Processes(emulators).register(tenant_id)
    assert {"displayName", "mobilePhone"} <= relay_fields(emulators, tenant_id, device)
    page.reload()
    assert "1" in page.locator("dl").inner_text().split("Registered devices", 1)[1]
    # Coming back to "Add your organisation" leads to the overview.
    page.goto(url(emulators, "/onboard"))
    page.wait_for_url(url(emulators, "/"))
    assert page.get_by_role("heading", level=1).inner_text() == name


def test_the_waiting_page_checks_by_itself_until_microsoft_confirms_the_consent(page, emulators, newcomer):
    """Consent replicates in seconds to minutes: past the callback's short retry the browser shows a page
    that checks again by itself (portal.js; no timed refresh, which axe refuses) and reaches the overview
    once Graph confirms, without a click."""
    tenant_id, accounts = newcomer
    FakeMicrosoftControl(emulators).configure(tenant=tenant_id, consent_replication_seconds=14)
    page.goto(url(emulators, "/onboard"))
    page.get_by_role("button", name=accounts["admin"]).click()
    page.wait_for_url(url(emulators, "/onboard"))
    page.get_by_label("Organisation name").fill("Patient Partners AG")
    page.get_by_role("button", name="Continue to Microsoft").click()
    page.wait_for_url("**/adminconsent?**")
    page.get_by_role("button", name="Accept").click()

    page.wait_for_url(url(emulators, "/onboard/callback?**"))
    assert page.get_by_role("heading", level=1).inner_text() == "Waiting for Microsoft to confirm your consent"
    assert page.get_by_role("status").inner_text().startswith("You consented.")
    assert support.store().tenants.get(tenant_id) is None
    accessible(page)
    shoot(page, "26-onboard-waiting")
    page.wait_for_url(url(emulators, "/?onboarded=1"), timeout=45000)  # no click: the page asked again itself
    assert page.get_by_role("heading", level=1).inner_text() == "Patient Partners AG"
    assert support.store().tenants.get(tenant_id).status == "active"
    assert [c for c in page.context.cookies() if c["name"] == cookies.WAITING_COOKIE] == []


def test_declined_consent_in_german(page, emulators, newcomer):
    tenant_id, accounts = newcomer
    page.goto(url(emulators, "/?lang=de"))
    page.get_by_role("link", name="Organisation hinzufügen").click()
    page.get_by_role("button", name=accounts["admin"]).click()
    page.wait_for_url(url(emulators, "/onboard?lang=de"))
    assert page.get_by_role("heading", level=1).inner_text() == "Organisation hinzufügen"
    accessible(page)
    shoot(page, "23-onboard-name-de")
    page.get_by_label("Name der Organisation").fill("Abgelehnt AG")
    page.get_by_role("button", name="Weiter zu Microsoft").click()
    page.wait_for_url("**/adminconsent?**")
    page.get_by_role("button", name="Cancel").click()

    page.wait_for_url(url(emulators, "/onboard/callback?**"))
    assert page.get_by_role("heading", level=1).inner_text() == "Zustimmung abgelehnt"
    assert "nichts wurde gespeichert" in page.locator("main").inner_text()
    assert onboarding_cookie(page) == [] and support.store().tenants.get(tenant_id) is None
    accessible(page)
    shoot(page, "24-onboard-declined-de")
    page.get_by_role("link", name="Neu beginnen").click()  # and the form is there again
    page.wait_for_url(url(emulators, "/onboard?lang=de"))
    assert page.get_by_role("button", name="Weiter zu Microsoft").is_visible()


def test_a_non_admin_is_told_why(page, emulators, newcomer):
    tenant_id, accounts = newcomer
    page.goto(url(emulators, "/onboard"))
    page.get_by_role("button", name=accounts["user"]).click()
    page.wait_for_url(url(emulators, "/onboard"))
    assert page.get_by_role("heading", level=1).inner_text() == "Only administrators can add the organisation"
    assert page.get_by_role("textbox").count() == 0
    accessible(page)
    shoot(page, "25-onboard-not-admin")
    page.get_by_role("button", name="Sign in with another account").click()
    page.wait_for_url(url(emulators, "/"))
    assert support.store().tenants.get(tenant_id) is None


@pytest.mark.parametrize("lang, heading, other", [("en", "What we store, and what we never store", "Deutsch"),
                                                  ("de", "Was wir speichern – und was nie", "English")])
def test_privacy_page(page, emulators, lang, heading, other):
    page.goto(url(emulators))
    page.get_by_role("link", name="Privacy").click()
    if lang == "de":
        page.get_by_role("link", name="Deutsch").click()
    # Wait for the page in this language (right after a click the previous page may still be showing).
    page.get_by_role("heading", level=1, name=heading, exact=True).wait_for(timeout=10000)
    row = page.locator("tr[data-field='devices.lastSeenAt']")
    row.wait_for(state="visible", timeout=10000)
    assert row.is_visible()
    accessible(page)
    shoot(page, f"26-privacy-{lang}")
    page.get_by_role("link", name=other).click()
    page.wait_for_function("heading => document.querySelector('h1')?.innerText.trim() !== heading", arg=heading,
                           timeout=10000)
    assert page.get_by_role("heading", level=1).inner_text() != heading
