"""Driving the fake Entra ID / Graph of the local stack through its control API."""
from __future__ import annotations

from typing import Any

import requests


class FakeMicrosoftControl:
    def __init__(self, stack):
        self.base = stack.urls["entra"] + "/_fake"
        self.session = requests.Session()
        self.session.verify = stack.urls["ca"]

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self.session.request(method, f"{self.base}/{path.lstrip('/')}", json=body, timeout=30)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def reset(self) -> None:
        self.call("POST", "reset")
        self.call("DELETE", "stats")

    def directory(self, tenant_id: str, size: int) -> None:
        self.call("POST", f"tenants/{tenant_id}/directory", {"size": size})

    def users(self, tenant_id: str) -> list[dict]:
        out, offset = [], 0
        while True:
            page = self.call("GET", f"tenants/{tenant_id}/users?offset={offset}&limit=1000")
            out += page["users"]
            offset += len(page["users"])
            if offset >= page["total"] or not page["users"]:
                return out

    def changes(self, tenant_id: str, **body) -> dict:
        return self.call("POST", f"tenants/{tenant_id}/changes", body)

    def faults(self, *rules: dict, **settings) -> None:
        self.call("POST", "config", {"faults": list(rules), "replace_faults": True, **settings})

    def stats(self) -> dict:
        return self.call("GET", "stats")
