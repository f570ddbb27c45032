"""Outbound HTTP to an allow-list of origins (scheme, host, port) only: Entra ID and Graph.

Every Microsoft-facing client (JWKS, MSAL, Graph) uses this session, so "no third-party calls" and
"never follow a client-supplied URL" are enforced in code, redirects included.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests

from shared.origins import origin


class EgressRefused(RuntimeError):
    pass


class AllowListedSession(requests.Session):
    def __init__(self, allowed: Iterable[tuple[str, str, int]], pool_size: int = 16):
        super().__init__()
        self.allowed = frozenset(allowed)
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # send() also carries every redirect, so a redirect cannot leave the allow-list either.
        target = origin(request.url or "")
        if target not in self.allowed:
            raise EgressRefused(f"outbound request to a non-allow-listed origin refused: {target[1]}")
        return super().send(request, **kwargs)
