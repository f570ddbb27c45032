"""The public data-handling page (`GET /privacy`), built from the data model the repositories enforce.

What is stored comes from `shared.store.schema.stored_fields()` — the same field sets `schema.checked`
enforces on every write — so the page cannot name a field the code does not store, and a field added to the
data model without a text here makes `privacy_page` fail (and its test), instead of going unmentioned.
The words come from one catalogue, `TEXTS`, keyed by collection and field (`tenants`, `tenants.name`,
`tenants.settings.fields`, …) and by page part (`page.…`), each in German and English. Retention periods
are the configured ones (`Settings`); hosting locations are the Terraform defaults (a test compares them).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import Settings
from shared.store import schema

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"

# Where each collection's documents live (the repositories build these paths from validated IDs).
COLLECTION_PATHS = {
    schema.TENANTS: "tenants/{tenantId}",
    schema.DEVICES: "tenants/{tenantId}/devices/{deviceId}",
    schema.FILES: "tenants/{tenantId}/files/{fileId}",
    schema.RECEIPTS: "deletionReceipts/{requestId}",
    schema.RATE_WINDOWS: "tenants/{tenantId}/rateWindows/{minute}",
    schema.SYNC_LEASES: "tenants/{tenantId}/syncLeases/{slot}",
}
# Terraform's default locations (terraform/variables.tf; tests/functions/test_tenant_portal_privacy.py
# compares them), named on the page.
FIRESTORE_LOCATION = "eur3"
STORAGE_LOCATION = "EU"
FUNCTIONS_REGION = "europe-west1"
# User claims of Microsoft tokens that are never stored or logged (docs/architecture.md).
USER_CLAIMS = ("oid", "upn", "name", "preferred_username", "email")

T = Mapping[str, str]  # one text: {"en": …, "de": …}

TEXTS: dict[str, T] = {
    # ---- page parts --------------------------------------------------------------------------------------
    "page.title": {"en": "What we store, and what we never store",
                   "de": "Was wir speichern – und was nie"},
    "page.intro": {
        "en": "Contact Sync is built for data minimisation: your colleagues' contact data goes from Microsoft "
              "Graph straight to your company's phones and is never stored on our servers. This page lists "
              "everything that is stored, why, and until when. It is generated from the code that stores the "
              "data, so it cannot say less than the code does.",
        "de": "Contact Sync ist auf Datenminimierung ausgelegt: Die Kontaktdaten Ihrer Kolleginnen und Kollegen "
              "gehen von Microsoft Graph direkt auf die Firmentelefone und werden nie auf unseren Servern "
              "gespeichert. Diese Seite nennt alles, was gespeichert wird, wozu und bis wann. Sie wird aus dem "
              "Code erzeugt, der die Daten speichert, und kann daher nicht weniger sagen als der Code."},
    "page.stored": {"en": "What is stored", "de": "Was gespeichert wird"},
    "page.field": {"en": "Field", "de": "Feld"},
    "page.purpose": {"en": "What it is for", "de": "Wozu"},
    "page.document-id": {"en": "Document ID", "de": "Dokument-ID"},
    "page.retention": {"en": "Kept until", "de": "Aufbewahrt bis"},
    "page.location": {"en": "Stored in", "de": "Gespeichert in"},
    "page.never": {"en": "What is never stored", "de": "Was nie gespeichert wird"},
    "page.hosting": {"en": "Where it is hosted", "de": "Wo die Daten liegen"},
    "page.deletion": {"en": "Deletion on request", "de": "Löschung auf Anfrage"},
    "page.deletion-text": {
        "en": "An administrator of your organisation can delete all of its data at any time in this portal "
              "(\u201cDelete all data\u201d) or through our support. The deletion runs in the background and "
              "ends with a receipt that shows what was deleted and that nothing was left behind.",
        "de": "Eine Administratorin oder ein Administrator Ihrer Organisation kann jederzeit alle Daten in "
              "diesem Portal (\u201eAlle Daten löschen\u201c) oder über unseren Support löschen lassen. Die "
              "Löschung läuft im Hintergrund und endet mit einer Quittung, die zeigt, was gelöscht wurde und "
              "dass nichts übrig blieb."},
    "page.skip": {"en": "Skip to content", "de": "Zum Inhalt springen"},
    "page.language": {"en": "Language", "de": "Sprache"},
    "page.firestore": {"en": "Google Cloud Firestore", "de": "Google Cloud Firestore"},
    "page.storage": {"en": "Google Cloud Storage", "de": "Google Cloud Storage"},
    # ---- hosting -----------------------------------------------------------------------------------------
    "hosting.firestore": {
        "en": "Database: Google Cloud Firestore in the EU multi-region {firestore} (Belgium and the Netherlands).",
        "de": "Datenbank: Google Cloud Firestore in der EU-Multiregion {firestore} (Belgien und Niederlande)."},
    "hosting.storage": {
        "en": "Technical files: Google Cloud Storage, location {storage} (European Union).",
        "de": "Technische Dateien: Google Cloud Storage, Standort {storage} (Europäische Union)."},
    "hosting.functions": {
        "en": "Processing: Google Cloud Functions in {functions} (Belgium). Infrastructure certified to "
              "ISO 27001 and SOC 2; operated under the GDPR.",
        "de": "Verarbeitung: Google Cloud Functions in {functions} (Belgien). Infrastruktur nach ISO 27001 und "
              "SOC 2 zertifiziert; Betrieb nach DSGVO."},
    "hosting.no-third-parties": {
        "en": "No third-party analytics, advertising or tracking, on this site or in the service; our servers "
              "talk only to Microsoft Entra ID and Microsoft Graph.",
        "de": "Keine Analyse-, Werbe- oder Tracking-Dienste Dritter, weder auf dieser Seite noch im Dienst; "
              "unsere Server sprechen nur mit Microsoft Entra ID und Microsoft Graph."},
    # ---- never stored ------------------------------------------------------------------------------------
    "never.contacts": {
        "en": "Contact data from your directory — the fields {fields} — nor any other directory content: it is "
              "passed through to the phones and not stored, cached or logged.",
        "de": "Kontaktdaten aus Ihrem Verzeichnis – die Felder {fields} – und sonstige Verzeichnisinhalte: Sie "
              "werden an die Telefone durchgereicht und nicht gespeichert, zwischengespeichert oder protokolliert."},
    "never.profiles": {
        "en": "User profile data and what a sign-in token says about a person ({claims}).",
        "de": "Benutzerprofildaten und was ein Anmeldetoken über eine Person aussagt ({claims})."},
    "never.credentials": {
        "en": "Tokens, passwords or other secrets of your users and administrators. A sign-in to this portal "
              "leaves only an encrypted cookie in your browser, which ends with the session; nothing about "
              "sessions is stored on our side.",
        "de": "Tokens, Passwörter oder andere Geheimnisse Ihrer Benutzer und Administratoren. Eine Anmeldung in "
              "diesem Portal hinterlässt nur ein verschlüsseltes Cookie in Ihrem Browser, das mit der Sitzung "
              "endet; bei uns wird nichts über Sitzungen gespeichert."},
    "never.m365": {
        "en": "Microsoft 365 content: mail, calendars, files, group memberships, profile photos.",
        "de": "Microsoft-365-Inhalte: E-Mails, Kalender, Dateien, Gruppenmitgliedschaften, Profilfotos."},
    # ---- collections and their fields --------------------------------------------------------------------
    "tenants": {"en": "Your organisation (tenant)", "de": "Ihre Organisation (Mandant)"},
    "tenants.id": {
        "en": "Your tenant ID: the Microsoft Entra ID identifier (GUID) of your organisation. It links the "
              "configuration to your Microsoft directory.",
        "de": "Ihre Mandanten-ID: die Microsoft-Entra-ID-Kennung (GUID) Ihrer Organisation. Sie verknüpft die "
              "Konfiguration mit Ihrem Microsoft-Verzeichnis."},
    "tenants.retention": {
        "en": "As long as your organisation uses the service; deleted with everything below it when an "
              "administrator asks for deletion.",
        "de": "Solange Ihre Organisation den Dienst nutzt; mit allem darunter gelöscht, sobald eine "
              "Administratorin oder ein Administrator die Löschung anfordert."},
    "tenants.name": {"en": "Your organisation's name as given when it was added; shown in this portal.",
                     "de": "Der Name Ihrer Organisation, wie beim Hinzufügen angegeben; wird in diesem Portal "
                           "angezeigt."},
    "tenants.status": {"en": "Whether the organisation is active, or being deleted.",
                       "de": "Ob die Organisation aktiv ist oder gerade gelöscht wird."},
    "tenants.createdAt": {"en": "When the organisation was added.",
                          "de": "Wann die Organisation hinzugefügt wurde."},
    "tenants.settings": {"en": "Your settings for the phones (the entries below).",
                         "de": "Ihre Einstellungen für die Telefone (die Einträge darunter)."},
    "tenants.settings.fields": {
        "en": "Which directory fields the phones may receive — the names of the fields, never their contents.",
        "de": "Welche Verzeichnisfelder die Telefone erhalten dürfen – die Namen der Felder, nie ihre Inhalte."},
    "tenants.settings.defaultRegion": {
        "en": "A country code (such as DE) for bringing phone numbers into international form.",
        "de": "Ein Ländercode (etwa DE), um Telefonnummern in internationale Form zu bringen."},
    "tenants.settings.scope": {
        "en": "Which users reach the phones: the IDs of up to 20 groups (never their names or members) and "
              "whether disabled accounts, guests and users without a phone number are left out. Group "
              "membership is read from Microsoft at each synchronisation and never stored.",
        "de": "Welche Benutzer auf die Telefone gelangen: die IDs von bis zu 20 Gruppen (nie deren Namen oder "
              "Mitglieder) und ob deaktivierte Konten, Gäste und Benutzer ohne Telefonnummer ausgelassen werden. "
              "Gruppenmitgliedschaften werden bei jeder Synchronisierung bei Microsoft gelesen und nie "
              "gespeichert."},
    "tenants.settings.photos": {
        "en": "Whether the phones may show colleagues' profile photos. Photos are passed through from Microsoft "
              "and never stored or cached.",
        "de": "Ob die Telefone Profilfotos der Kolleginnen und Kollegen zeigen dürfen. Fotos werden von "
              "Microsoft durchgereicht und nie gespeichert oder zwischengespeichert."},
    "tenants.deletionRequestId": {
        "en": "Only while a deletion runs: the random ID of the deletion request, which names its receipt.",
        "de": "Nur während einer Löschung: die zufällige ID des Löschauftrags, nach der seine Quittung "
              "benannt ist."},
    "tenants.deletionRequestedAt": {"en": "Only while a deletion runs: when it was requested.",
                                    "de": "Nur während einer Löschung: wann sie angefordert wurde."},
    "devices": {"en": "Registered phones (anonymous)", "de": "Registrierte Telefone (anonym)"},
    "devices.id": {
        "en": "A random device ID that the app creates on the phone. It is not linked to a person, a phone "
              "number or a user account.",
        "de": "Eine zufällige Geräte-ID, die die App auf dem Telefon erzeugt. Sie ist mit keiner Person, "
              "Telefonnummer und keinem Benutzerkonto verknüpft."},
    "devices.retention": {
        "en": "Until the app unregisters, an administrator revokes the phone, your organisation is deleted, or "
              "the phone has not synchronised for {inactivity_days} days.",
        "de": "Bis die App sich abmeldet, eine Administratorin oder ein Administrator das Telefon entfernt, Ihre "
              "Organisation gelöscht wird oder das Telefon {inactivity_days} Tage lang nicht synchronisiert hat."},
    "devices.registeredAt": {"en": "When the phone was registered.", "de": "Wann das Telefon registriert wurde."},
    "devices.lastSeenAt": {"en": "When the phone last synchronised; unused phones are removed after a while.",
                           "de": "Wann das Telefon zuletzt synchronisiert hat; ungenutzte Telefone werden nach "
                                 "einer Weile entfernt."},
    "devices.diagnosticsDay": {
        "en": "The day (UTC) of the phone's latest diagnostics upload, for the daily limit of uploads.",
        "de": "Der Tag (UTC) des letzten Diagnose-Uploads des Telefons, für die tägliche Höchstzahl."},
    "devices.diagnosticsCount": {"en": "How many diagnostics uploads the phone made on that day.",
                                 "de": "Wie viele Diagnose-Uploads das Telefon an diesem Tag gemacht hat."},
    "rateWindows": {"en": "Registration counters", "de": "Registrierungszähler"},
    "rateWindows.id": {"en": "The minute (UTC, as YYYYMMDDHHMM) the counter is for.",
                       "de": "Die Minute (UTC, als JJJJMMTTHHMM), für die der Zähler gilt."},
    "rateWindows.retention": {
        "en": "A few minutes: a counter expires two minutes after its minute began and is then removed "
              "automatically (usually within a day); also deleted with your organisation.",
        "de": "Wenige Minuten: Ein Zähler läuft zwei Minuten nach Beginn seiner Minute ab und wird dann "
              "automatisch entfernt (meist innerhalb eines Tages); auch mit Ihrer Organisation gelöscht."},
    "rateWindows.count": {
        "en": "How many new phones your organisation registered in that minute, to limit abuse. It says nothing "
              "about who registered them.",
        "de": "Wie viele neue Telefone Ihre Organisation in dieser Minute registriert hat, um Missbrauch zu "
              "begrenzen. Er sagt nichts darüber, wer sie registriert hat."},
    "rateWindows.expiresAt": {"en": "When the counter expires and may be removed.",
                              "de": "Wann der Zähler abläuft und entfernt werden darf."},
    "syncLeases": {"en": "Running full synchronisations", "de": "Laufende Vollsynchronisierungen"},
    "syncLeases.id": {"en": "A slot number (0, 1, 2 …): one of the full synchronisations your organisation "
                            "may run at once.",
                      "de": "Eine Platznummer (0, 1, 2 …): eine der Vollsynchronisierungen, die Ihre "
                            "Organisation gleichzeitig ausführen darf."},
    "syncLeases.retention": {
        "en": "While the synchronisation runs, at most 10 minutes; then removed automatically. Also deleted "
              "with your organisation.",
        "de": "Solange die Synchronisierung läuft, höchstens 10 Minuten; danach automatisch entfernt. Auch mit "
              "Ihrer Organisation gelöscht."},
    "syncLeases.expiresAt": {
        "en": "When the slot is free again at the latest. It says nothing about which phone or person holds it.",
        "de": "Wann der Platz spätestens wieder frei ist. Er sagt nichts darüber, welches Telefon oder welche "
              "Person ihn belegt."},
    "files": {"en": "Technical files (index)", "de": "Technische Dateien (Verzeichnis)"},
    "files.id": {"en": "A random file ID.", "de": "Eine zufällige Datei-ID."},
    "files.retention": {
        "en": "Until the file's deadline: {diagnostics_days} days for a phone's diagnostics, the period set "
              "for a file attached by our support; earlier when its phone or your organisation is deleted. A "
              "job deletes files past their deadline; a storage rule deletes them too, as a safety net.",
        "de": "Bis zur Frist der Datei: {diagnostics_days} Tage für Diagnosedaten eines Telefons, die "
              "festgelegte Frist für eine vom Support angehängte Datei; früher, wenn ihr Telefon oder Ihre "
              "Organisation gelöscht wird. Ein Job löscht Dateien nach Ablauf der Frist; eine Speicherregel "
              "löscht sie zur Sicherheit ebenfalls."},
    "files.objectName": {"en": "Where the file lies in the storage bucket.",
                         "de": "Wo die Datei im Speicher-Bucket liegt."},
    "files.format": {"en": "The file's format: JSON, XML or CSV.", "de": "Das Format der Datei: JSON, XML oder CSV."},
    "files.owner": {"en": "Whether the file belongs to your organisation or to one phone.",
                    "de": "Ob die Datei zu Ihrer Organisation oder zu einem Telefon gehört."},
    "files.deviceId": {"en": "For a phone's file: its random device ID, so it is deleted with the phone.",
                       "de": "Bei der Datei eines Telefons: dessen zufällige Geräte-ID, damit sie mit dem "
                             "Telefon gelöscht wird."},
    "files.createdAt": {"en": "When the file was stored.", "de": "Wann die Datei gespeichert wurde."},
    "files.deleteAfter": {"en": "The file's deadline, after which it is deleted.",
                          "de": "Die Frist der Datei; danach wird sie gelöscht."},
    "deletionReceipts": {"en": "Deletion receipts", "de": "Löschquittungen"},
    "deletionReceipts.id": {"en": "The random ID of the deletion request.",
                            "de": "Die zufällige ID des Löschauftrags."},
    "deletionReceipts.retention": {
        "en": "Kept as proof that a deletion happened; a receipt holds no personal data and no ID in clear.",
        "de": "Aufbewahrt als Nachweis einer Löschung; eine Quittung enthält keine personenbezogenen Daten "
              "und keine ID im Klartext."},
    "deletionReceipts.kind": {"en": "What was deleted: an organisation, a phone or a file.",
                              "de": "Was gelöscht wurde: eine Organisation, ein Telefon oder eine Datei."},
    "deletionReceipts.subject": {
        "en": "A keyed hash (HMAC-SHA256) of what was deleted, to match a receipt to a request — never the IDs "
              "themselves.",
        "de": "Ein mit einem geheimen Schlüssel gebildeter Hash (HMAC-SHA256) des Gelöschten, um eine Quittung "
              "einem Auftrag zuzuordnen – nie die IDs selbst."},
    "deletionReceipts.tenantSubject": {
        "en": "A second keyed hash, of your organisation alone, so this portal can list your organisation's "
              "receipts — never your tenant ID itself.",
        "de": "Ein zweiter Hash mit geheimem Schlüssel, nur von Ihrer Organisation, damit dieses Portal die "
              "Quittungen Ihrer Organisation auflisten kann – nie Ihre Mandanten-ID selbst."},
    "deletionReceipts.progressAt": {
        "en": "While a large deletion runs in several steps: when the last step started or finished.",
        "de": "Während eine große Löschung in mehreren Schritten läuft: wann der letzte Schritt begann oder "
              "endete."},
    "deletionReceipts.status": {"en": "Pending, or completed.", "de": "Ausstehend oder abgeschlossen."},
    "deletionReceipts.requestedAt": {"en": "When the deletion was requested.",
                                     "de": "Wann die Löschung angefordert wurde."},
    "deletionReceipts.completedAt": {"en": "When it was completed.", "de": "Wann sie abgeschlossen wurde."},
    "deletionReceipts.deleted": {"en": "How much was deleted (the counts below).",
                                 "de": "Wie viel gelöscht wurde (die Zahlen darunter)."},
    "deletionReceipts.deleted.documents": {"en": "Number of database entries deleted.",
                                           "de": "Anzahl gelöschter Datenbankeinträge."},
    "deletionReceipts.deleted.files": {"en": "Number of files deleted.", "de": "Anzahl gelöschter Dateien."},
    "deletionReceipts.verified": {"en": "Whether a check after the deletion found nothing left.",
                                  "de": "Ob eine Prüfung nach der Löschung nichts mehr gefunden hat."},
    # ---- objects in Cloud Storage (described by technical_files.py, not by the schema) --------------------
    "objects": {"en": "Technical files (contents)", "de": "Technische Dateien (Inhalte)"},
    "objects.what": {
        "en": "The file itself (JSON, XML or CSV): diagnostics a phone uploads, or data from third-party systems "
              "that our support attaches to your organisation. Such files may contain customer data, so each has "
              "a deadline. Stored with it: your tenant ID, its owner (organisation or phone) and its deadline.",
        "de": "Die Datei selbst (JSON, XML oder CSV): Diagnosedaten, die ein Telefon hochlädt, oder Daten aus "
              "Fremdsystemen, die unser Support Ihrer Organisation anhängt. Solche Dateien können Kundendaten "
              "enthalten, daher hat jede eine Frist. Mit ihr gespeichert: Ihre Mandanten-ID, ihr Besitzer "
              "(Organisation oder Telefon) und ihre Frist."},
}

# The order the page shows collections in (every collection of the data model must be here).
COLLECTION_ORDER = (schema.TENANTS, schema.DEVICES, schema.FILES, schema.RATE_WINDOWS, schema.SYNC_LEASES,
                    schema.RECEIPTS)
_NEVER = ("never.contacts", "never.profiles", "never.credentials", "never.m365")
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

    def named_fields(self) -> dict[str, set[str]]:
        """The fields the page names, per collection (what the tests compare with the data model)."""
        return {collection.key: {f.name for f in collection.fields} for collection in self.collections}


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
              "fields": ", ".join(schema.RELAY_FIELDS), "claims": ", ".join(USER_CLAIMS)}

    def say(key: str) -> str:
        try:
            return TEXTS[key][lang].format(**values)
        except KeyError:
            raise MissingText(f"no {lang} text for {key!r} in functions/tenant_portal/privacy.py") from None

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


def catalogue_fields() -> dict[str, set[str]]:
    """The fields the catalogue has texts for, per collection (for the test that no text outlives its field)."""
    reserved = {"id", "retention"}
    out: dict[str, set[str]] = {}
    for key in TEXTS:
        collection, _, name = key.partition(".")
        if collection in COLLECTION_PATHS and name and name not in reserved:
            out.setdefault(collection, set()).add(name)
    return out
