"""The one client of the fakes' control API (`/_fake/...`, see README.md), for tests, benchmarks and the
local stack's demo client.

    fake = FakeMicrosoftClient(entra_url, ca_pem)      # or LocalStack.fake_microsoft()
    fake.reset(); fake.directory(tenant, 2000); fake.faults({"target": "delta", "status": 429, "count": 2})
    token = fake.mint("user", tenant)

It trusts only the fakes' CA and ignores the machine's CA and proxy variables (`REQUESTS_CA_BUNDLE` in the
environment would override `session.verify`).
"""
from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import requests
import requests.adapters


class FakeMicrosoftError(RuntimeError):
    """The control API refused a call (its answer is in the message)."""


def trusting_session(ca: str | None, pool: int = 10) -> requests.Session:
    """A requests session that trusts `ca` (the fakes' CA file; None: the default roots) and nothing from the
    environment (`REQUESTS_CA_BUNDLE`, proxies), with a connection pool of `pool` per host."""
    session = requests.Session()
    session.trust_env = False
    if ca is not None:
        session.verify = ca
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class FakeMicrosoftClient:
    """`/_fake/...` on the fake Entra ID (the Graph port serves the same API)."""

    def __init__(self, entra_url: str, ca: str | None, timeout: float = 60.0) -> None:
        self.base = entra_url.rstrip("/") + "/_fake"
        self.timeout = timeout
        self.session = trusting_session(ca)

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        """One control call; the decoded JSON answer. FakeMicrosoftError unless the fake answers 200."""
        response = self.session.request(method, f"{self.base}/{path.lstrip('/')}", json=body, timeout=self.timeout)
        if response.status_code != 200:
            raise FakeMicrosoftError(f"fake {method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    # ---- state and counters --------------------------------------------------------------------
    def reset(self, keys: bool = False) -> None:
        """Apps, tenants, directories, settings, faults and counters back to start; with `keys`, also every
        signing key but the current one unpublished."""
        self.call("POST", "reset", {"keys": True} if keys else None)

    def stats(self) -> dict:
        return self.call("GET", "stats")

    def reset_stats(self) -> None:
        self.call("DELETE", "stats")

    def configure(self, **settings: Any) -> dict:
        """`POST /_fake/config` (settings, `tenant`, `faults`, `replace_faults`)."""
        return self.call("POST", "config", settings)

    def faults(self, *rules: dict, **settings: Any) -> None:
        """Replaces every fault rule with `rules` (none: no faults), with optional settings."""
        self.configure(faults=list(rules), replace_faults=True, **settings)

    # ---- tokens --------------------------------------------------------------------------------
    def mint(self, kind: str = "raw", tenant: str | None = None, **options: Any) -> str:
        """A signed token (`POST /_fake/mint`: claims, header, key, alg, audience, username, …)."""
        return self.call("POST", "mint", {"kind": kind, "tenant": tenant, **options})["token"]

    # ---- admin consent -------------------------------------------------------------------------
    def consent(self, tenant_id: str, state: str | None = None, roles: list[str] | None | object = ...,
                scopes: list[str] | None | object = ...) -> dict:
        """Sets a tenant's consent without the page: `state` one of `granted`, `not_consented` (no service
        principal: AADSTS700016, Graph 403), `no_service_principal`, `no_roles`; `roles` the application
        permissions it grants (None: the app's own; left out: unchanged); `scopes` the delegated permissions
        of the app's own API it covers (None: the registration's required ones). Returns the tenant's
        description."""
        body: dict[str, Any] = {}
        if state is not None:
            body["state"] = state
        if roles is not ...:
            body["roles"] = roles
        if scopes is not ...:
            body["scopes"] = scopes
        return self.call("POST", f"tenants/{tenant_id}/consent", body)

    def graph_claims(self, tenant_id: str, token: str) -> dict:
        """What an opaque Graph token of the fake Entra ID says (only the fake can read it)."""
        return self.call("POST", f"tenants/{tenant_id}/graph-token", {"token": token})

    def answer_consent_page(self, consent_url: str, decision: str = "accept") -> str:
        """Opens an admin-consent URL like a browser (`GET`), submits the page's Accept (`accept`) or Cancel
        (`decline`) form, and returns the redirect's `Location` (the app's callback with the answer)."""
        page = self.session.get(consent_url, timeout=self.timeout, allow_redirects=False)
        if page.status_code != 200:
            raise FakeMicrosoftError(f"consent page: {page.status_code} {page.text[:300]}")
        form = re.search(r'<form method="post" action="([^"]+)" id="' + re.escape(decision) +
                         r'-form"><input type="hidden" name="request" value="([^"]+)">', page.text)
        if form is None:
            raise FakeMicrosoftError(f"the consent page has no {decision} form")
        action = urljoin(consent_url, html.unescape(form.group(1)))
        answer = self.session.post(action, data={"request": html.unescape(form.group(2)), "decision": decision},
                                   timeout=self.timeout, allow_redirects=False)
        if answer.status_code != 302:
            raise FakeMicrosoftError(f"consent decision: {answer.status_code} {answer.text[:300]}")
        return answer.headers["Location"]

    # ---- directories ---------------------------------------------------------------------------
    def directory(self, tenant_id: str, size: int) -> None:
        """A fresh directory of `size` users for the tenant (older delta tokens expire)."""
        self.call("POST", f"tenants/{tenant_id}/directory", {"size": size})

    def iter_users(self, tenant_id: str, page: int = 1000) -> Iterator[dict]:
        """Every entry `{"index", "removed", "user"}` of the tenant's directory, removed users included."""
        offset = 0
        while True:
            answer = self.call("GET", f"tenants/{tenant_id}/users?offset={offset}&limit={page}")
            yield from answer["users"]
            offset += len(answer["users"])
            if offset >= answer["total"] or not answer["users"]:
                return

    def users(self, tenant_id: str) -> list[dict]:
        return list(self.iter_users(tenant_id))

    def changes(self, tenant_id: str, **body: Any) -> dict:
        """`update`, `remove`, `restore`, `add` (see README.md) applied to the tenant's directory."""
        return self.call("POST", f"tenants/{tenant_id}/changes", body)

    def demo_user(self, tenant_id: str) -> dict:
        """`{"username", "password", "id", "displayName", "index"}` of the tenant's first live user."""
        return self.call("GET", f"tenants/{tenant_id}/demo-user")

    # ---- groups and photos ---------------------------------------------------------------------
    def create_group(self, tenant_id: str, **spec: Any) -> str:
        """A group (`users`: refs or {"range": [a, b]}, `groups`: nested group ids, `devices`,
        `servicePrincipals`, `orgContacts`: counts); returns its id."""
        return self.call("POST", f"tenants/{tenant_id}/groups", spec)["id"]

    def group_members(self, tenant_id: str, group_id: str, add: dict | None = None, remove: dict | None = None) -> int:
        """Adds/removes direct members (`users`, `groups`); returns the groups' change version."""
        return self.call("POST", f"tenants/{tenant_id}/groups/{group_id}/members",
                         {"add": add or {}, "remove": remove or {}})["version"]

    def delete_group(self, tenant_id: str, group_id: str) -> None:
        self.call("DELETE", f"tenants/{tenant_id}/groups/{group_id}")

    def transitive_user_ids(self, tenant_id: str, group_id: str) -> list[str]:
        return self.call("GET", f"tenants/{tenant_id}/groups/{group_id}/transitive-users")["ids"]

    def photos(self, tenant_id: str, set: list[dict] | None = None, remove: list | None = None) -> dict:
        """Uploads (`{"user": ref, "largest": px}`, a new media ETag each time) and removes photos."""
        return self.call("POST", f"tenants/{tenant_id}/photos", {"set": set or [], "remove": remove or []})

    def photo(self, tenant_id: str, user_ref: str) -> dict:
        """`{"id", "photo", "largest", "mediaEtag"}` of a user."""
        return self.call("GET", f"tenants/{tenant_id}/photos/{user_ref}")
