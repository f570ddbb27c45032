"""tenant_portal in a real browser: Playwright driving Debian's Chromium against the portal process of the
local stack, with the fake Entra ID's sign-in page, the deletion push to handle_deletion, and the relay.

Screenshots of the main pages at phone and desktop widths land in test-artifacts/portal/ (look at them);
axe-core (npm, loaded from tests/browser/node_modules) checks every page for serious or critical issues.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from functions.tenant_portal import session as cookies
from local.stack import ROOT
from tests import portal, seed, support, tokens
from tests.e2e.processes import Processes

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "test-artifacts" / "portal"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run 'sh tests/browser/install.sh' (or make test)")
    if not AXE.is_file():
        pytest.fail("axe-core is not installed: run 'sh tests/browser/install.sh' (or make test)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True,
                                              args=["--no-sandbox", "--ignore-certificate-errors"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    opened = context.new_page()
    opened.set_default_timeout(20000)
    yield opened
    context.close()


def url(stack, path: str = "/") -> str:
    return stack.urls["tenant_portal"] + path


def sign_in(page, stack, login: str, link: str = "Sign in with Microsoft") -> None:
    """Through the fake Entra sign-in page as `login`, from the landing page's sign-in `link`."""
    page.goto(url(stack))
    page.get_by_role("link", name=link).click()
    page.wait_for_url("**/oauth2/v2.0/authorize**")
    page.get_by_role("button", name=login).click()
    page.wait_for_url(url(stack, "/**"))


def visible(locator, timeout_ms: int = 10000) -> bool:
    """True once the element is visible. After a click that navigates, the next page may still be loading:
    `is_visible()` answers at once (and was seen False in a loaded run); `wait_for` waits for it."""
    locator.wait_for(state="visible", timeout=timeout_ms)
    return locator.is_visible()


