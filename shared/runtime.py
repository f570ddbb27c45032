"""Process-level wiring shared by the entry points."""
from __future__ import annotations

import os

from shared.config import Settings, settings_for


def cold_start_check(function_name: str) -> None:
    """Fails the cold start of `function_name` when a setting it needs is missing (names the variable)."""
    if os.environ.get("FUNCTION_TARGET") == function_name:
        settings_for(function_name)


def settings(function_name: str) -> Settings:
    return settings_for(function_name)
