"""Driving the fake Entra ID / Graph of the local stack through its control API (the shared client)."""
from __future__ import annotations

from local.fake_microsoft.client import FakeMicrosoftClient


class FakeMicrosoftControl(FakeMicrosoftClient):
    """`local.fake_microsoft.client.FakeMicrosoftClient` on the session's stack (tests pass the `stack` fixture)."""

    def __init__(self, stack) -> None:
        super().__init__(stack.urls["entra"], stack.urls["ca"], timeout=30)