def shoot(page, name: str) -> None:
    """Full-page screenshots at desktop and phone width (the viewport is restored afterwards)."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def accessible(page) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
           if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{page.url}: {bad}"


def session_cookie(page):
    return [c for c in page.context.cookies() if c["name"] == cookies.SESSION_COOKIE]


def relay_sync(stack, tenant_id: str, device_id: str) -> list[dict]:
    """One full sync of the device through the relay process: its lines."""
    answer = requests.get(stack.urls["relay_contacts"] + "/", timeout=60, headers={
        "Authorization": f"Bearer {tokens.token(stack, tenant_id)}", "X-Device-Id": device_id})
    assert answer.status_code == 200, answer.text[:300]
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert lines[-1]["op"] == "end"
    return lines


def relay_fields(stack, tenant_id: str, device_id: str) -> set[str]:
    lines = relay_sync(stack, tenant_id, device_id)
    return set().union(*(set(line) for line in lines if line["op"] == "upsert")) - {"op", "id"}


def relay_photo(stack, tenant_id: str, device_id: str, user_id: str) -> int:
    answer = requests.get(f"{stack.urls['relay_contacts']}/photos/{user_id}", timeout=60, headers={
        "Authorization": f"Bearer {tokens.token(stack, tenant_id)}", "X-Device-Id": device_id})
    return answer.status_code


def test_landing_page(page, stack):
    page.goto(url(stack))
    assert page.get_by_role("heading", level=1).inner_text() == "Administration for your organisation"
    assert page.get_by_role("link", name="Add your organisation").get_attribute("href") == "/onboard"
    accessible(page)
    shoot(page, "01-landing")
    page.get_by_role("link", name="Deutsch").click()
    assert visible(page.get_by_role("link", name="Mit Microsoft anmelden"))
    accessible(page)
    shoot(page, "01-landing-de")


def test_admin_walkthrough_revoke_settings_delete(page, deletion_push):
    stack = deletion_push
    processes = Processes(stack)
    tenant_id = portal.onboard(stack, name="Fabrikam AG", defaultRegion="DE")
    devices = [processes.register(tenant_id) for _ in range(2)]
    processes.diagnostics(tenant_id, devices[1])
    sign_in(page, stack, portal.accounts(stack, tenant_id)["admin"])

    # Overview
    assert page.get_by_role("heading", level=1).inner_text() == "Fabrikam AG"
    overview = page.locator("dl").inner_text()
    assert tenant_id in overview and "active" in overview and "2" in overview
    accessible(page)
    shoot(page, "02-overview")

    # Devices: revoke one; it leaves the list once handle_deletion ran, and its receipt completes.
    page.get_by_role("link", name="Devices", exact=True).click()
    assert all(visible(page.get_by_text(device)) for device in devices)
    accessible(page)
    shoot(page, "03-devices")
    page.get_by_role("button", name=f"Revoke device {devices[0]}").click()
    assert visible(page.get_by_role("status"))
    shoot(page, "04-devices-revoked")
    deadline = time.monotonic() + 45
    while page.get_by_text(devices[0]).count():
        assert time.monotonic() < deadline, "the revoked device stayed in the list"
        time.sleep(0.5)
        page.reload()
    assert page.get_by_text(devices[1]).is_visible()
    page.get_by_role("link", name="Receipts").click()
    assert "Device" in page.locator("tbody").inner_text() and "completed" in page.locator("tbody").inner_text()
    accessible(page)
    shoot(page, "05-receipts")
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON").first.click()
    receipt = json.loads(Path(download.value.path()).read_text())
    assert receipt["kind"] == "device" and receipt["status"] == "completed" and receipt["verified"] is True

    # Settings: only two fields reach the phones, and the relay honours it.
    assert {"jobTitle", "department", "mail"} <= relay_fields(stack, tenant_id, devices[1])
    page.get_by_role("link", name="Settings").click()
    for box in page.get_by_role("group", name="Directory fields sent to the phones").get_by_role("checkbox").all():
        box.uncheck()
    page.get_by_label("Display name").check()
    page.get_by_label("Mobile phone").check()
    page.get_by_label("Default region for phone numbers").select_option("AT")
    page.get_by_role("button", name="Save").click()
    assert "saved" in page.get_by_role("status").inner_text()
    accessible(page)
    shoot(page, "06-settings")
    assert support.store().tenants.get(tenant_id).settings == {
        "fields": ["displayName", "mobilePhone"], "defaultRegion": "AT", "photos": True,
        "scope": {"groups": [], "excludeDisabled": True, "excludeGuests": True, "requirePhone": False}}
    assert relay_fields(stack, tenant_id, devices[1]) <= {"displayName", "mobilePhone"}

    # Language switch on a signed-in page, and back.
    page.get_by_role("link", name="Deutsch").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Einstellungen"
    assert page.get_by_role("button", name="Speichern").is_visible()
    page.get_by_role("link", name="Geräte").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Geräte"  # links keep the language
    accessible(page)
    shoot(page, "07-devices-de")
    page.get_by_role("link", name="English").click()

    # Delete all data: the sign-in above asked Entra ID for no recent authentication, so the confirmation
    # leads through a fresh sign-in (max_age) back to the page, and nothing is deleted before it (ASVS 3.6.1).
    page.get_by_role("link", name="Delete all data").click()
    accessible(page)
    shoot(page, "08-deletion")
    page.get_by_label("To confirm, type the organisation's name: Fabrikam AG").fill("Fabrikam AG")
    page.get_by_role("button", name="Delete all data").click()
    assert "Nothing was deleted" in page.get_by_role("alert").inner_text()
    assert support.store().tenants.get(tenant_id).active
    accessible(page)
    shoot(page, "08-deletion-sign-in-again")
    page.get_by_role("link", name="Sign in again with Microsoft").click()
    page.wait_for_url("**/oauth2/v2.0/authorize**")
    assert parse_qs(urlsplit(page.url).query)["max_age"] == ["600"]
    page.get_by_role("button", name=portal.accounts(stack, tenant_id)["admin"]).click()
    page.wait_for_url(url(stack, "/deletion**"))  # in the language chosen before leaving
    # The typed name confirms; the page follows the receipt; the session ends.
    page.get_by_label("To confirm, type the organisation's name: Fabrikam AG").fill("Fabrikam")
    page.get_by_role("button", name="Delete all data").click()
    assert "does not match" in page.get_by_role("alert").inner_text()
    assert support.store().tenants.get(tenant_id).active
    page.get_by_label("To confirm, type the organisation's name: Fabrikam AG").fill("Fabrikam AG")
    page.get_by_role("button", name="Delete all data").click()
    page.wait_for_url("**/deletion?requestId=*")
    request_id = parse_qs(urlsplit(page.url).query)["requestId"][0]
    page.get_by_role("heading", name="All data of your organisation is deleted").wait_for(timeout=60000)
    assert page.locator("#receipt-verified").inner_text() == "yes"
    accessible(page)
    shoot(page, "09-deleted")
    receipt = support.store().receipts.get(request_id)
    assert receipt.completed and receipt.verified and receipt.kind == "tenant"
    documents, objects = support.world()
    assert not [p for p in list(documents) + list(objects) if seed.belongs_to(p, tenant_id)]
    assert session_cookie(page) == []
    page.goto(url(stack, "/devices"))
    assert page.get_by_role("heading", level=1).inner_text() == "Please sign in"


def test_admin_sets_directory_scope_and_photos(page, emulators):
    """Groups by object ID, the three flags and photos, in English and German; a bad list is refused with
    the error at the top and beside the field; the relay then sends only the group's members and no photos."""
    from tests.fake_ms import FakeMicrosoftControl

    stack = emulators
    tenant_id = portal.onboard(stack, name="Contoso Pharma GmbH", defaultRegion="DE")
    fake = FakeMicrosoftControl(stack)
    members = [entry["user"]["id"] for entry in fake.users(tenant_id) if entry["user"]
               and entry["user"]["accountEnabled"] and entry["user"]["userType"] == "Member"]
    sales = fake.create_group(tenant_id, users=members[3:13])
    fake.photos(tenant_id, set=[{"user": user, "largest": 96} for user in members[3:13] + members[30:31]])
    device = Processes(stack).register(tenant_id)
    assert set(members) <= {line["id"] for line in relay_sync(stack, tenant_id, device) if line["op"] == "upsert"}
    assert relay_photo(stack, tenant_id, device, members[30]) == 200
    sign_in(page, stack, portal.accounts(stack, tenant_id)["admin"])
    page.get_by_role("link", name="Settings").click()

    groups = page.get_by_role("textbox", name="Groups (optional)")
    assert groups.input_value() == "" and "Entra" in page.locator("#groups-hint").inner_text()
    assert page.get_by_role("checkbox", name="Leave out disabled accounts").is_checked()
    assert page.get_by_role("checkbox", name="Leave out guests").is_checked()
    assert not page.get_by_role("checkbox", name="Only people with a phone number").is_checked()
    assert page.get_by_role("checkbox", name="Send profile photos to the phones").is_checked()
    accessible(page)
    shoot(page, "15-settings-scope")

    # A group name instead of its ID: the form comes back with the error, and nothing changed.
    groups.fill(f"{sales}\nSales Munich")
    page.get_by_role("checkbox", name="Send profile photos to the phones").uncheck()
    page.get_by_role("button", name="Save").click()
    assert "must be one group object ID" in page.get_by_role("alert").inner_text()
    assert page.locator("#groups-error").is_visible() and groups.get_attribute("aria-invalid") == "true"
    assert groups.input_value() == f"{sales}\nSales Munich"  # what was typed is kept
    assert not page.get_by_role("checkbox", name="Send profile photos to the phones").is_checked()
    assert "scope" not in support.store().tenants.get(tenant_id).settings
    accessible(page)
    shoot(page, "16-settings-scope-error")
    page.get_by_role("alert").get_by_role("link").click()
    page.wait_for_function("document.activeElement.id === 'groups'", timeout=5000)  # the summary leads there

    groups.fill(sales)
    page.get_by_role("checkbox", name="Only people with a phone number").check()
    page.get_by_role("button", name="Save").click()
    assert "once in full" in page.get_by_role("status").inner_text()
    assert groups.input_value() == sales
    accessible(page)
    shoot(page, "17-settings-scope-saved")
    settings = support.store().tenants.get(tenant_id).settings
    assert settings["photos"] is False
    assert settings["scope"] == {"groups": [sales], "excludeDisabled": True, "excludeGuests": True,
                                 "requirePhone": True}
    sent = {line["id"] for line in relay_sync(stack, tenant_id, device) if line["op"] == "upsert"}
    assert sent and sent <= set(members[3:13])  # the group's members that have a phone number
    colleague = min(sent)  # in scope, with a photo
    assert relay_photo(stack, tenant_id, device, colleague) == 404  # photos are off

    # In German: every label is there, and photos go back on.
    page.get_by_role("link", name="Deutsch").click()
    assert page.get_by_role("textbox", name="Gruppen (optional)").input_value() == sales
    for label in ("Deaktivierte Konten auslassen", "Gäste auslassen", "Nur Personen mit Telefonnummer"):
        assert page.get_by_role("checkbox", name=label).is_visible()
    page.get_by_role("checkbox", name="Profilfotos an die Telefone senden").check()
    with page.expect_navigation():  # this page already shows a "saved" notice: wait for the new one
        page.get_by_role("button", name="Speichern").click()
    assert page.url.endswith("/settings?saved=1&lang=de")  # photos alone: no full sync
    assert "gespeichert" in page.get_by_role("status").inner_text()
    accessible(page)
    shoot(page, "18-settings-scope-de")
    assert support.store().tenants.get(tenant_id).settings["photos"] is True
    assert relay_photo(stack, tenant_id, device, colleague) == 200
    assert relay_photo(stack, tenant_id, device, members[30]) == 404  # out of scope


