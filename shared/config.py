"""Every environment variable the functions read, in one place.

Each function asks for the settings it needs with `load_settings(required=...)` at cold start; a missing
or malformed variable fails fast with an error that names it (never its value).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from shared.origins import origin


class ConfigError(RuntimeError):
    """A required environment variable is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    project: str = ""
    technical_files_bucket: str = ""
    deletion_topic: str = "deletion-requests"
    entra_authority_host: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    entra_client_id: str = ""
    entra_client_secret: str = field(default="", repr=False)
    entra_required_scope: str = "access_as_user"
    cursor_key: bytes = field(default=b"", repr=False)
    receipt_key: bytes = field(default=b"", repr=False)
    device_inactivity_days: int = 180
    diagnostics_retention_days: int = 30
    max_devices_per_tenant: int = 10000
    device_registrations_per_tenant_per_minute: int = 600
    device_registrations_per_user_per_10_minutes: int = 5
    diagnostics_per_device_per_day: int = 24
    graph_retry_deadline_seconds: float = 20.0
    stuck_deletion_minutes: int = 60
    deletion_initial_ops_per_second: int = 500
    deletion_max_ops_per_second: int = 10000
    portal_base_url: str = ""
    portal_session_key: bytes = field(default=b"", repr=False)
    deletion_attempt_seconds: float = 420.0
    relay_full_syncs_per_tenant: int = 20
    relay_round_buffer_pages: int = 4
    relay_write_timeout_seconds: float = 60.0
    audit_retention_days: int = 365

    @property
    def allowed_egress(self) -> frozenset[tuple[str, str, int]]:
        """Origins (scheme, host, port) outbound HTTP may reach: Entra ID and Graph only."""
        return frozenset({origin(self.entra_authority_host), origin(self.graph_base_url)})


# variable name -> (attribute, parser)
_SECRET = object()
_VARIABLES: dict[str, tuple[str, object]] = {
    "GOOGLE_CLOUD_PROJECT": ("project", str),
    "TECHNICAL_FILES_BUCKET": ("technical_files_bucket", str),
    "DELETION_TOPIC": ("deletion_topic", str),
    "ENTRA_AUTHORITY_HOST": ("entra_authority_host", "https_url"),
    "GRAPH_BASE_URL": ("graph_base_url", "https_url"),
    "ENTRA_CLIENT_ID": ("entra_client_id", str),
    "ENTRA_CLIENT_SECRET": ("entra_client_secret", str),
    "ENTRA_REQUIRED_SCOPE": ("entra_required_scope", str),
    "CURSOR_KEY": ("cursor_key", _SECRET),
    "RECEIPT_KEY": ("receipt_key", _SECRET),
    "DEVICE_INACTIVITY_DAYS": ("device_inactivity_days", "positive_int"),
    "DIAGNOSTICS_RETENTION_DAYS": ("diagnostics_retention_days", "positive_int"),
    "MAX_DEVICES_PER_TENANT": ("max_devices_per_tenant", "positive_int"),
    "DEVICE_REGISTRATIONS_PER_TENANT_PER_MINUTE": ("device_registrations_per_tenant_per_minute", "positive_int"),
    "DEVICE_REGISTRATIONS_PER_USER_PER_10_MINUTES": ("device_registrations_per_user_per_10_minutes",
                                                     "positive_int"),
    "DIAGNOSTICS_PER_DEVICE_PER_DAY": ("diagnostics_per_device_per_day", "positive_int"),
    "GRAPH_RETRY_DEADLINE_SECONDS": ("graph_retry_deadline_seconds", "positive_float"),
    "STUCK_DELETION_MINUTES": ("stuck_deletion_minutes", "positive_int"),
    "DELETION_INITIAL_OPS_PER_SECOND": ("deletion_initial_ops_per_second", "positive_int"),
    "DELETION_MAX_OPS_PER_SECOND": ("deletion_max_ops_per_second", "positive_int"),
    "PORTAL_BASE_URL": ("portal_base_url", "portal_url"),
    "PORTAL_SESSION_KEY": ("portal_session_key", _SECRET),
    "DELETION_ATTEMPT_SECONDS": ("deletion_attempt_seconds", "positive_float"),
    "RELAY_FULL_SYNCS_PER_TENANT": ("relay_full_syncs_per_tenant", "positive_int"),
    "RELAY_ROUND_BUFFER_PAGES": ("relay_round_buffer_pages", "positive_int"),
    "RELAY_WRITE_TIMEOUT_SECONDS": ("relay_write_timeout_seconds", "positive_float"),
    "AUDIT_RETENTION_DAYS": ("audit_retention_days", "positive_int"),
}

