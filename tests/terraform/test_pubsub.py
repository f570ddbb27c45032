"""Pub/Sub: the contract topics with EU message storage, the deletion push subscription with its
dead-letter and retry policies, and the dead-letter subscription operators re-drive from.
"""

from __future__ import annotations


def test_pubsub_topics_have_contract_names_and_eu_message_storage(tf, hcl, eu, contract):
    topics = tf.resources_of("google_pubsub_topic")
    assert list(topics) == ["topic"]
    body = topics["topic"]
    names = body["for_each"]
    assert isinstance(names, dict) and set(names.values()) == contract.topics
    assert set(names) == {name.replace("-", "_") for name in contract.topics}, "keys as in the topics output"
    assert body["name"] == "${each.value}"
    regions = tf.resolve(hcl.block(body, "message_storage_policy")["allowed_persistence_regions"])
    assert regions and all(eu(region) for region in regions), regions


def test_deletion_subscription_has_dead_letter_policy_and_retry(tf, hcl, functions):
    subscriptions = tf.resources_of("google_pubsub_subscription")
    deletion = {
        name: body for name, body in subscriptions.items()
        if body["topic"] == '${google_pubsub_topic.topic["deletion_requests"].id}'
    }
    assert list(deletion) == ["handle_deletion"], f"exactly one subscription must consume deletion-requests: {deletion}"
    sub = deletion["handle_deletion"]

    dead_letter = hcl.block(sub, "dead_letter_policy")
    assert dead_letter["dead_letter_topic"] == '${google_pubsub_topic.topic["deletion_requests_dead_letter"].id}'
    attempts = tf.resolve(dead_letter["max_delivery_attempts"])
    assert isinstance(attempts, int) and 5 <= attempts <= 100
    retry = hcl.block(sub, "retry_policy")
    assert retry.get("minimum_backoff") and retry.get("maximum_backoff")

    push = hcl.block(sub, "push_config")
    url = '${google_cloudfunctions2_function.function["handle_deletion"].service_config[0].uri}'
    assert push["push_endpoint"].startswith(url), push["push_endpoint"]
    oidc = hcl.block(push, "oidc_token")
    assert oidc["service_account_email"] == '${google_service_account.delivery["handle_deletion"].email}'
    assert functions["handle_deletion"]["delivery"]["account_id"] == "push-handle-deletion"

    timeout = functions["handle_deletion"]["scaling"]["timeout_seconds"]
    assert sub["ack_deadline_seconds"] >= timeout, "the ack deadline must outlast handle_deletion's timeout"
    assert hcl.block(sub, "expiration_policy")["ttl"] == "", "the subscription must never expire"

    # Exactly one delivery path: no Eventarc trigger on deletion-requests.
    assert functions["handle_deletion"]["trigger_topic"] is None, "handle_deletion would receive every request twice"
    assert all(fn["trigger_topic"] != "deletion_requests" for fn in functions.values())


def test_pubsub_service_agent_may_dead_letter(tf):
    agent = "${local.pubsub_service_agent}"
    publisher = tf.resource("google_pubsub_topic_iam_member.dead_letter_publisher_pubsub_agent")
    assert publisher["member"] == agent and publisher["role"] == "roles/pubsub.publisher"
    assert publisher["topic"] == '${google_pubsub_topic.topic["deletion_requests_dead_letter"].name}'
    subscriber = tf.resource("google_pubsub_subscription_iam_member.handle_deletion_subscriber_pubsub_agent")
    assert subscriber["member"] == agent and subscriber["role"] == "roles/pubsub.subscriber"
    assert subscriber["subscription"] == "${google_pubsub_subscription.handle_deletion.name}"


def test_dead_lettered_requests_are_kept_for_operators(tf, hcl):
    subscription = tf.resource("google_pubsub_subscription.deletion_requests_dead_letter")
    assert subscription["topic"] == '${google_pubsub_topic.topic["deletion_requests_dead_letter"].id}', (
        "messages on a topic without subscription are lost"
    )
    assert "push_config" not in subscription, "operators pull from it"
    assert subscription["message_retention_duration"] == "604800s"
    assert hcl.block(subscription, "expiration_policy")["ttl"] == ""


# docs/deletion.md, "Bursts": what a small deletion holds one of handle_deletion's slots for (assumed,
# generous: benchmarks/deletion_ramp.py measured 0.7 s p50 for device.delete on a busy emulator), and how
# many times the drain time the attempts must last even if Pub/Sub's backoff never grew.
SMALL_DELETION_SECONDS = 1.0
MARGIN = 3


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def test_the_largest_burst_of_deletion_requests_drains_before_any_request_is_dead_lettered(tf, hcl, functions):
    """A push finding no free instance (429) counts as a delivery attempt: the attempts, at least
    minimum_backoff apart, must outlast the time the largest burst takes to drain through the slots."""
    import inspect

    from functions.sweep_retention.service import RetentionSweeper

    defaults = inspect.signature(RetentionSweeper).parameters
    page_size, max_pages = defaults["page_size"].default, defaults["max_pages"].default
    burst = 2 * page_size * max_pages + page_size  # expired files, silent devices, stuck tenants
    scaling = functions["handle_deletion"]["scaling"]
    slots = scaling["max_instance_count"] * scaling["max_instance_request_concurrency"]
    drained = scaling["timeout_seconds"] + burst * SMALL_DELETION_SECONDS / slots

    sub = tf.resource("google_pubsub_subscription.handle_deletion")
    attempts = tf.resolve(hcl.block(sub, "dead_letter_policy")["max_delivery_attempts"])
    retry = hcl.block(sub, "retry_policy")
    guaranteed = (attempts - 1) * _seconds(retry["minimum_backoff"])
    assert guaranteed >= MARGIN * drained, (
        f"{attempts} attempts {retry['minimum_backoff']} apart last {guaranteed:.0f} s; a burst of {burst} over "
        f"{slots} slots drains in {drained:.0f} s (x{MARGIN} needed)")
    assert _seconds(retry["maximum_backoff"]) == 600  # Pub/Sub's maximum
    # The figures docs/deletion.md states.
    assert (burst, slots, round(drained), attempts, guaranteed) == (40_500, 80, 1046, 60, 3540)