def test_non_admin_sees_why_and_nothing_else(page, emulators):
    tenant_id = portal.onboard(emulators, name="Northwind Traders")
    sign_in(page, emulators, portal.accounts(emulators, tenant_id)["user"])
    assert page.get_by_role("heading", level=1).inner_text() == "Not allowed"
    text = page.locator("main").inner_text()
    assert "administrator" in text and "Northwind" not in page.content() and tenant_id not in page.content()
    assert page.get_by_role("navigation", name="Administration").count() == 0
    accessible(page)
    shoot(page, "10-not-admin")
    page.get_by_role("button", name="Sign out").click()
    assert session_cookie(page) == []


def test_admin_of_a_tenant_not_onboarded(page, emulators):
    sign_in(page, emulators, portal.accounts(emulators, str(uuid.uuid4()))["admin"])
    assert page.get_by_role("heading", level=1).inner_text() == "Your organisation is not registered"
    assert page.get_by_role("link", name="Add your organisation").is_visible()
    accessible(page)
    shoot(page, "11-not-onboarded")


def test_csrf_and_cross_site_posts_are_refused(page, emulators):
    tenant_id = portal.onboard(emulators, name="Fabrikam AG")
    sign_in(page, emulators, portal.accounts(emulators, tenant_id)["admin"])
    page.goto(url(emulators, "/settings"))
    page.get_by_label("Organisation name").fill("Changed without token")
    page.eval_on_selector("input[name=csrf]", "field => field.value = '0'.repeat(64)")
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Not allowed"
    assert "security token" in page.locator("main").inner_text()
    accessible(page)
    shoot(page, "12-csrf-refused")
    # A form on another site posting to the portal, with the session cookie's owner's browser.
    csrf = portal.csrf_of(page.goto(url(emulators, "/settings")).text())
    page.goto(emulators.urls["entra"] + "/common/discovery/v2.0/keys")  # any page of another origin
    page.set_content(f'<form method="post" action="{url(emulators, "/settings")}"><input name="csrf" value="{csrf}">'
                     '<input name="name" value="Hijacked"><button>go</button></form>')
    page.get_by_role("button", name="go").click()
    page.wait_for_load_state()
    assert support.store().tenants.get(tenant_id).name == "Fabrikam AG"


