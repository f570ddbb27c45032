"""tenant_portal through its real entry point (Flask test client) against the emulators and the fake
Entra ID: sign-in, admin check, pages, changes, and every refusal (CSRF, cross-site, foreign IDs, expired
or forged sessions, oversized or malformed forms) changing nothing."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from functions.tenant_portal import session as cookies
from shared.clock import utc_now
from tests import portal, support
from tests.conftest import make_client

HTML = {"Accept": "text/html"}


@pytest.fixture
def client(emulators):
    return make_client("tenant_portal")


@pytest.fixture
def tenant(emulators):
    return portal.onboard(emulators, name="Fabrikam AG", defaultRegion="DE")


def signed_in(client, stack, tenant_id, role="admin", reauth=False):
    answer = portal.sign_in(client, stack, portal.accounts(stack, tenant_id)[role], reauth)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return answer


def page(client, path, headers=None, **kwargs):
    answer = client.get(path, headers={**HTML, **(headers or {})}, **kwargs)
    return answer, answer.get_data(as_text=True)


def register_device(tenant_id) -> str:
    device_id = str(uuid.uuid4())
    support.store().devices.register(tenant_id, device_id, utc_now(), 100)
    return device_id


def session_cookie(client):
    return client.get_cookie(cookies.SESSION_COOKIE)


GROUP_A = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"
GROUP_B = "1b2c3d4e-5f6a-4b7c-9d8e-9f0a1b2c3d4e"


def notice(body: str) -> str:
    return body.split('role="status">', 1)[1].split("</p>", 1)[0]


def scope_form(csrf, groups="", photos=True, **flags):
    """The settings form as the page posts it: every checkbox after its hidden "false"."""
    form = {"csrf": csrf, "name": "Fabrikam AG", "fields": ["displayName", "mobilePhone"], "defaultRegion": "DE",
            "groups": groups, "photos": ["false", "true"] if photos else "false"}
    for flag in ("excludeDisabled", "excludeGuests", "requirePhone"):
        form[flag] = ["false", "true"] if flags.get(flag, flag != "requirePhone") else "false"
    return form


# -- signed out ----------------------------------------------------------------------------------------
def test_landing_page_has_sign_in_and_security_headers(client):
    answer, body = page(client, "/")
    assert answer.status_code == 200
    assert "Sign in with Microsoft" in body and "Add your organisation" in body
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "<script" not in body  # the landing page needs no script at all


def test_language_from_query_then_accept_language_then_english(client):
    assert "Mit Microsoft anmelden" in page(client, "/", query_string={"lang": "de"})[1]
    assert 'lang="de"' in page(client, "/", headers={**HTML, "Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})[1]
    assert "Sign in with Microsoft" in page(client, "/", headers={**HTML, "Accept-Language": "fr-FR"})[1]
    body = page(client, "/", query_string={"lang": "de"})[1]
    assert 'href="/?lang=en"' in body and 'href="/signin?lang=de"' in body  # the switch, and links keep it


@pytest.mark.parametrize("path", ["/devices", "/settings", "/deletion", "/receipts"])
def test_signed_out_pages_ask_to_sign_in(client, path):
    answer, body = page(client, path)
    assert answer.status_code == 401 and "Sign in with Microsoft" in body
    assert f'href="/signin?next=%2F{path[1:]}"' in body  # and back to this page afterwards


def test_unknown_route_and_method_and_query(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").headers["Content-Type"] == "application/problem+json"
    html_404 = client.get("/nope", headers=HTML)
    assert html_404.status_code == 404 and html_404.headers["Content-Type"].startswith("text/html")
    not_allowed = client.delete("/devices")
    assert not_allowed.status_code == 405 and not_allowed.headers["Allow"] == "GET"
    assert client.get("/", query_string={"debug": "1"}).status_code == 400
    assert client.get("/signin", query_string={"next": "https://evil.example/"}).status_code == 400


# -- sign-in -------------------------------------------------------------------------------------------
def test_the_overview_names_everything_stored_about_the_organisation(client, emulators, tenant):
    """The overview's sentence on what is stored names what the README's data inventory holds for the
    organisation: besides its name, ID, device IDs and settings, the portal's sign-in sessions and the
    activity log, both without names (in English and German)."""
    signed_in(client, emulators, tenant)
    english = page(client, "/")[1]
    assert ("anonymous device IDs, its settings, the sign-in sessions of this portal and the activity log of "
            "changes (both without names)") in english
    german = page(client, "/", headers={"Accept-Language": "de"})[1]
    assert ("anonyme Geräte-IDs, ihre Einstellungen, die Anmeldesitzungen dieses Portals und das "
            "Änderungsprotokoll (beide ohne Namen)") in german


def test_admin_signs_in_and_sees_the_overview(client, emulators, tenant, log_lines):
    register_device(tenant)
    answer = signed_in(client, emulators, tenant)
    assert answer.headers["Location"] == "/"
    set_cookies = answer.headers.getlist("Set-Cookie")
    session_header = next(h for h in set_cookies if h.startswith(cookies.SESSION_COOKIE + "="))
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in session_header
    assert "Domain" not in session_header
    assert any(h.startswith(cookies.FLOW_COOKIE + "=;") for h in set_cookies)  # the flow cookie is single use
    overview, body = page(client, "/")
    assert overview.status_code == 200 and overview.headers["Cache-Control"] == "no-store"
    assert "Fabrikam AG" in body and tenant in body and "Registered devices" in body
    assert ">1<" in body  # one device
    # The cookie holds the tenant ID, the session ID and the CSRF secret: nothing else; the record the role.
    sealed = cookies.Sealer(support.settings().portal_session_key).unseal(
        cookies.SESSION_COOKIE, session_cookie(client).value)
    assert set(sealed) == {"t", "i", "c"} and sealed["t"] == tenant
    assert support.store().portal_sessions.get(tenant, sealed["i"]).role == "Global Administrator"
    # No user claim reached a log line.
    account = portal.accounts(emulators, tenant)["admin"]
    user = emulators.fake_microsoft().call("GET", f"/tenants/{tenant}/users/{account}")["user"]
    joined = "\n".join(log_lines)
    for claim in (account, user["id"], user["displayName"], user["givenName"], user["surname"]):
        assert claim not in joined


def test_no_token_is_kept_after_the_callback(client, emulators, tenant):
    import msal

    from functions.tenant_portal.handler import portal

    signed_in(client, emulators, tenant)
    app = portal().signin._msal()  # the process's one MSAL application
    cache = app.token_cache
    for kind in (msal.TokenCache.CredentialType.ACCESS_TOKEN, msal.TokenCache.CredentialType.ID_TOKEN,
                 msal.TokenCache.CredentialType.REFRESH_TOKEN, msal.TokenCache.CredentialType.ACCOUNT):
        assert list(cache.search(kind)) == [], kind
    assert app.get_accounts() == []


def test_app_role_admin_signs_in(client, emulators, tenant):
    signed_in(client, emulators, tenant, role="app-admin")
    assert "Fabrikam AG" in page(client, "/")[1]


@pytest.mark.parametrize("path", ["/", "/devices", "/settings", "/deletion", "/receipts"])
def test_non_admin_sees_a_clear_403_and_nothing_of_the_tenant(client, emulators, tenant, path):
    signed_in(client, emulators, tenant, role="user")
    answer, body = page(client, path)
    assert answer.status_code == 403
    assert "administrator" in body and "Fabrikam AG" not in body and tenant not in body


def test_non_admin_cannot_change_anything(client, emulators, tenant):
    signed_in(client, emulators, tenant, role="user")
    before = support.firestore_snapshot()
    csrf = portal.session_of(client).csrf_token
    assert client.post("/settings", data={"csrf": csrf, "name": "Hijacked"}).status_code == 403
    assert client.post("/settings", data=scope_form(csrf, groups=GROUP_A, photos=False)).status_code == 403
    assert client.post("/deletion", data={"csrf": csrf, "confirmName": "Fabrikam AG"}).status_code == 403
    assert support.firestore_snapshot() == before


def test_admin_of_a_tenant_not_onboarded_sees_the_onboarding_hint(client, emulators):
    stranger = str(uuid.uuid4())
    signed_in(client, emulators, stranger)
    answer, body = page(client, "/")
    assert answer.status_code == 200 and "Add your organisation" in body and "not registered" in body
    assert client.get("/devices").status_code == 303  # nothing to list: back to the start page


def test_a_tenant_deleted_meanwhile_ends_the_session(client, emulators, tenant):
    signed_in(client, emulators, tenant)
    assert page(client, "/devices")[0].status_code == 200
    support.db().document(f"tenants/{tenant}").delete()  # e.g. an operator's deletion completed
    gone = client.get("/devices")
    assert gone.status_code == 303 and gone.headers["Location"] == "/"
    assert session_cookie(client) is None
    assert page(client, "/settings")[0].status_code == 401


def test_sign_in_refusals(client, emulators, tenant):
    # A callback without the flow cookie (e.g. started in another browser).
    assert client.get("/auth/callback", query_string={"code": "x", "state": "y"}, headers=HTML).status_code == 400
    # State that does not belong to this sign-in.
    assert portal.sign_in(client, emulators, portal.accounts(emulators, tenant)["admin"],
                          state="forged").status_code == 401
    # The user cancels at Microsoft.
    started = client.get("/signin")
    back = portal.fake_signin(emulators, started.headers["Location"], None, cancel=True)
    from urllib.parse import parse_qsl, urlsplit
    refused = client.get("/auth/callback", query_string=dict(parse_qsl(urlsplit(back).query)), headers=HTML)
    assert refused.status_code == 401 and "cancelled" in refused.get_data(as_text=True)
    assert session_cookie(client) is None


def test_a_replayed_authorization_code_signs_nobody_in(client, emulators, tenant):
    from urllib.parse import parse_qsl, urlsplit

    started = client.get("/signin")
    back = urlsplit(portal.fake_signin(emulators, started.headers["Location"],
                                       portal.accounts(emulators, tenant)["admin"]))
    flow = client.get_cookie(cookies.FLOW_COOKIE).value
    assert client.get(back.path, query_string=dict(parse_qsl(back.query))).status_code == 303
    other = make_client("tenant_portal")
    other.set_cookie(cookies.FLOW_COOKIE, flow)  # the same flow and code, replayed from elsewhere
    assert other.get(back.path, query_string=dict(parse_qsl(back.query))).status_code == 401
    assert other.get_cookie(cookies.SESSION_COOKIE) is None


# -- devices -------------------------------------------------------------------------------------------
def test_devices_are_listed_in_pages_and_revoked(client, emulators, tenant):
    devices = sorted(register_device(tenant) for _ in range(27))
    signed_in(client, emulators, tenant)
    first, body = page(client, "/devices")
    assert first.status_code == 200 and all(d in body for d in devices[:25]) and devices[26] not in body
    second = page(client, "/devices", query_string={"pageToken": devices[24]})[1]
    assert devices[25] in second and devices[26] in second and devices[0] not in second
    tap = support.Tap("deletion-requests")
    try:
        revoked = client.post(f"/devices/{devices[0]}/revoke", data={"csrf": portal.csrf_of(body)})
        assert revoked.status_code == 303 and revoked.headers["Location"].startswith("/devices?revoked=")
        request_id = revoked.headers["Location"].rsplit("=", 1)[1]
        assert tap.pull(1) == [{"type": "device.delete", "tenantId": tenant, "deviceId": devices[0],
                                "requestId": request_id}]
    finally:
        tap.close()
    receipt = support.store().receipts.get(request_id)
    assert receipt.kind == "device" and receipt.tenant_subject == portal.tenant_receipt_subject(tenant)
    listed = page(client, "/receipts")[1]
    assert request_id in listed
    download = client.get(f"/receipts/{request_id}.json")
    assert download.status_code == 200 and download.get_json()["requestId"] == request_id
    assert "attachment" in download.headers["Content-Disposition"]


def test_foreign_ids_reach_nothing(client, emulators, tenant):
    other = portal.onboard(emulators, name="Other Org")
    foreign_device = register_device(other)
    foreign_receipt = support.store().receipts.create_pending(
        str(uuid.uuid4()), "device", "x" * 64, utc_now(),
        portal.tenant_receipt_subject(other)).request_id
    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/devices")[1])
    before = support.firestore_snapshot()
    assert client.post(f"/devices/{foreign_device}/revoke", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/devices/{foreign_device.upper()}/revoke", data={"csrf": csrf}).status_code == 400
    assert client.get(f"/receipts/{foreign_receipt}.json").status_code == 404
    assert client.get("/deletion", query_string={"requestId": foreign_receipt}).status_code == 404
    assert foreign_receipt not in page(client, "/receipts")[1]
    # A tenant ID in the form changes nothing: the session's tenant is the only one.
    assert client.post("/settings", data={"csrf": csrf, "name": "Renamed", "tenantId": other,
                                          "fields": "displayName"}).status_code == 303
    assert client.post("/settings", data={**scope_form(csrf, groups=GROUP_A, photos=False), "name": "Renamed",
                                          "tenantId": other}).status_code == 303
    after = support.firestore_snapshot()
    assert after[f"tenants/{other}"] == before[f"tenants/{other}"]
    assert after[f"tenants/{tenant}"]["name"] == "Renamed"
    assert after[f"tenants/{tenant}"]["settings"]["scope"]["groups"] == [GROUP_A]


# -- settings ------------------------------------------------------------------------------------------
def test_settings_are_saved(client, emulators, tenant):
    signed_in(client, emulators, tenant)
    body = page(client, "/settings")[1]
    assert 'value="Fabrikam AG"' in body and '<option value="DE" selected>' in body
    saved = client.post("/settings", data={"csrf": portal.csrf_of(body), "name": "Fabrikam SE",
                                           "fields": ["mobilePhone", "displayName"], "defaultRegion": "AT"})
    assert saved.status_code == 303 and saved.headers["Location"] == "/settings?saved=1"
    stored = support.store().tenants.get(tenant)
    assert stored.name == "Fabrikam SE" and stored.settings == {"fields": ["displayName", "mobilePhone"],
                                                                "defaultRegion": "AT"}
    cleared = client.post("/settings", data={"csrf": portal.csrf_of(body), "name": "Fabrikam SE",
                                             "defaultRegion": ""})
    assert cleared.status_code == 303
    assert support.store().tenants.get(tenant).settings == {"fields": []}


def test_scope_and_photos_are_shown_and_saved(client, emulators, tenant):
    signed_in(client, emulators, tenant)
    body = page(client, "/settings")[1]
    # The defaults, shown though not stored: the whole directory, disabled and guest accounts left out, photos on.
    assert '<textarea id="groups" name="groups"' in body and "></textarea>" in body
    assert 'id="scope-excludeDisabled" type="checkbox" name="excludeDisabled" value="true" checked' in body
    assert 'id="scope-excludeGuests" type="checkbox" name="excludeGuests" value="true" checked' in body
    assert 'id="scope-requirePhone" type="checkbox" name="requirePhone" value="true">' in body
    assert 'id="photos" type="checkbox" name="photos" value="true" aria-describedby="photos-hint" checked' in body
    assert "Entra" in body and "one per line" in body and "once in full" in body
    form = scope_form(portal.csrf_of(body), groups=f"{GROUP_A}\r\n\r\n  {GROUP_B.upper()}  \r\n",
                      photos=False, excludeGuests=False, requirePhone=True)
    saved = client.post("/settings", data=form)
    assert saved.status_code == 303 and saved.headers["Location"] == "/settings?saved=scope"
    settings = support.store().tenants.get(tenant).settings
    assert settings == {"fields": ["displayName", "mobilePhone"], "defaultRegion": "DE", "photos": False,
                        "scope": {"groups": [GROUP_A, GROUP_B], "excludeDisabled": True, "excludeGuests": False,
                                  "requirePhone": True}}
    shown = page(client, saved.headers["Location"])[1]
    assert "fetches the directory once in full" in notice(shown)  # a change of scope: one full sync
    assert f">{GROUP_A}\n{GROUP_B}</textarea>" in shown
    assert 'name="excludeGuests" value="true">' in shown and 'name="requirePhone" value="true" checked' in shown
    assert 'name="photos" value="true" aria-describedby="photos-hint">' in shown
    # Saving again without a change of scope says nothing about a full sync; emptying the groups is a change.
    again = client.post("/settings", data={**form, "name": "Fabrikam SE"})
    assert again.headers["Location"] == "/settings?saved=1"
    assert "saved" in notice(page(client, again.headers["Location"])[1])
    assert "in full" not in notice(page(client, again.headers["Location"])[1])
    emptied = client.post("/settings", data={**form, "groups": "", "photos": ["false", "true"]})
    assert emptied.headers["Location"] == "/settings?saved=scope"
    stored = support.store().tenants.get(tenant)
    assert stored.name == "Fabrikam AG" and stored.settings["scope"]["groups"] == [] and stored.settings["photos"]


def test_a_form_without_scope_or_photos_keeps_them(client, emulators, tenant):
    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/settings")[1])
    assert client.post("/settings", data=scope_form(csrf, groups=GROUP_A, photos=False)).status_code == 303
    kept = support.store().tenants.get(tenant).settings
    renamed = client.post("/settings", data={"csrf": csrf, "name": "Renamed", "fields": "displayName",
                                             "defaultRegion": "DE"})
    assert renamed.status_code == 303 and renamed.headers["Location"] == "/settings?saved=1"
    settings = support.store().tenants.get(tenant).settings
    assert settings["scope"] == kept["scope"] and settings["photos"] is False and settings["fields"] == ["displayName"]


@pytest.mark.parametrize("form", [
    {"name": "", "fields": "displayName"},
    {"name": "x" * 300},
    {"name": "Bad\x07Name"},
    {"name": "Ok", "fields": "password"},
    {"name": "Ok", "defaultRegion": "XX"},
    {"name": "Ok", "defaultRegion": "de"},
    {"name": "Ok", "photos": "yes"},
    {"name": "Ok", "requirePhone": ["false", "on"]},
])
def test_bad_settings_change_nothing(client, emulators, tenant, form):
    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/settings")[1])
    before = support.firestore_snapshot()
    answer = client.post("/settings", data={"csrf": csrf, **form}, headers=HTML)
    assert answer.status_code == 400 and 'role="alert"' in answer.get_data(as_text=True)
    assert support.firestore_snapshot() == before


TWENTY_ONE = "\n".join(str(uuid.UUID(int=i + 1)) for i in range(21))


@pytest.mark.parametrize("groups, lang, message", [
    ("Sales team", "en", "Each line under Groups must be one group object ID"),
    (f"{GROUP_A}\n{GROUP_B[:-1]}", "en", "Each line under Groups must be one group object ID"),
    (f"{GROUP_A}, {GROUP_B}", "de", "Jede Zeile unter Gruppen muss genau eine Objekt-ID"),
    (f"{GROUP_A}\n{GROUP_A.upper()}", "en", "A group ID is listed more than once"),
    (f"{GROUP_B}\n{GROUP_B}", "de", "Eine Gruppen-ID steht mehrfach unter Gruppen"),
    (TWENTY_ONE, "en", "Groups takes at most 20 group IDs"),
    (TWENTY_ONE, "de", "Unter Gruppen sind höchstens 20 Gruppen-IDs möglich"),
])
def test_bad_scope_shows_the_form_again_with_the_error_and_changes_nothing(client, emulators, tenant, groups, lang,
                                                                          message):
    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/settings")[1])
    assert client.post("/settings", data=scope_form(csrf, groups=GROUP_A)).status_code == 303
    before = support.firestore_snapshot()
    answer = client.post("/settings", data=scope_form(csrf, groups=groups, photos=False, requirePhone=True),
                         query_string={"lang": lang}, headers=HTML)
    body = answer.get_data(as_text=True)
    assert answer.status_code == 400 and support.firestore_snapshot() == before
    summary = body.split('role="alert"', 1)[1].split("</div>", 1)[0]
    assert message in summary and 'href="#groups"' in summary  # the summary leads to the field
    assert ("Nothing was changed." if lang == "en" else "Es wurde nichts geändert.") in summary
    # The field keeps what was typed and says what is wrong; so do the boxes.
    assert 'aria-describedby="groups-hint groups-error" aria-invalid="true">' + groups + "</textarea>" in body
    assert message in body.split('id="groups-error">', 1)[1].split("</p>", 1)[0]
    assert 'name="requirePhone" value="true" checked' in body
    assert 'name="photos" value="true" aria-describedby="photos-hint">' in body
    assert f'lang="{lang}"' in body


def test_twenty_groups_are_accepted(client, emulators, tenant):
    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/settings")[1])
    twenty = [str(uuid.UUID(int=i + 1)) for i in range(20)]
    assert client.post("/settings", data=scope_form(csrf, groups="\n".join(twenty))).status_code == 303
    assert support.store().tenants.get(tenant).settings["scope"]["groups"] == twenty


# -- what the relay makes of it ------------------------------------------------------------------------
def relay_device(stack, tenant_id) -> dict[str, str]:
    from tests import tokens

    device_id, access = str(uuid.uuid4()), tokens.token(stack, tenant_id)
    assert make_client("register_device").post("/", json={"deviceId": device_id},
                                               headers={"Authorization": f"Bearer {access}"}).status_code == 201
    return {"Authorization": f"Bearer {access}", "X-Device-Id": device_id}


def test_the_relay_honours_the_scope_and_photos_saved_here(client, emulators, tenant):
    from tests.fake_ms import FakeMicrosoftControl
    from tests.functions.test_relay_contacts import sync

    fake = FakeMicrosoftControl(emulators)
    members = [entry["user"]["id"] for entry in fake.users(tenant) if entry["user"]
               and entry["user"]["accountEnabled"] and entry["user"]["userType"] == "Member"]
    inner = fake.create_group(tenant, users=members[20:25])
    group = fake.create_group(tenant, users=members[5:15], groups=[inner])
    fake.photos(tenant, set=[{"user": members[6], "largest": 96}, {"user": members[40], "largest": 96}])
    relay, device = make_client("relay_contacts"), relay_device(emulators, tenant)
    before = sync(relay, device)
    assert set(members) <= {line["id"] for line in before if line["op"] == "upsert"}
    assert relay.get(f"/photos/{members[40]}", headers=device).status_code == 200

    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/settings")[1])
    assert client.post("/settings", data=scope_form(csrf, groups=group)).status_code == 303
    scoped = sync(relay, device, cursor=before[-1]["cursor"])
    assert scoped[0] == {"op": "reset"}  # the scope changed: one full sync, of the group's members only
    assert {line["id"] for line in scoped if line["op"] == "upsert"} == set(members[5:15] + members[20:25])
    assert relay.get(f"/photos/{members[6]}", headers=device).status_code == 200
    assert relay.get(f"/photos/{members[40]}", headers=device).status_code == 404  # out of scope

    assert client.post("/settings", data=scope_form(csrf, groups=group, photos=False)).status_code == 303
    off = relay.get(f"/photos/{members[6]}", headers=device)
    assert off.status_code == 404 and off.headers["Content-Type"] == "application/problem+json"
    changes = relay.post("/photos/changes", json={"etags": {members[6]: '"x"'}}, headers=device)
    assert changes.status_code == 404
    assert sync(relay, device, cursor=scoped[-1]["cursor"])[0] != {"op": "reset"}  # photos do not reset syncs


# -- refusals of every POST ----------------------------------------------------------------------------
def test_csrf_and_cross_site_posts_are_refused(client, emulators, tenant):
    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/settings")[1])
    form = {**scope_form(""), "name": "Changed", "groups": GROUP_A, "photos": "false"}
    del form["csrf"]
    before = support.firestore_snapshot()
    assert client.post("/settings", data=form, headers=HTML).status_code == 403
    assert client.post("/settings", data={**form, "csrf": "0" * 64}).status_code == 403
    assert client.post("/settings", data={**form, "csrf": csrf},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/settings", data={**form, "csrf": csrf},
                       headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post("/settings", data={**form, "csrf": csrf},
                       headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert support.firestore_snapshot() == before
    # The portal's own form as Chromium sends it (Referrer-Policy: no-referrer makes Origin "null").
    assert client.post("/settings", data={**form, "csrf": csrf},
                       headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}).status_code == 303
    assert client.post("/settings", data={**form, "csrf": csrf},
                       headers={"Origin": emulators.portal_url}).status_code == 303


def test_oversized_and_malformed_forms_change_nothing(client, emulators, tenant):
    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/settings")[1])
    before = support.firestore_snapshot()
    assert client.post("/settings", data={"csrf": csrf, "name": "x" * 10000}).status_code == 413
    assert client.post("/settings", data=json.dumps({"csrf": csrf}),
                       content_type="application/json").status_code == 415
    many = "&".join(f"f{i}=1" for i in range(100)) + f"&csrf={csrf}"
    assert client.post("/settings", data=many,
                       content_type="application/x-www-form-urlencoded").status_code == 400
    assert support.firestore_snapshot() == before


# -- sessions ------------------------------------------------------------------------------------------
def _sealed(tenant_id, session_id, csrf="A" * 43, key=None):
    sealer = cookies.Sealer(key or support.settings().portal_session_key)
    return sealer.seal(cookies.SESSION_COOKIE, {"t": tenant_id, "i": session_id, "c": csrf})


def _record(tenant_id, created_ago, used_ago, role="Global Administrator"):
    """A session record as a sign-in `created_ago` seconds ago, last used `used_ago` seconds ago, would be."""
    from datetime import timedelta

    now = utc_now()
    session_id = cookies._b64(uuid.uuid4().bytes)
    created, used = now - timedelta(seconds=created_ago), now - timedelta(seconds=used_ago)
    support.store().portal_sessions.create(tenant_id, session_id, role, created, cookies.expiry(created, used))
    support.db().document(f"tenants/{tenant_id}/portalSessions/{session_id}").update({"lastUsedAt": used})
    return session_id


@pytest.mark.parametrize("created_ago, used_ago", [
    (31 * 60, 31 * 60),            # idle for 31 minutes
    (8 * 3600 + 60, 60),           # older than 8 hours, though used a minute ago
])
def test_expired_sessions_are_refused_cleared_and_their_records_deleted(client, emulators, tenant, created_ago,
                                                                       used_ago):
    session_id = _record(tenant, created_ago, used_ago)
    client.set_cookie(cookies.SESSION_COOKIE, _sealed(tenant, session_id))
    answer, body = page(client, "/devices")
    assert answer.status_code == 401 and "session has ended" in body
    assert session_cookie(client) is None
    assert support.store().portal_sessions.get(tenant, session_id) is None


def test_a_fresh_genuine_session_is_accepted_and_its_use_recorded_once_a_minute(client, emulators, tenant):
    session_id = _record(tenant, 3600, 29 * 60)
    client.set_cookie(cookies.SESSION_COOKIE, _sealed(tenant, session_id))
    before = support.store().portal_sessions.get(tenant, session_id)
    assert page(client, "/devices")[0].status_code == 200
    used = support.store().portal_sessions.get(tenant, session_id)
    assert used.created_at == before.created_at and (utc_now() - used.last_used_at).total_seconds() < 30
    assert used.expires_at == cookies.expiry(used.created_at, used.last_used_at)
    assert page(client, "/devices")[0].status_code == 200
    assert support.store().portal_sessions.get(tenant, session_id) == used  # within the minute: not written


def test_tampered_or_foreign_cookies_are_refused(client, emulators, tenant):
    session_id = _record(tenant, 60, 60)
    genuine = _sealed(tenant, session_id)
    tampered = genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BB")
    other_key = _sealed(tenant, session_id, key=b"another-key-of-32-bytes-length!!")
    flow_as_session = cookies.Sealer(support.settings().portal_session_key).seal(
        cookies.FLOW_COOKIE, {"t": tenant, "i": session_id, "c": "A" * 43})
    other_tenant = _sealed(str(uuid.uuid4()), session_id)
    unknown_id = _sealed(tenant, cookies._b64(uuid.uuid4().bytes))
    for value in (tampered, other_key, flow_as_session, other_tenant, unknown_id, "garbage", "x" * 5000):
        client.set_cookie(cookies.SESSION_COOKIE, value)
        assert page(client, "/devices")[0].status_code == 401
    client.set_cookie(cookies.SESSION_COOKIE, genuine)
    assert page(client, "/devices")[0].status_code == 200


def test_sign_out_ends_the_session(client, emulators, tenant):
    signed_in(client, emulators, tenant)
    csrf = portal.csrf_of(page(client, "/")[1])
    assert client.post("/signout", data={"csrf": csrf}).status_code == 303
    assert session_cookie(client) is None
    assert page(client, "/devices")[0].status_code == 401


# -- deletion ------------------------------------------------------------------------------------------
def test_delete_all_needs_the_typed_name(client, emulators, tenant):
    signed_in(client, emulators, tenant, reauth=True)
    body = page(client, "/deletion")[1]
    assert "Delete all data" in body and "Fabrikam AG" in body
    before = support.firestore_snapshot()
    wrong = client.post("/deletion", data={"csrf": portal.csrf_of(body), "confirmName": "fabrikam ag"},
                        headers=HTML)
    assert wrong.status_code == 400 and "does not match" in wrong.get_data(as_text=True)
    assert support.firestore_snapshot() == before
    accepted = client.post("/deletion", data={"csrf": portal.csrf_of(body), "confirmName": "Fabrikam AG"})
    assert accepted.status_code == 303
    request_id = accepted.headers["Location"].rsplit("=", 1)[1]
    stored = support.store().tenants.get(tenant)
    assert stored.status == "deleting" and stored.deletion_request_id == request_id
    progress, text = page(client, accepted.headers["Location"])
    assert progress.status_code == 200 and "in progress" in text and 'src="/assets/portal.js"' in text
    # While deleting, other pages lead to the progress page and changes are refused.
    assert client.get("/devices").headers["Location"] == "/deletion"
    assert client.post("/deletion", data={"csrf": portal.csrf_of(text), "confirmName": "Fabrikam AG"}
                       ).status_code == 303  # _tenant sends a deleting tenant to its progress page
    assert support.store().tenants.get(tenant).deletion_request_id == request_id


def test_static_files_and_nothing_else(client):
    css = client.get("/assets/portal.css")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert client.get("/assets/../handler.py").status_code == 404
    assert client.get("/assets/handler.py").status_code == 404


# -- the ID token: everything MSAL leaves to the application -------------------------------------------
@pytest.fixture
def signin(emulators):
    from functions.tenant_portal.handler import portal

    return portal().signin


def _id_token(stack, tenant_id, flow_nonce="n" * 22, **overrides):
    import hashlib

    from tests import tokens

    now = int(time.time())
    body = {"aud": tokens.ENTRA_CLIENT_ID, "iss": f"{stack.urls['entra']}/{tenant_id}/v2.0", "tid": tenant_id,
            "iat": now - 10, "nbf": now - 10, "exp": now + 3600, "ver": "2.0", "sub": "s" * 43,
            "nonce": hashlib.sha256(flow_nonce.encode()).hexdigest(), "wids": [
                "62e90394-69f5-4237-9190-012177145e10"]}
    return tokens.overridden(body, overrides)


def test_a_valid_id_token_names_the_tenant_and_the_admin(signin, emulators):
    from tests import tokens

    tenant_id = str(uuid.uuid4())
    claims = signin.validate_id_token(tokens.mint(emulators, _id_token(emulators, tenant_id)), "n" * 22)
    assert claims["tid"] == tenant_id


@pytest.mark.parametrize("overrides, reason", [
    ({"nonce": "0" * 64}, "id-token-nonce"),
    ({"nonce": None}, "id-token-invalid"),
    ({"aud": str(uuid.uuid4())}, "id-token-invalid"),
    ({"exp": 1, "nbf": 0, "iat": 0}, "id-token-invalid"),
    ({"iss": "https://sts.windows.net/{tid}/"}, "id-token-issuer"),
    ({"iss": "https://login.microsoftonline.com/{tid}/v2.0"}, "id-token-issuer"),
    ({"tid": "not-a-guid"}, "id-token-tenant"),
])
def test_id_tokens_are_refused(signin, emulators, overrides, reason):
    from functions.tenant_portal.signin import SigninRefused
    from tests import tokens

    tenant_id = str(uuid.uuid4())
    overrides = {k: v.replace("{tid}", tenant_id) if isinstance(v, str) else v for k, v in overrides.items()}
    with pytest.raises(SigninRefused) as refused:
        signin.validate_id_token(tokens.mint(emulators, _id_token(emulators, tenant_id, **overrides)), "n" * 22)
    assert refused.value.reason == reason


def test_with_max_age_an_id_token_needs_a_recent_auth_time(signin, emulators):
    """ASVS 3.6.2, our own check behind MSAL's: with `max_age` an ID token without `auth_time`, or with one
    older than max_age (plus a minute's skew) or to come, is refused; without max_age it is not needed."""
    from functions.tenant_portal.signin import SigninRefused
    from tests import tokens

    tenant_id, now = str(uuid.uuid4()), int(time.time())
    assert "auth_time" not in signin.validate_id_token(tokens.mint(emulators, _id_token(emulators, tenant_id)),
                                                       "n" * 22)
    recent = tokens.mint(emulators, _id_token(emulators, tenant_id, auth_time=now - 60))
    assert signin.validate_id_token(recent, "n" * 22, 600)["auth_time"] == now - 60
    for auth_time in (None, now - 700, now + 600, True, "now"):
        token = tokens.mint(emulators, _id_token(emulators, tenant_id, auth_time=auth_time))
        with pytest.raises(SigninRefused) as refused:
            signin.validate_id_token(token, "n" * 22, 600)
        assert refused.value.reason == "signin-not-recent"


def test_id_tokens_not_signed_by_the_authority_are_refused(signin, emulators):
    from functions.tenant_portal.signin import SigninRefused
    from tests import tokens

    body = _id_token(emulators, str(uuid.uuid4()))
    for forged in (tokens.signed_by_outside_key(emulators, body), tokens.unknown_kid(emulators, body),
                   tokens.hs256_with_public_key(emulators, body), tokens.unsigned(body, "kid")):
        with pytest.raises(SigninRefused):
            signin.validate_id_token(forged, "n" * 22)


@pytest.mark.parametrize("claims, admin", [
    ({"wids": ["62e90394-69f5-4237-9190-012177145e10"]}, True),
    ({"wids": ["e8611ab8-c189-46e8-94e1-60213ab1f814"]}, True),
    ({"wids": ["9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"]}, True),
    ({"wids": ["158c047a-c907-4556-b7ef-446551a6b5f7"]}, True),
    ({"roles": ["Tenant.Admin"]}, True),
    ({"wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509"], "roles": ["Tenant.Reader"]}, False),
    ({"wids": "62e90394-69f5-4237-9190-012177145e10"}, False),  # not a list
    ({}, False),
])
def test_admin_by_directory_role_or_app_role(claims, admin):
    from functions.tenant_portal.signin import is_admin

    assert is_admin(claims) is admin


