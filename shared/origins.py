"""The origin of a URL (scheme, lower-case host, port with the scheme's default): what the egress
allow-list is built from and checked against, and what the portal compares a form's `Origin` with."""
from __future__ import annotations

from urllib.parse import urlsplit

Origin = tuple[str, str, int]


def origin(url: str) -> Origin:
    """Raises ValueError for a URL `urlsplit` cannot read (e.g. an unclosed IPv6 bracket, a port out of range)."""
    parts = urlsplit(url)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80))
