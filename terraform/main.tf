# Project-wide pieces: required APIs, identities of Google-managed agents, shared locals.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  required_apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  # Pub/Sub's own service agent signs push requests, dead-letters messages and acks them.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  source_dir = coalesce(var.source_dir, abspath("${path.module}/.."))

  # Firestore has no per-collection IAM: grants are project-level, narrowed to this one database.
  firestore_condition_expression = "resource.name == \"projects/${var.project_id}/databases/${google_firestore_database.main.name}\""
}

resource "google_project_service" "required" {
  for_each = var.enable_apis ? local.required_apis : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
