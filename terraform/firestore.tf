# Firestore (Native mode) in the EU, plus the indexes the retention sweeper queries.

resource "google_firestore_database" "main" {
  project     = var.project_id
  name        = "(default)"
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"

  concurrency_mode            = "PESSIMISTIC"
  app_engine_integration_mode = "DISABLED"
  # Point-in-time recovery would keep deleted tenants readable for 7 more days; erasure must be real.
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.required]
}

# Rate windows of the abuse limits (tenants/{id}/rateWindows/{minute}) expire on their own: a TTL policy
# on `expiresAt` removes them (typically within 24 h of expiry; they are never read after their minute).
resource "google_firestore_field" "rate_window_ttl" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "rateWindows"
  field      = "expiresAt"

  ttl_config {}

  # Never queried: no single-field indexes needed for a write-mostly counter.
  index_config {}
}

# sweep_retention's collection-group queries (collection => field): files where deleteAfter < now, ordered
# by deleteAfter; devices where lastSeenAt < now - DEVICE_INACTIVITY_DAYS.
# A field config replaces the inherited single-field indexes, so the collection-scope ones are kept too.
resource "google_firestore_field" "collection_group_index" {
  for_each = {
    files   = "deleteAfter"
    devices = "lastSeenAt"
  }

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.key
  field      = each.value

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "DESCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}

# sweep_retention: tenants where status == "deleting" and deletionRequestedAt < now - STUCK_DELETION_MINUTES
# (an equality plus a range on another field needs a composite index).
# tenant_portal lists a tenant's receipts, newest first: equality on tenantSubject, order on requestedAt.
resource "google_firestore_index" "receipts_of_a_tenant" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "deletionReceipts"
  query_scope = "COLLECTION"

  fields {
    field_path = "tenantSubject"
    order      = "ASCENDING"
  }
  fields {
    field_path = "requestedAt"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "tenants_stuck_deletions" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "tenants"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "deletionRequestedAt"
    order      = "ASCENDING"
  }
}

# relay_contacts' sync leases (tenants/{tenantId}/syncLeases/{leaseId}, `expiresAt` only): a lease of an
# instance that died has lapsed at expiresAt already (the relay ignores it); this TTL policy removes the
# document some time later (Firestore deletes expired documents typically within 24 hours). No index: the
# relay reads leases by ID only.
resource "google_firestore_field" "sync_lease_ttl" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "syncLeases"
  field      = "expiresAt"

  ttl_config {}
  index_config {}
}

# The tenants' audit trails (tenants/{tenantId}/auditEvents/{eventId}): an event carries `expiresAt` = `at` +
# AUDIT_RETENTION_DAYS and this TTL policy removes it after that (typically within 24 hours); the tenant's
# deletion removes its events before that. Read by the single-field index on `at` (newest first), which the
# field config leaves in place: only `expiresAt` gets no index.
resource "google_firestore_field" "audit_event_ttl" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "auditEvents"
  field      = "expiresAt"

  ttl_config {}
  index_config {}
}

# tenant_portal's sessions (tenants/{tenantId}/portalSessions/{sessionId}: role, createdAt, lastUsedAt,
# expiresAt). The portal refuses a session from its record's times the moment it lapses (idle 30 min, at most
# 8 h); this TTL policy removes records nobody signed out of, typically within 24 hours of expiresAt. No
# index: sessions are read by ID, and "Sign out everywhere" lists a tenant's by collection.
resource "google_firestore_field" "portal_session_ttl" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "portalSessions"
  field      = "expiresAt"

  ttl_config {}
  index_config {}
}