# What each entry point needs before it can serve (checked at cold start).
REQUIRED_BY_FUNCTION: dict[str, tuple[str, ...]] = {
    "register_device": ("GOOGLE_CLOUD_PROJECT", "TECHNICAL_FILES_BUCKET", "ENTRA_CLIENT_ID", "RECEIPT_KEY"),
    "relay_contacts": ("GOOGLE_CLOUD_PROJECT", "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET", "CURSOR_KEY"),
    "manage_tenants": ("GOOGLE_CLOUD_PROJECT", "TECHNICAL_FILES_BUCKET", "RECEIPT_KEY"),
    "handle_deletion": ("GOOGLE_CLOUD_PROJECT", "TECHNICAL_FILES_BUCKET", "RECEIPT_KEY"),
    "sweep_retention": ("GOOGLE_CLOUD_PROJECT", "TECHNICAL_FILES_BUCKET", "RECEIPT_KEY"),
    "tenant_portal": ("GOOGLE_CLOUD_PROJECT", "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET", "RECEIPT_KEY",
                      "PORTAL_BASE_URL", "PORTAL_SESSION_KEY"),
}

_MIN_SECRET_BYTES = 16


def secret_variables() -> tuple[str, ...]:
    """The variables that hold secrets (their settings are left out of `repr`; Secret Manager in production)."""
    hidden = {f.name for f in fields(Settings) if not f.repr}
    return tuple(sorted(name for name, (attribute, _) in _VARIABLES.items() if attribute in hidden))


def _parse(name: str, raw: str, kind: object) -> object:
    if kind is str:
        return raw
    if kind is _SECRET:
        if len(raw.encode()) < _MIN_SECRET_BYTES:
            raise ConfigError(f"{name} must be at least {_MIN_SECRET_BYTES} bytes long")
        return raw.encode()
    if kind == "https_url":
        parts = urlsplit(raw)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"{name} must be an https URL")
        return raw.rstrip("/")
    if kind == "portal_url":
        # https, or plain http on the loopback address only (the local stack; browsers treat it as secure).
        parts = urlsplit(raw)
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
        if not (parts.scheme == "https" or loopback) or not parts.hostname or parts.path.strip("/") \
                or parts.query or parts.fragment:
            raise ConfigError(f"{name} must be an https origin (http only on 127.0.0.1 or localhost), no path")
        return raw.rstrip("/")
    try:
        number = float(raw) if kind == "positive_float" else int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than zero")
    return number


def load_settings(required: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> Settings:
    """Builds settings from the environment; raises ConfigError naming the first missing variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}  # each parsed to its attribute's kind by _parse
    for name, (attribute, kind) in _VARIABLES.items():
        raw = env.get(name, "").strip()
        if raw:
            values[attribute] = _parse(name, raw, kind)
    for name in required:
        if name not in _VARIABLES:
            raise ConfigError(f"unknown setting {name}")
        if _VARIABLES[name][0] not in values:
            raise ConfigError(f"missing required environment variable {name}")
    return Settings(**values)


def log_level(environ: Mapping[str, str] | None = None) -> str:
    """LOG_LEVEL (default INFO); the test suite runs the functions at DEBUG so privacy scans see every line."""
    level = (os.environ if environ is None else environ).get("LOG_LEVEL", "INFO").upper()
    return level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO"


def function_target(environ: Mapping[str, str] | None = None) -> str | None:
    """FUNCTION_TARGET: the entry point this process serves (set by Cloud Functions and the local stack)."""
    return (os.environ if environ is None else environ).get("FUNCTION_TARGET")


def settings_for(function_name: str, environ: Mapping[str, str] | None = None) -> Settings:
    return load_settings(REQUIRED_BY_FUNCTION[function_name], environ)
