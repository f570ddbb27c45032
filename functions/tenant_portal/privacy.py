"""The public data-handling page (`GET /privacy`), built from the data model the repositories enforce.

What is stored comes from `shared.store.schema.stored_fields()` — the same field sets `schema.checked`
enforces on every write — so the page cannot name a field the code does not store, and a field added to the
data model without a text makes `privacy_page` fail (and its test), instead of going unmentioned.
The words come from the portal's message catalogues (`privacy.*` keys in messages/{en,de}.json, read into
`TEXTS`), keyed by collection and field (`tenants`, `tenants.name`, `tenants.settings.fields`, …) and by
page part (`page.…`), each in German and English. Retention periods
are the configured ones (`Settings`); hosting locations are the Terraform defaults (a test compares them).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from functions.tenant_portal.pages import DEFAULT_LANGUAGE, LANGUAGES, catalogues
from shared.config import Settings
from shared.store import schema

# Where each collection's documents live (the repositories build these paths from validated IDs).
COLLECTION_PATHS = {
    schema.TENANTS: "tenants/{tenantId}",
    schema.DEVICES: "tenants/{tenantId}/devices/{deviceId}",
    schema.FILES: "tenants/{tenantId}/files/{fileId}",
    schema.RECEIPTS: "deletionReceipts/{requestId}",
    schema.RATE_WINDOWS: "tenants/{tenantId}/rateWindows/{minute}",
    schema.SYNC_LEASES: "tenants/{tenantId}/syncLeases/{slot}",
    schema.AUDIT_EVENTS: "tenants/{tenantId}/auditEvents/{eventId}",
    schema.PORTAL_SESSIONS: "tenants/{tenantId}/portalSessions/{sessionId}",
}
# Terraform's default locations (terraform/variables.tf; tests/functions/test_tenant_portal_privacy.py
# compares them), named on the page.
FIRESTORE_LOCATION = "eur3"
STORAGE_LOCATION = "EU"
FUNCTIONS_REGION = "europe-west1"
# User claims of Microsoft tokens that are never stored or logged (docs/architecture.md).
USER_CLAIMS = ("oid", "upn", "name", "preferred_username", "email")

T = Mapping[str, str]  # one text: {"en": …, "de": …}

PREFIX = "privacy."


def _catalogue_texts() -> dict[str, T]:
    """The page's texts from the message catalogues (`privacy.<key>` in messages/{en,de}.json), in their order."""
    texts: dict[str, dict[str, str]] = {}
    for lang, messages in catalogues().items():
        for key, text in messages.items():
            if key.startswith(PREFIX):
                texts.setdefault(key[len(PREFIX):], {})[lang] = text
    return dict(texts)


# {key: {"en": …, "de": …}}: collections and fields (`tenants`, `tenants.name`, `tenants.settings.fields`, …)
# and page parts (`page.…`).
TEXTS: dict[str, T] = _catalogue_texts()

# The order the page shows collections in (every collection of the data model must be here).
COLLECTION_ORDER = (schema.TENANTS, schema.DEVICES, schema.FILES, schema.RATE_WINDOWS, schema.SYNC_LEASES,
                    schema.AUDIT_EVENTS, schema.PORTAL_SESSIONS, schema.RECEIPTS)
_NEVER = ("never.contacts", "never.memory", "never.profiles", "never.credentials", "never.m365")
_HOSTING = ("hosting.firestore", "hosting.storage", "hosting.functions", "hosting.no-third-parties")


class MissingText(LookupError):
    """The data model has a collection or field that the catalogue has no text for (a bug: add the text)."""


@dataclass(frozen=True)
class StoredField:
    name: str  # the field as stored, e.g. "settings.fields" (a part of "settings")
    purpose: str


@dataclass(frozen=True)
class StoredCollection:
    key: str  # the collection, e.g. "devices"
    title: str
    path: str  # e.g. "tenants/{tenantId}/devices/{deviceId}"
    document_id: str  # what the document's ID is
    retention: str
    location: str
    fields: tuple[StoredField, ...]


@dataclass(frozen=True)
class PrivacyPage:
    """Everything `/privacy` shows, in one language; `text` holds the page parts (`page.*` without prefix)."""
    lang: str
    text: Mapping[str, str]
    collections: tuple[StoredCollection, ...]
    objects: StoredCollection
    never_stored: tuple[str, ...]
    hosting: tuple[str, ...]

def language(requested: str | None) -> str:
    """`requested` if the page exists in it, else English."""
    return requested if requested in LANGUAGES else DEFAULT_LANGUAGE


def privacy_page(lang: str, settings: Settings | None = None) -> PrivacyPage:
    """The data-handling page in `lang` ("en" or "de"; anything else is English), with the retention periods
    of `settings` (the defaults when None). Raises MissingText when the data model has a collection or field
    without a text."""
    lang = language(lang)
    settings = settings or Settings()
    values = {"inactivity_days": settings.device_inactivity_days,
              "diagnostics_days": settings.diagnostics_retention_days,
              "firestore": FIRESTORE_LOCATION, "storage": STORAGE_LOCATION, "functions": FUNCTIONS_REGION,
              "fields": ", ".join(schema.RELAY_FIELDS), "claims": ", ".join(USER_CLAIMS),
              "round_pages": settings.relay_round_buffer_pages, "audit_days": settings.audit_retention_days}

    def say(key: str) -> str:
        try:
            return TEXTS[key][lang].format(**values)
        except KeyError:
            raise MissingText(f"no {lang} text for {PREFIX}{key!r} in functions/tenant_portal/messages") from None

    model = schema.stored_fields()
    unordered = set(model) - set(COLLECTION_ORDER)
    if unordered:
        raise MissingText(f"collections without a place on the page: {sorted(unordered)}")
    collections = []
    for key in COLLECTION_ORDER:
        if key not in model:  # text for a collection the code does not store: never shown
            continue
        stored = set(model[key])
        # Catalogue order first (it reads better), then anything else the model has (which then has no text).
        ordered = [k.split(".", 1)[1] for k in TEXTS if k.startswith(key + ".") and k.split(".", 1)[1] in stored]
        ordered += sorted(stored - set(ordered))
        fields = tuple(StoredField(name, say(f"{key}.{name}")) for name in ordered)
        collections.append(StoredCollection(key, say(key), COLLECTION_PATHS[key], say(f"{key}.id"),
                                            say(f"{key}.retention"), say("page.firestore"), fields))
    objects = StoredCollection("objects", say("objects"), "tenants/{tenantId}/…/{fileId}.{json|xml|csv}", "",
                               say("files.retention"), say("page.storage"),
                               (StoredField("", say("objects.what")),))
    text = {key[len("page."):]: say(key) for key in TEXTS if key.startswith("page.")}
    return PrivacyPage(lang, text, tuple(collections), objects, tuple(say(k) for k in _NEVER),
                       tuple(say(k) for k in _HOSTING))

