"""Cloud Storage: private buckets, and technical files that are erased for real with a lifecycle safety net."""

from __future__ import annotations


def test_buckets_have_uniform_access_and_public_access_prevention(tf):
    buckets = tf.resources_of("google_storage_bucket")
    assert list(buckets) == ["bucket"]
    body = buckets["bucket"]
    assert set(body["for_each"]) == {"technical_files", "function_sources"}
    assert body["name"] == "${local.bucket_names[each.key]}"
    assert set(tf.locals["bucket_names"]) == set(body["for_each"])
    assert body["uniform_bucket_level_access"] is True
    assert body["public_access_prevention"] == "enforced"
    assert body["force_destroy"] is False


def test_technical_files_are_erased_for_real_with_a_lifecycle_safety_net(tf, hcl):
    body = tf.resource("google_storage_bucket.bucket")
    # Settings shared by both buckets: no soft delete, no versioning (a kept version would keep erased data).
    assert hcl.block(body, "soft_delete_policy")["retention_duration_seconds"] == 0
    assert hcl.block(body, "versioning")["enabled"] is False
    for_each, rule = hcl.dynamic(body, "lifecycle_rule")
    assert for_each == "${each.value}"
    condition = hcl.block(rule, "condition")
    assert condition["days_since_custom_time"] == "${lifecycle_rule.value}"
    # google provider 6.x drops a 0 days_since_custom_time unless asked to send it, and the grace may be 0.
    assert condition["send_days_since_custom_time_if_zero"] is True
    assert hcl.block(rule, "action")["type"] == "Delete"
    days = body["for_each"]
    assert days["technical_files"] == ["${var.technical_files_lifecycle_grace_days}"]
    assert days["function_sources"] == [], "the source bucket has no lifecycle rule"