def test_cross_tenant_ids_reach_nothing(page, emulators):
    mine = portal.onboard(emulators, name="Mine GmbH")
    theirs = portal.onboard(emulators, name="Theirs AG")
    processes = Processes(emulators)
    their_device = processes.register(theirs)
    their_receipt = support.store().receipts.create_pending(
        str(uuid.uuid4()), "device", "0" * 64, seed.now(), portal.tenant_receipt_subject(theirs)).request_id
    sign_in(page, emulators, portal.accounts(emulators, mine)["admin"])
    assert page.goto(url(emulators, f"/receipts/{their_receipt}.json")).status == 404
    assert page.goto(url(emulators, f"/deletion?requestId={their_receipt}")).status == 404
    assert "Not found" in page.get_by_role("heading", level=1).inner_text()
    page.goto(url(emulators, "/devices"))
    page.set_content(page.content())  # keep the portal's own form, aimed at their device
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") if page.locator(
        "input[name=csrf]").count() else None
    assert csrf
    answer = page.request.post(url(emulators, f"/devices/{their_device}/revoke"), form={"csrf": csrf},
                               headers={"Origin": emulators.portal_url})
    assert answer.status == 404
    assert support.store().devices.get(theirs, their_device) is not None


def test_expired_session_says_so(page, emulators):
    from datetime import timedelta

    tenant_id = portal.onboard(emulators, name="Fabrikam AG")
    stale = seed.now() - timedelta(minutes=31)  # a session last used 31 minutes ago, as its record says
    session_id = cookies._b64(uuid.uuid4().bytes)
    support.store().portal_sessions.create(tenant_id, session_id, "Global Administrator", stale,
                                           cookies.expiry(stale, stale))
    sealer = cookies.Sealer(emulators.env["PORTAL_SESSION_KEY"].encode())
    value = sealer.seal(cookies.SESSION_COOKIE, {"t": tenant_id, "i": session_id, "c": "A" * 43})
    page.goto(url(emulators))  # its cookie, as the browser kept it
    page.evaluate("([name, value]) => { document.cookie = `${name}=${value}; Secure; Path=/; SameSite=Lax`; }",
                  [cookies.SESSION_COOKIE, value])
    assert session_cookie(page)
    page.goto(url(emulators, "/devices"))
    assert page.get_by_role("heading", level=1).inner_text() == "Please sign in"
    assert "session has ended" in page.locator("main").inner_text()
    assert session_cookie(page) == []
    accessible(page)
    shoot(page, "13-session-expired")