# -- the message catalogues ----------------------------------------------------------------------------
def test_both_catalogues_hold_the_same_keys_and_every_key_the_templates_use():
    import re

    from functions.tenant_portal.pages import HERE, catalogues

    english, german = catalogues()["en"], catalogues()["de"]
    assert set(english) == set(german)
    assert all(text.strip() for text in [*english.values(), *german.values()])
    used = set()
    for template in (HERE / "templates").glob("*.html"):
        used |= set(re.findall(r"t\('([a-zA-Z0-9_.-]+)'[,)]", template.read_text()))
    # Keys the templates build from values: every value they can take.
    from shared.store.schema import RELAY_FIELDS, SCOPE_FLAGS, DeletionKind, ReceiptStatus, TenantStatus

    used |= {f"field.{name}" for name in RELAY_FIELDS} | {f"kind.{kind}" for kind in DeletionKind}
    used |= {f"settings.scope.{flag}" for flag in SCOPE_FLAGS}
    used |= {f"error.{slug}" for slug in ("invalid-name", "invalid-settings", "invalid-scope-group",
                                          "duplicate-scope-group", "too-many-scope-groups")}
    used |= {f"status.{status}" for status in [*TenantStatus, *ReceiptStatus]}
    used |= {f"error.title.{code}" for code in (400, 401, 403, 404, 405, 409, 413, 415, 500, 503)}
    used |= {f"error.status.{code}" for code in (400, 401, 403, 404, 405, 409, 413, 415, 500, 503)}
    from functions.tenant_portal.views.onboarding import ONBOARDING_REFUSALS

    used |= {f"onboard.{outcome}.{part}" for outcome in ONBOARDING_REFUSALS for part in ("title", "text")}
    assert used <= set(english), sorted(used - set(english))
    # Placeholders agree, so a German page never lacks a value the English one shows.
    for key in english:
        assert set(re.findall(r"{(\w+)}", english[key])) == set(re.findall(r"{(\w+)}", german[key])), key


