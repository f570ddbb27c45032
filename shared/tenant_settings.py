"""A tenant's name and settings as operators (`manage_tenants`) and administrators (`tenant_portal`) may set
them: one validator for both, so the two front ends accept exactly the same values."""
from __future__ import annotations

import re
from typing import Any

from shared.errors import BadRequest
from shared.ids import UUID_PATTERN
from shared.store import schema

MAX_NAME_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REGION = re.compile(r"^[A-Z]{2}$")
_GUID_ANY_CASE = re.compile(UUID_PATTERN, re.IGNORECASE)  # Entra shows group IDs in either case


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("name must be a non-empty string", slug="invalid-name")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"name must be at most {MAX_NAME_LENGTH} characters", slug="invalid-name")
    if _CONTROL.search(name):
        raise BadRequest("name must not contain control characters", slug="invalid-name")
    return name.strip()


def validate_settings(settings: Any, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merges `settings` over `current` (or the defaults) after checking every key and value."""
    if not isinstance(settings, dict):
        raise BadRequest("settings must be an object", slug="invalid-settings")
    unknown = sorted(set(settings) - schema.TENANT_SETTINGS_FIELDS)
    if unknown:
        raise BadRequest(f"unknown settings: {', '.join(k[:64] for k in unknown[:10])}", slug="unknown-field")
    merged: dict[str, Any] = dict(current) if current is not None else {"fields": list(schema.RELAY_FIELDS)}
    if "fields" in settings:
        fields = settings["fields"]
        if (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
                or len(set(fields)) != len(fields) or not set(fields) <= set(schema.RELAY_FIELDS)):
            raise BadRequest(f"settings.fields must be a list of distinct fields from: "
                             f"{', '.join(schema.RELAY_FIELDS)}", slug="invalid-settings")
        merged["fields"] = [f for f in schema.RELAY_FIELDS if f in fields]
    if "defaultRegion" in settings:
        region = settings["defaultRegion"]
        if region is None:
            merged.pop("defaultRegion", None)
        else:
            from phonenumbers import SUPPORTED_REGIONS

            if not isinstance(region, str) or not _REGION.match(region) or region not in SUPPORTED_REGIONS:
                raise BadRequest("settings.defaultRegion must be an ISO 3166 region code such as DE",
                                 slug="invalid-settings")
            merged["defaultRegion"] = region
    if "scope" in settings:
        merged["scope"] = validate_scope(settings["scope"], merged.get("scope"))
    if "photos" in settings:
        if not isinstance(settings["photos"], bool):
            raise BadRequest("settings.photos must be true or false", slug="invalid-settings")
        merged["photos"] = settings["photos"]
    return merged


def validate_scope(scope: Any, current: dict[str, Any] | None) -> dict[str, Any]:
    """A complete scope: the given keys checked and merged over `current` (or the defaults). Each way the
    groups can be wrong has its own problem type, so the portal can say which in the admin's language."""
    if not isinstance(scope, dict):
        raise BadRequest("settings.scope must be an object", slug="invalid-settings")
    unknown = sorted(set(scope) - set(schema.SCOPE_FIELDS))
    if unknown:
        raise BadRequest(f"unknown settings.scope keys: {', '.join(k[:64] for k in unknown[:10])}",
                         slug="unknown-field")
    merged = {**schema.DEFAULT_SCOPE, **(current or {})}
    if "groups" in scope:
        groups = scope["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, str) and _GUID_ANY_CASE.fullmatch(g) for g in groups):
            raise BadRequest("settings.scope.groups must be a list of group IDs (GUIDs)", slug="invalid-scope-group")
        canonical = [g.lower() for g in groups]
        if len(set(canonical)) != len(canonical):
            raise BadRequest("settings.scope.groups must not repeat a group", slug="duplicate-scope-group")
        if len(canonical) > schema.MAX_SCOPE_GROUPS:
            raise BadRequest(f"settings.scope.groups holds at most {schema.MAX_SCOPE_GROUPS} groups",
                             slug="too-many-scope-groups")
        merged["groups"] = canonical
    for flag in schema.SCOPE_FLAGS:
        if flag in scope:
            if not isinstance(scope[flag], bool):
                raise BadRequest(f"settings.scope.{flag} must be true or false", slug="invalid-settings")
            merged[flag] = scope[flag]
    return {key: merged[key] for key in schema.SCOPE_FIELDS}
