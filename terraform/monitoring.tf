# Operations without personal data: log-based metrics over the functions' JSON log lines (allow-listed keys
# only, shared/logs.py), and alert policies. Each alert is described in docs/operations.md ("Alerts"), with
# what to do; its documentation names that section.

locals {
  # Log-based counters: one log line = 1. Filters select on the message text and allow-listed keys only
  # (function, reason, status), never on anything a user sent.
  log_metrics = {
    relay_server_errors = {
      description = "relay_contacts requests that failed on our side (5xx other than sync-busy)."
      filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.function=\"relay_contacts\" AND (jsonPayload.message=\"request failed\" OR jsonPayload.message=\"dependency unavailable\" OR (jsonPayload.message=\"request refused\" AND jsonPayload.status>=500 AND jsonPayload.reason!=\"sync-busy\"))"
    }
    relay_sync_busy = {
      description = "Full syncs refused with 503 sync-busy (the tenant runs RELAY_FULL_SYNCS_PER_TENANT already)."
      filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.function=\"relay_contacts\" AND jsonPayload.message=\"request refused\" AND jsonPayload.reason=\"sync-busy\""
    }
    graph_throttled = {
      description = "Microsoft Graph answered 429 to the relay (each is retried within GRAPH_RETRY_DEADLINE_SECONDS)."
      filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.message=\"graph throttled\""
    }
    stuck_deletions = {
      description = "Tenant deletions the sweeper published again: no progress for STUCK_DELETION_MINUTES."
      filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.message=\"stuck tenant deletion published again\""
    }
    deletion_failures = {
      description = "Deletion attempts that failed and will be delivered again (a 429 for lack of an instance never gets here)."
      filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.function=\"handle_deletion\" AND jsonPayload.message=\"deletion failed; Pub/Sub will redeliver\""
    }
    sweep_failures = {
      description = "Retention sweeps that failed (the tick is delivered again)."
      filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.message=\"retention sweep failed; the tick will be delivered again\""
    }
  }

  # threshold: more than this many in `window` seconds opens an incident.
  log_alerts = {
    relay_server_errors = { title = "Relay: server errors", threshold = 5, window = 300, section = "relay-server-errors" }
    relay_sync_busy     = { title = "Relay: many full syncs refused (sync-busy)", threshold = 2000, window = 900, section = "relay-sync-busy" }
    graph_throttled     = { title = "Graph: throttling (429)", threshold = 100, window = 300, section = "graph-throttling" }
    stuck_deletions     = { title = "Deletion stuck longer than STUCK_DELETION_MINUTES", threshold = 0, window = 900, section = "deletion-stuck" }
    deletion_failures   = { title = "Deletions failing", threshold = 3, window = 900, section = "deletion-failures" }
    sweep_failures      = { title = "Retention sweep failing", threshold = 0, window = 1800, section = "sweep-failures" }
  }

  operations_doc = "docs/operations.md, section \"Alerts\""
}

resource "google_logging_metric" "metric" {
  for_each = local.log_metrics

  project     = var.project_id
  name        = "contact-sync/${replace(each.key, "_", "-")}"
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.required]
}

resource "google_monitoring_alert_policy" "log_metric" {
  for_each = local.log_alerts

  project               = var.project_id
  display_name          = "contact-sync: ${each.value.title}"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = each.value.title
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.metric[each.key].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "${each.value.window}s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "${each.value.title}: what it means and what to do: ${local.operations_doc}, \"${each.value.section}\"."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.required]
}

# A message in the dead-letter topic: a deletion did not happen and nobody retries it (docs/deletion.md).
resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "contact-sync: Deletion requests in the dead-letter topic"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "Undelivered messages in deletion-requests-dead-letter"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.deletion_requests_dead_letter.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "Deletion requests in the dead-letter topic: ${local.operations_doc}, \"dead-letters\" (replay: docs/deletion.md)."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.required]
}
