"""/privacy content (functions/tenant_portal/privacy.py) against the data model the repositories enforce,
and its template rendered in both languages."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from functions.tenant_portal import privacy
from shared.config import Settings
from shared.store import schema

ROOT = Path(__file__).resolve().parents[2]


def model() -> dict[str, set[str]]:
    return {collection: set(fields) for collection, fields in schema.stored_fields().items()}


def named_fields(page: privacy.PrivacyPage) -> dict[str, set[str]]:
    """The fields the page names, per collection."""
    return {collection.key: {f.name for f in collection.fields} for collection in page.collections}


def catalogue_fields() -> dict[str, set[str]]:
    """The fields the catalogue has texts for, per collection."""
    out: dict[str, set[str]] = {}
    for key in privacy.TEXTS:
        collection, _, name = key.partition(".")
        if collection in privacy.COLLECTION_PATHS and name and name not in {"id", "retention"}:
            out.setdefault(collection, set()).add(name)
    return out


def render(lang: str, settings: Settings | None = None) -> str:
    """The page as the portal renders it (its layout, catalogues and language switch)."""
    from flask import Flask

    from functions.tenant_portal.pages import Page
    from functions.tenant_portal.pages import render as render_page

    with Flask(__name__).test_request_context("/privacy", query_string={"lang": lang}) as context:
        answer = render_page(Page(context.request, lang, True), "privacy.html", session=None, csrf="",
                             privacy=privacy.privacy_page(lang, settings))
        return answer.get_data(as_text=True)


@pytest.mark.parametrize("lang", privacy.LANGUAGES)
def test_page_names_exactly_the_fields_the_code_stores(lang):
    page = privacy.privacy_page(lang)
    assert page.lang == lang
    assert named_fields(page) == model()
    for collection in page.collections:
        assert collection.title and collection.document_id and collection.retention and collection.location
        assert all(field.purpose for field in collection.fields)


def test_every_field_text_belongs_to_a_stored_field():
    # A text for a field the code does not store (removed, renamed, misspelt) would put it on the page.
    assert catalogue_fields() == model()


def test_a_field_added_to_the_data_model_without_text_fails(monkeypatch):
    # As a change to shared/store/schema.py would add it: to the field set `checked` enforces.
    monkeypatch.setitem(schema._TOP, schema.DEVICES, schema.DEVICE_FIELDS | {"batteryLevel"})
    with pytest.raises(privacy.MissingText, match="devices.batteryLevel"):
        privacy.privacy_page("en")
    monkeypatch.setitem(schema._NESTED, (schema.TENANTS, "settings"), schema.TENANT_SETTINGS_FIELDS | {"ringtone"})
    monkeypatch.setitem(schema._TOP, schema.DEVICES, schema.DEVICE_FIELDS)
    with pytest.raises(privacy.MissingText, match="tenants.settings.ringtone"):
        privacy.privacy_page("de")


def test_a_collection_added_to_the_data_model_without_text_fails(monkeypatch):
    monkeypatch.setitem(schema._TOP, "pushTokens", frozenset({"expiresAt"}))
    with pytest.raises(privacy.MissingText, match="pushTokens"):
        privacy.privacy_page("de")


def test_a_text_for_a_field_that_is_not_stored_is_caught(monkeypatch):
    monkeypatch.setitem(privacy.TEXTS, "devices.phoneNumber", {"en": "x", "de": "x"})
    assert catalogue_fields() != model()


def test_every_text_exists_in_both_languages():
    for key, text in privacy.TEXTS.items():
        assert set(text) == set(privacy.LANGUAGES), key
        assert all(value.strip() for value in text.values()), key


def test_contact_fields_are_named_only_as_never_stored():
    page = privacy.privacy_page("en")
    stored_names = {name.split(".")[-1] for fields in named_fields(page).values() for name in fields}
    assert not stored_names & set(schema.RELAY_FIELDS)
    never = " ".join(page.never_stored)
    assert all(field in never for field in schema.RELAY_FIELDS)
    assert all(claim in never for claim in ("oid", "upn", "preferred_username", "email"))


def test_retention_periods_are_the_configured_ones():
    page = privacy.privacy_page("en", Settings(device_inactivity_days=93, diagnostics_retention_days=17))
    by_key = {c.key: c for c in page.collections}
    assert "93 days" in by_key["devices"].retention
    assert "17 days" in by_key["files"].retention and "17 days" in page.objects.retention
    assert "180 Tage" in {c.key: c for c in privacy.privacy_page("de").collections}["devices"].retention


def test_hosting_locations_are_terraforms_defaults():
    variables = (ROOT / "terraform" / "variables.tf").read_text()

    def default(name: str) -> str:
        block = re.search(rf'variable "{name}" \{{(.*?)\n\}}', variables, re.S)
        assert block, name
        return re.search(r'default\s*=\s*"([^"]+)"', block.group(1)).group(1)

    assert default("firestore_location") == privacy.FIRESTORE_LOCATION
    assert default("storage_location") == privacy.STORAGE_LOCATION
    assert default("region") == privacy.FUNCTIONS_REGION
    hosting = " ".join(privacy.privacy_page("en").hosting)
    assert all(value in hosting for value in ("eur3", "europe-west1", "EU"))


def test_unknown_language_is_english():
    assert privacy.privacy_page("fr").lang == "en" and privacy.language(None) == "en"


@pytest.mark.parametrize("lang, heading, never", [
    ("en", "What we store, and what we never store", "What is never stored"),
    ("de", "Was wir speichern – und was nie", "Was nie gespeichert wird"),
])
def test_template_renders_an_accessible_page_in_the_portal_layout(lang, heading, never):
    html = render(lang)
    assert f'<html lang="{lang}">' in html
    assert f"<h1>{heading}</h1>" in html and f'<h2 id="never">{never}</h2>' in html
    assert re.search(r'<a href="/privacy\?lang=en" lang="en" hreflang="en"[^>]*>English</a>', html)
    assert re.search(r'<a href="/privacy\?lang=de" lang="de" hreflang="de"[^>]*>Deutsch</a>', html)
    assert f'aria-current="true">{"Deutsch" if lang == "de" else "English"}</a>' in html
    assert '<a class="skip" href="#main">' in html and '<main id="main">' in html
    # Exactly the stored fields, each as a row header of its collection's table.
    rows = set(re.findall(r'<tr data-field="([^"]+)">\s*<th scope="row"><code>', html))
    assert rows == {f"{collection}.{field}" for collection, fields in model().items() for field in fields}
    assert html.count("<caption>") == len(model())
    # No script, no inline style, nothing loaded from another host (only the portal's own stylesheet).
    assert not re.search(r"<script|<style|style=|<img|src=|https?://", html)
    assert re.findall(r"<link [^>]*>", html) == ['<link rel="stylesheet" href="/assets/portal.css">']
    # Text is escaped, not injected.
    assert "&amp;" not in heading and "<code>tenants/{tenantId}</code>" in html


def test_german_page_is_german():
    html = render("de")
    assert "Gespeichert in" in html and "Aufbewahrt bis" in html and "Löschung auf Anfrage" in html
    assert "What is stored" not in html