# -- fuzzing: whatever comes in, a clear answer and no change ------------------------------------------
_SEGMENTS = ["devices", "settings", "deletion", "receipts", "revoke", "signin", "signout", "auth", "callback",
             "assets", "portal.css", "onboard", "..", "%00", "x.json", str(uuid.uuid4()), "A" * 300]


def test_fuzzed_requests_get_a_clear_answer_and_change_nothing(client, emulators, tenant):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    signed_in(client, emulators, tenant)
    before = support.firestore_snapshot()
    paths = st.lists(st.sampled_from(_SEGMENTS), min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))
    forms = st.dictionaries(st.sampled_from(["csrf", "name", "fields", "defaultRegion", "groups", "photos",
                                             "requirePhone", "confirmName", "tenantId", "lang", "x"]),
                            st.text(max_size=40), max_size=5)
    queries = st.dictionaries(st.sampled_from(["lang", "pageToken", "requestId", "next", "saved", "revoked", "q"]),
                              st.text(max_size=40), max_size=3)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]), path=paths, form=forms, query=queries,
           html=st.booleans())
    def probe(method, path, form, query, html):
        headers = HTML if html else {"Accept": "application/json"}
        answer = client.open(path, method=method, data=form if method == "POST" else None, query_string=query,
                             headers=headers)
        assert answer.status_code in (200, 302, 303, 400, 401, 403, 404, 405, 409, 413, 415), (
            method, path, answer.status_code)
        if answer.status_code >= 400 and not html:
            assert answer.headers["Content-Type"] == "application/problem+json"
            assert answer.get_json()["status"] == answer.status_code
        for name in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
            assert name in answer.headers

    probe()
    after = support.firestore_snapshot()
    assert after == before  # no valid CSRF token was ever sent: nothing changed


def test_sign_in_returns_to_the_page_asked_for_in_its_language(client, emulators, tenant):
    from urllib.parse import parse_qsl, urlsplit

    started = client.get("/signin", query_string={"next": "/devices", "lang": "de"})
    back = urlsplit(portal.fake_signin(emulators, started.headers["Location"],
                                       portal.accounts(emulators, tenant)["admin"]))
    answer = client.get(back.path, query_string=dict(parse_qsl(back.query)))
    assert answer.status_code == 303 and answer.headers["Location"] == "/devices?lang=de"
    assert "Geräte" in page(client, answer.headers["Location"])[1]
