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


def sign_in(client, stack, login: str, **callback_extra):
    """Signs the Flask test client in as `login`; returns the callback's response."""
    started = client.get("/signin")
    assert started.status_code == 302, started.get_data(as_text=True)
    back = urlsplit(fake_signin(stack, started.headers["Location"], login))
    query = dict(parse_qsl(back.query), **callback_extra)
    return client.get(back.path, query_string=query)


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
