# Pub/Sub: deletion requests (with dead letter), the sweep tick, and the deletion push subscription.
# Message storage is pinned to the EU region.

resource "google_pubsub_topic" "topic" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; deletion requests carry only tenant/device/file IDs and request IDs, the sweep tick no data at all: no contact data
  # Topic names (contracts), keyed as in the topics output.
  for_each = {
    deletion_requests             = "deletion-requests"
    deletion_requests_dead_letter = "deletion-requests-dead-letter"
    retention_sweep               = "retention-sweep"
  }

  name    = each.value
  project = var.project_id

  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }

  depends_on = [google_project_service.required]
}

# The deletion trigger. Declared here rather than left to Eventarc because an Eventarc-managed
# subscription cannot carry a dead-letter policy in Terraform: this one pushes each request to
# handle_deletion with an OIDC token, retries with backoff, and dead-letters after
# deletion_max_delivery_attempts. handle_deletion therefore has no event_trigger of its own, so
# every request is delivered by exactly one subscription.
resource "google_pubsub_subscription" "handle_deletion" {
  name    = "handle-deletion"
  project = var.project_id
  topic   = google_pubsub_topic.topic["deletion_requests"].id

  push_config {
    # The /projects/…/topics/… path lets functions-framework name the topic in the CloudEvent source.
    push_endpoint = "${google_cloudfunctions2_function.function["handle_deletion"].service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.topic["deletion_requests"].name}"

    oidc_token {
      service_account_email = google_service_account.delivery["handle_deletion"].email
      audience              = google_cloudfunctions2_function.function["handle_deletion"].service_config[0].uri
    }
  }

  # A push that finds no free instance of handle_deletion (Cloud Run answers 429) counts as a delivery
  # attempt. With at least 60 s between two deliveries of a message, deletion_max_delivery_attempts (60)
  # outlasts the largest burst three times over even if the backoff never grew (docs/deletion.md, "Bursts").
  retry_policy {
    minimum_backoff = "60s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.topic["deletion_requests_dead_letter"].id
    max_delivery_attempts = var.deletion_max_delivery_attempts
  }

  # handle_deletion may run up to its 540 s timeout; the ack deadline must outlast it.
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.invoker,
    google_service_account_iam_member.delivery_token_creator,
    google_pubsub_topic_iam_member.dead_letter_publisher_pubsub_agent,
  ]
}

# Without a subscription, messages published to the dead-letter topic would be dropped.
# Operators inspect and re-drive failed deletions from here (see README).
resource "google_pubsub_subscription" "deletion_requests_dead_letter" {
  name    = "deletion-requests-dead-letter"
  project = var.project_id
  topic   = google_pubsub_topic.topic["deletion_requests_dead_letter"].id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}
