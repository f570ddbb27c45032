"""Firestore: Native mode in eur3, no point-in-time recovery, and the indexes the sweeper queries."""

from __future__ import annotations


def test_firestore_native_in_eur3_without_point_in_time_recovery(tf):
    (db,) = tf.resources_of("google_firestore_database").values()
    assert db["type"] == "FIRESTORE_NATIVE"
    assert tf.resolve(db["location_id"]) == "eur3"
    assert db["point_in_time_recovery_enablement"] == "POINT_IN_TIME_RECOVERY_DISABLED"


def test_the_sweeper_queries_have_collection_group_indexes(tf, hcl):
    fields = tf.resources_of("google_firestore_field")
    assert "collection_group_index" in fields
    body = fields["collection_group_index"]
    assert body["collection"] == "${each.key}" and body["field"] == "${each.value}"
    assert body["for_each"] == {"files": "deleteAfter", "devices": "lastSeenAt"}
    scopes = [(index["query_scope"], index["order"]) for index in hcl.block(body, "index_config")["indexes"]]
    assert ("COLLECTION_GROUP", "ASCENDING") in scopes
    # A field config replaces the inherited single-field indexes: the collection-scope ones stay.
    assert {("COLLECTION", "ASCENDING"), ("COLLECTION", "DESCENDING")} <= set(scopes)

    indexes = tf.resources_of("google_firestore_index")
    assert set(indexes) == {"tenants_stuck_deletions", "receipts_of_a_tenant"}
    stuck = indexes["tenants_stuck_deletions"]
    assert stuck["collection"] == "tenants"
    assert [field["field_path"] for field in stuck["fields"]] == ["status", "deletionRequestedAt"]
    # tenant_portal: a tenant's receipts, newest first (ReceiptRepository.for_tenant).
    receipts = indexes["receipts_of_a_tenant"]
    assert receipts["collection"] == "deletionReceipts"
    assert [(f["field_path"], f["order"]) for f in receipts["fields"]] == [("tenantSubject", "ASCENDING"),
                                                                          ("requestedAt", "DESCENDING")]


def test_every_collection_with_expiresAt_has_a_ttl_policy(tf, hcl):
    """Counters of the abuse limits expire on their own (docs/operations.md, "Abuse limits")."""
    from shared.store import schema

    ttl = {(body["collection"], body["field"]) for body in tf.resources_of("google_firestore_field").values()
           if "ttl_config" in body}
    expiring = {collection for collection, fields in schema._TOP.items() if "expiresAt" in fields}
    assert expiring and {(collection, "expiresAt") for collection in expiring} <= ttl


def test_lapsed_sync_leases_are_removed_by_a_ttl_policy(tf, hcl):
    """relay_contacts' leases (`tenants/{tenantId}/syncLeases/{leaseId}`, `expiresAt` only) are removed by a
    TTL policy on expiresAt, without an index (they are read by ID)."""
    ttl = tf.resources_of("google_firestore_field")["sync_lease_ttl"]
    assert (ttl["collection"], ttl["field"]) == ("syncLeases", "expiresAt")
    assert hcl.block(ttl, "ttl_config") == {} and hcl.block(ttl, "index_config") == {}


def test_lapsed_portal_sessions_are_removed_by_a_ttl_policy(tf, hcl):
    """tenant_portal's session records (`tenants/{tenantId}/portalSessions/{sessionId}`) nobody signed out of
    are removed by a TTL policy on expiresAt, without an index (read by ID, listed by collection)."""
    ttl = tf.resources_of("google_firestore_field")["portal_session_ttl"]
    assert (ttl["collection"], ttl["field"]) == ("portalSessions", "expiresAt")
    assert hcl.block(ttl, "ttl_config") == {} and hcl.block(ttl, "index_config") == {}
