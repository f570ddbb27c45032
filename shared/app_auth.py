"""Wiring of the app-facing token validator (shared by register_device and relay_contacts)."""
from __future__ import annotations

from shared.auth import JwksCache, TokenValidator, jwks_url
from shared.config import Settings
from shared.egress import AllowListedSession
from shared.store.repositories import TenantRepository


def build_validator(config: Settings, session: AllowListedSession, tenants: TenantRepository) -> TokenValidator:
    keys = JwksCache(session, jwks_url(config.entra_authority_host))
    return TokenValidator(keys, config.entra_authority_host, config.entra_client_id, config.entra_required_scope,
                          tenants.get)
