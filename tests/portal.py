"""Signing in to tenant_portal as the demo users of the fake Entra ID (shared by the portal's tests)."""
from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qsl, urlsplit

import requests

from shared.events import tenant_subject

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def accounts(stack, tenant_id: str) -> dict[str, str]:
    """{"admin", "user", "app-admin": userPrincipalName} of the tenant's directory in the fake Entra ID."""
    return stack.portal_accounts(tenant_id)[tenant_id]


def fake_signin(stack, authorize_url: str, login: str | None, cancel: bool = False) -> str:
    """What the fake's sign-in page does when a person picks `login`: the redirect back (its Location)."""
    base, _, query = authorize_url.partition("?")
    form = dict(parse_qsl(query))
    if cancel:
        form["cancel"] = "1"
    elif login:
        form["login"] = login
    answer = requests.post(base, data=form, allow_redirects=False, verify=stack.urls["ca"], timeout=30)
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["Location"]


def sign_in(client, stack, login: str, reauth: bool = False, **callback_extra):
    """Signs the Flask test client in as `login` (with `reauth`, as the way to "Delete all data" does: Entra ID
    is asked for an authentication at most 10 minutes old); returns the callback's response."""
    started = client.get("/signin?next=/deletion&reauth=1" if reauth else "/signin")
    assert started.status_code == 302, started.get_data(as_text=True)
    back = urlsplit(fake_signin(stack, started.headers["Location"], login))
    query = dict(parse_qsl(back.query), **callback_extra)
    return client.get(back.path, query_string=query)


def session_of(client):
    """The session in a Flask test client's cookie (tenant, session ID, CSRF secret; the role from its record)."""
    from functions.tenant_portal import session as cookies
    from tests import support

    sealed = cookies.Sealer(support.settings().portal_session_key).unseal(
        cookies.SESSION_COOKIE, client.get_cookie(cookies.SESSION_COOKIE).value)
    record = support.store().portal_sessions.get(sealed["t"], sealed["i"])
    return cookies.Session(sealed["t"], sealed["i"], record.role if record else "", sealed["c"])


def csrf_of(page_html: str) -> str:
    match = CSRF.search(page_html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def onboard(stack, tenant_id: str | None = None, name: str = "Fabrikam AG", **settings) -> str:
    tenant_id = tenant_id or str(uuid.uuid4())
    assert stack.onboard(tenant_id, name, settings or None) == 201
    return tenant_id


def tenant_receipt_subject(tenant_id: str) -> str:
    from tests import support

    return tenant_subject(support.settings().receipt_key, tenant_id)


class PortalVisitor:
    """A browser-like client of the portal process: keeps the portal's cookies itself (requests would not
    send `Secure` cookies over the stack's loopback http, which browsers treat as a secure origin)."""

    def __init__(self, stack):
        self.stack = stack
        self.base = stack.urls["tenant_portal"]
        self.cookies: dict[str, str] = {}
        self.http = requests.Session()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Accept": "text/html", **kwargs.pop("headers", {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        answer = self.http.request(method, self.base + path, headers=headers, allow_redirects=False, timeout=30,
                                   **kwargs)
        for header in answer.raw.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return answer

    def sign_in(self, login: str) -> tuple[requests.Response, str]:
        """(the callback's answer, the authorization code the fake Entra ID issued)."""
        started = self.request("GET", "/signin")
        assert started.status_code == 302, started.text[:300]
        back = urlsplit(fake_signin(self.stack, started.headers["Location"], login))
        code = dict(parse_qsl(back.query))["code"]
        return self.request("GET", f"{back.path}?{back.query}"), code


def onboard_through_portal(stack, name: str = "Northwind Traders AG") -> tuple[str, dict[str, str]]:
    """A new customer onboards itself over HTTP, as a browser would: a directory without the app's consent,
    its admin signs in to the portal process, names the organisation, accepts the fake Entra ID's consent
    page, and the callback leads to the overview. Returns (tenant ID, what passed by: the admin's sign-in
    name, the consent `state`, the authorization code) for scans that nothing of it was kept."""
    from tests.fake_ms import FakeMicrosoftControl

    tenant_id = str(uuid.uuid4())
    fake = FakeMicrosoftControl(stack)
    fake.consent(tenant_id, "not_consented")
    login = accounts(stack, tenant_id)["admin"]
    visitor = PortalVisitor(stack)
    signed_in, code = visitor.sign_in(login)
    assert signed_in.status_code == 303, signed_in.text[:300]
    form = visitor.request("GET", "/onboard")
    assert form.status_code == 200, form.text[:300]
    started = visitor.request("POST", "/onboard", data={"csrf": csrf_of(form.text), "name": name})
    assert started.status_code == 302, started.text[:300]
    state = dict(parse_qsl(urlsplit(started.headers["Location"]).query))["state"]
    back = urlsplit(fake.answer_consent_page(started.headers["Location"], "accept"))
    done = visitor.request("GET", f"{back.path}?{back.query}")
    assert done.status_code == 303 and done.headers["Location"] == "/?onboarded=1", done.text[:300]
    assert name in visitor.request("GET", "/").text
    return tenant_id, {"login": login, "state": state, "code": code}