def _second_browser(browser, page):
    """Another browser (its own context) holding a copy of `page`'s session cookie: a copied cookie."""
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    context.add_cookies(session_cookie(page))
    other = context.new_page()
    other.set_default_timeout(20000)
    return other


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(browser, page, emulators):
    tenant_id = portal.onboard(emulators, name="Fabrikam AG")
    sign_in(page, emulators, portal.accounts(emulators, tenant_id)["admin"])
    copy = _second_browser(browser, page)
    try:
        copy.goto(url(emulators, "/devices"))
        assert copy.get_by_role("heading", level=1).inner_text() == "Devices"  # the copy works, for now
        page.get_by_role("button", name="Sign out", exact=True).click()
        page.wait_for_url(url(emulators, "/"))
        assert visible(page.get_by_role("link", name="Sign in with Microsoft")) and session_cookie(page) == []
        assert list(support.db().collection(f"tenants/{tenant_id}/portalSessions").stream()) == []
        copy.goto(url(emulators, "/settings"))
        assert copy.get_by_role("heading", level=1).inner_text() == "Please sign in"
        assert "session has ended" in copy.locator("main").inner_text()
        assert session_cookie(copy) == []
        accessible(copy)
        shoot(copy, "20-copied-cookie-after-sign-out")
    finally:
        copy.context.close()


