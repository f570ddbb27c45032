"""The record of processing activities a processor keeps (GDPR Art. 30(2)), generated from the code.

What is stored comes from `schema.stored_fields()` (the field sets `schema.checked` enforces on every
write), retention from the configured `Settings`, egress from `Settings.allowed_egress`, log keys from
`shared.logs.SAFE_KEYS`, hosting from Terraform's defaults (a test compares them). A collection or field
of the data model without an entry here makes `processing_record` raise `Unrecorded`, so the record cannot
silently fall behind the schema; `docs/record-of-processing.md` is this module's output (`make record`),
and a test fails when the committed file differs from what the code generates.

    python -m shared.processing_record > docs/record-of-processing.md
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from urllib.parse import urlunsplit

from shared.config import Settings, secret_variables
from shared.store import schema

# Terraform's default locations (terraform/variables.tf; tests/shared/test_processing_record.py compares).
FUNCTIONS_REGION = "europe-west1"
FIRESTORE_LOCATION = "eur3"
STORAGE_LOCATION = "EU"
# Microsoft Graph application permissions the app registration asks for (docs/operations.md).
GRAPH_PERMISSIONS = ("User.Read.All", "GroupMember.Read.All", "ProfilePhoto.Read.All")

# Categories of data, as the record names them.
ORGANISATION = "organisation data (the customer's name)"
CONFIGURATION = "configuration (no personal data)"
PSEUDONYM = "random identifier (no link to a person kept by the processor)"
TIME = "time stamp"
COUNT = "count"
STATUS = "status (enumeration)"
KEYED_HASH = "keyed hash (HMAC-SHA256; the IDs it covers are never stored with it)"
ROLE = "role name (Entra ID directory role or access role; not a person)"


@dataclass(frozen=True)
class CollectionEntry:
    purpose: str
    retention: str  # formatted with the settings' values: {inactivity_days}, {diagnostics_days}, {audit_days}
    fields: dict[str, str]  # field (dotted for nested) -> category of data


COLLECTIONS: dict[str, CollectionEntry] = {
    schema.TENANTS: CollectionEntry(
        "administration of the customer (controller): which directory fields, which users and whether photos "
        "the relay may send", "until the customer's deletion",
        {"name": ORGANISATION, "status": STATUS, "createdAt": TIME, "settings": CONFIGURATION,
         "settings.fields": CONFIGURATION, "settings.defaultRegion": CONFIGURATION,
         "settings.scope": "configuration (group IDs of the directory, flags)", "settings.photos": CONFIGURATION,
         "deletionRequestId": PSEUDONYM, "deletionRequestedAt": TIME}),
    schema.DEVICES: CollectionEntry(
        "tracking which phones receive the directory; the daily diagnostics limit",
        "unregistered, revoked, the customer's deletion, or {inactivity_days} days without a sync",
        {"registeredAt": TIME, "lastSeenAt": TIME, "diagnosticsDay": TIME, "diagnosticsCount": COUNT}),
    schema.FILES: CollectionEntry(
        "manifests of technical files (device diagnostics, files the operator attaches)",
        "the file's deadline (diagnostics: {diagnostics_days} days), its owner's deletion; a bucket lifecycle "
        "rule as backstop",
        {"objectName": PSEUDONYM, "format": STATUS, "owner": STATUS, "deviceId": PSEUDONYM, "createdAt": TIME,
         "deleteAfter": TIME}),
    schema.RATE_WINDOWS: CollectionEntry(
        "limiting abuse: new phones of the customer per minute", "2 minutes (TTL policy), or the customer's deletion",
        {"count": COUNT, "expiresAt": TIME}),
    schema.SYNC_LEASES: CollectionEntry(
        "admission: how many shared synchronisation rounds of the customer run at once",
        "the round's end; at most 61 minutes (TTL policy), or the customer's deletion", {"expiresAt": TIME}),
    schema.AUDIT_EVENTS: CollectionEntry(
        "the customer's audit trail: which change was made when, under which role, in which portal session "
        "(the customer links a session to a person through its own Entra ID sign-in log)",
        "{audit_days} days (TTL policy on expiresAt), or the customer's deletion (counted in its receipt)",
        {"at": TIME, "action": STATUS, "target": "random identifier or names of changed settings (never a value)",
         "actorKind": STATUS, "actorRole": ROLE, "session": PSEUDONYM, "expiresAt": TIME}),
    schema.PORTAL_SESSIONS: CollectionEntry(
        "the portal's sign-ins: every request checks that its session still exists and has not lapsed",
        "sign-out, \"Sign out everywhere\", 30 minutes without use or 8 hours (then refused; TTL policy on "
        "expiresAt), or the customer's deletion (counted in its receipt)",
        {"role": ROLE, "createdAt": TIME, "lastUsedAt": TIME, "expiresAt": TIME}),
    schema.RECEIPTS: CollectionEntry(
        "proof of deletion, verifiable by the customer without the processor keeping what was deleted",
        "kept (no personal data)",
        {"kind": STATUS, "subject": KEYED_HASH, "tenantSubject": KEYED_HASH, "status": STATUS, "requestedAt": TIME,
         "completedAt": TIME, "progressAt": TIME, "deleted": COUNT, "deleted.documents": COUNT,
         "deleted.files": COUNT, "verified": STATUS}),
}

COLLECTION_PATHS = {
    schema.TENANTS: "tenants/{tenantId}",
    schema.DEVICES: "tenants/{tenantId}/devices/{deviceId}",
    schema.FILES: "tenants/{tenantId}/files/{fileId}",
    schema.RATE_WINDOWS: "tenants/{tenantId}/rateWindows/{minute}",
    schema.SYNC_LEASES: "tenants/{tenantId}/syncLeases/{slot}",
    schema.AUDIT_EVENTS: "tenants/{tenantId}/auditEvents/{eventId}",
    schema.PORTAL_SESSIONS: "tenants/{tenantId}/portalSessions/{sessionId}",
    schema.RECEIPTS: "deletionReceipts/{requestId}",
}


_DEFAULT_PORTS = {"https": 443, "http": 80}


class Unrecorded(LookupError):
    """The data model has a collection or field the record has no entry for (or the other way round)."""


def _check(model: dict[str, tuple[str, ...]]) -> None:
    if set(model) != set(COLLECTIONS):
        raise Unrecorded(f"collections not recorded: {sorted(set(model) - set(COLLECTIONS))}; recorded but not "
                         f"stored: {sorted(set(COLLECTIONS) - set(model))}")
    for collection, fields in model.items():
        recorded = set(COLLECTIONS[collection].fields)
        if set(fields) != recorded:
            raise Unrecorded(f"{collection}: fields not recorded: {sorted(set(fields) - recorded)}; recorded but "
                             f"not stored: {sorted(recorded - set(fields))}")


def processing_record(settings: Settings | None = None) -> str:
    """The record as Markdown, for `settings` (the defaults when None). Raises Unrecorded on drift."""
    settings = settings or Settings()
    model = schema.stored_fields()
    _check(model)
    values = {"inactivity_days": settings.device_inactivity_days,
              "diagnostics_days": settings.diagnostics_retention_days,
              "audit_days": settings.audit_retention_days}
    egress = sorted(urlunsplit((scheme, host if port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}", "", "",
                                "")) for scheme, host, port in settings.allowed_egress)
    secrets = secret_variables()
    expiring = sorted(c for c, fields in model.items() if "expiresAt" in fields)
    from shared.logs import SAFE_KEYS

    out = [
        "# Record of processing activities (GDPR Art. 30(2))",
        "",
        "<!-- Generated by `python -m shared.processing_record` from the data model "
        "(shared/store/schema.py) and the configuration (shared/config.py); do not edit by hand. -->",
        "",
        "## 1. Processor and controllers",
        "",
        "- Processor: the operator of this deployment (name, contact details and, where appointed, the data "
        "protection officer are added by the operator).",
        "- Controllers: each onboarded customer organisation (one Microsoft Entra ID tenant each), on whose "
        "behalf the processing below is carried out.",
        "",
        "## 2. Categories of processing carried out on behalf of each controller",
        "",
        "| Processing | Data subjects | Categories of data | Stored |",
        "|---|---|---|---|",
        f"| Relaying the company directory to the employees' phones | the controller's directory users | "
        f"{', '.join(schema.RELAY_FIELDS)}; profile photos if `settings.photos` | no: in a relay instance's "
        f"memory only while a phone of its round needs it, at most {settings.relay_round_buffer_pages} Graph pages "
        "per round |",
        "| Registering phones, limiting abuse | the controller's app users | random device IDs, times, counts | "
        "yes (`devices`, `rateWindows`) |",
        "| Technical files (diagnostics, attached files) | the controller's app users | files the app or the "
        "operator uploads, their manifests | yes (`files`, bucket) |",
        "| Administration and audit trail | the controller's administrators | roles and random session IDs; no "
        "name, e-mail address, user ID, IP address or browser | yes (`tenants`, `auditEvents`, `portalSessions`) |",
        "| Deletion and its proof | none (keyed hashes only) | counts, times | yes (`deletionReceipts`) |",
        "",
        "## 3. Stored data, retention per collection (Firestore)",
        "",
    ]
    order = [c for c in COLLECTION_PATHS if c in model]
    for collection in order:
        entry = COLLECTIONS[collection]
        out += [f"### `{COLLECTION_PATHS[collection]}`", "",
                f"- Purpose: {entry.purpose}.",
                f"- Retention: {entry.retention.format(**values)}.",
                "", "| Field | Category of data |", "|---|---|"]
        out += [f"| `{name}` | {entry.fields[name]} |" for name in model[collection]]
        out.append("")
    out += [
        "Technical files' objects live in the Cloud Storage bucket `TECHNICAL_FILES_BUCKET` under "
        "`tenants/{tenantId}/…/{fileId}.{json|xml|csv}`, with the retention of their manifest.",
        "",
        "## 4. Sub-processors and transfers to third countries",
        "",
        "| Sub-processor | Service | Location |",
        "|---|---|---|",
        f"| Google Cloud | Cloud Functions, Cloud Run, Pub/Sub, Cloud Scheduler, Secret "
        f"Manager | `{FUNCTIONS_REGION}` |",
        f"| Google Cloud | Firestore (all collections above) | `{FIRESTORE_LOCATION}` |",
        f"| Google Cloud | Cloud Storage (technical files) | `{STORAGE_LOCATION}` |",
        f"| Microsoft (the controller's own Microsoft 365 tenant) | Microsoft Graph and Entra ID: read only, "
        f"application permissions {', '.join(GRAPH_PERMISSIONS)}; sign-in of the portal | "
        f"{', '.join(f'`{o}`' for o in egress)} |",
        "",
        "No transfer to a third country by this configuration: Terraform refuses locations outside the EU unless "
        "`allow_non_eu_locations` is set. Outbound HTTP reaches only the origins above (egress allow-list).",
        "",
        "## 5. Technical and organisational security measures (Art. 32(1))",
        "",
        f"- Data minimisation in code: every write passes a field allow-list ({len(model)} collections, "
        f"{sum(len(f) for f in model.values())} fields, listed above); contact data is never written.",
        f"- Logs carry only {len(SAFE_KEYS)} allow-listed keys (shared/logs.py); no contact field, token or secret.",
        f"- Egress allow-list: outbound HTTP only to {', '.join(egress)}.",
        f"- Secrets ({', '.join(secrets)}) come from Secret Manager, never from code or logs.",
        "- Access: operators' API behind Cloud Run IAM (`roles/run.invoker` for listed principals only); phones "
        "authenticated by Entra ID tokens; the portal by Entra ID sign-in, with server-side session records "
        "(30 minutes idle, 8 hours at most, ended by sign-out or \"Sign out everywhere\"), a sealed session "
        "cookie (AES-256-GCM) and per-session CSRF tokens.",
        "- Encryption in transit (TLS) and at rest (Google-managed keys).",
        f"- Storage limitation: TTL policies on `expiresAt` of {', '.join(f'`{c}`' for c in expiring)}; the "
        f"retention sweeper; Firestore point-in-time recovery off, so deleted data is gone.",
        "- Deletion is verified: a re-read after the cascade, and a receipt whose subjects are keyed hashes.",
        "- Least privilege: one service account per function, with only the roles it needs.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(processing_record())
