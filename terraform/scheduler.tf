# Cloud Scheduler ticks the retention sweeper through the retention-sweep topic.
# The job publishes as the Cloud Scheduler service agent, which holds pubsub.topics.publish
# through its own service-agent role; no grant is needed here.

resource "google_cloud_scheduler_job" "retention_sweep" {
  name        = "retention-sweep"
  project     = var.project_id
  region      = var.region
  description = "Publishes a tick to retention-sweep; sweep_retention then finds what passed its deadline."
  schedule    = var.retention_sweep_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.topic["retention_sweep"].id
    data       = base64encode(jsonencode({ type = "retention.sweep" }))
  }

  depends_on = [google_project_service.required]
}