def test_sign_out_everywhere_ends_every_browsers_session(browser, page, emulators):
    tenant_id = portal.onboard(emulators, name="Fabrikam AG")
    other_admin = browser.new_context(viewport=DESKTOP, locale="de-DE").new_page()
    try:
        sign_in(other_admin, emulators, portal.accounts(emulators, tenant_id)["app-admin"], "Mit Microsoft anmelden")
        sign_in(page, emulators, portal.accounts(emulators, tenant_id)["admin"])
        copy = _second_browser(browser, page)
        assert len(list(support.db().collection(f"tenants/{tenant_id}/portalSessions").stream())) == 2
        section = page.get_by_role("region", name="Sessions")
        assert "8 hours" in section.inner_text()
        accessible(page)
        shoot(page, "21-overview-sessions")
        section.get_by_role("button", name="Sign out everywhere").click()
        page.wait_for_url("**/?signedOut=everywhere")
        assert "Every session of your organisation in this portal has ended" in page.get_by_role(
            "status").inner_text()
        assert session_cookie(page) == []
        accessible(page)
        shoot(page, "22-signed-out-everywhere")
        assert list(support.db().collection(f"tenants/{tenant_id}/portalSessions").stream()) == []
        for other in (other_admin, copy):
            other.goto(url(emulators, "/devices"))
            assert other.get_by_role("heading", level=1).inner_text() in ("Please sign in", "Bitte melden Sie sich an")
            assert session_cookie(other) == []
        shoot(other_admin, "23-other-browser-after-sign-out-everywhere-de")
        copy.context.close()
    finally:
        other_admin.context.close()


def test_everything_works_without_javascript(browser, deletion_push):
    """Forms post back and the deletion's progress page refreshes itself (<noscript> meta refresh)."""
    stack = deletion_push
    context = browser.new_context(viewport=PHONE, locale="de-DE", java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(20000)
    try:
        tenant_id = portal.onboard(stack, name="Ohne Skript GmbH")
        device = Processes(stack).register(tenant_id)
        sign_in(page, stack, portal.accounts(stack, tenant_id)["app-admin"], link="Mit Microsoft anmelden")
        assert page.get_by_role("heading", level=1).inner_text() == "Ohne Skript GmbH"  # German from Accept-Language
        page.get_by_role("link", name="Einstellungen").click()
        page.get_by_label("Position").uncheck()
        group = str(uuid.uuid4())
        page.get_by_role("textbox", name="Gruppen (optional)").fill(group)
        page.get_by_role("checkbox", name="Gäste auslassen").uncheck()
        page.get_by_role("button", name="Speichern").click()
        assert "gespeichert" in page.get_by_role("status").inner_text()
        settings = support.store().tenants.get(tenant_id).settings
        assert "jobTitle" not in settings["fields"]
        assert settings["scope"]["groups"] == [group] and settings["scope"]["excludeGuests"] is False
        assert settings["scope"]["excludeDisabled"] is True and settings["photos"] is True
        page.get_by_role("link", name="Alle Daten löschen").click()
        page.get_by_role("textbox").fill("Ohne Skript GmbH")
        page.get_by_role("button", name="Alle Daten löschen").click()
        # No recent authentication at Entra ID: through a fresh sign-in (max_age) back to the confirmation.
        assert "Es wurde nichts gelöscht" in page.get_by_role("alert").inner_text()
        page.get_by_role("link", name="Erneut mit Microsoft anmelden").click()
        page.wait_for_url("**/oauth2/v2.0/authorize**")
        page.get_by_role("button", name=portal.accounts(stack, tenant_id)["app-admin"]).click()
        page.wait_for_url(url(stack, "/deletion**"))
        page.get_by_role("textbox").fill("Ohne Skript GmbH")
        page.get_by_role("button", name="Alle Daten löschen").click()
        page.get_by_role("heading", name="Alle Daten Ihrer Organisation sind gelöscht").wait_for(timeout=60000)
        shoot(page, "14-deleted-no-js-de")
        assert support.store().devices.get(tenant_id, device) is None
        assert session_cookie(page) == []
    finally:
        context.close()
