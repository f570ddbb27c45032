# The Cloud Functions (2nd gen) of local.functions (functions.tf), all built from one source bundle.

locals {
  runtime = "python312"

  # Settings every function reads.
  common_env = {
    GOOGLE_CLOUD_PROJECT   = var.project_id
    TECHNICAL_FILES_BUCKET = google_storage_bucket.bucket["technical_files"].name
    DELETION_TOPIC         = google_pubsub_topic.topic["deletion_requests"].name
  }

  # Settings of the functions with entra = true (token validation, Graph client credentials).
  entra_env = {
    ENTRA_AUTHORITY_HOST = var.entra_authority_host
    ENTRA_CLIENT_ID      = var.entra_client_id
    ENTRA_REQUIRED_SCOPE = var.entra_required_scope
  }
}

# Images of the functions live in a repository of their own, in the EU region, so the build
# identity can be granted write access to it alone.
resource "google_artifact_registry_repository" "functions" {
  # checkov:skip=CKV_GCP_84: Google-managed encryption; the images contain application code only, no customer data
  project       = var.project_id
  location      = var.region
  repository_id = "contact-sync-functions"
  description   = "Container images built by Cloud Functions for the contact-sync backend."
  format        = "DOCKER"

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.required]
}

# for_each iterates local.functions as written, because checkov renders every instance of a plain map
# (not of local.function_config): so it sees each function's ingress. The other settings come from
# local.function_config, the same entries completed with defaults and overrides. The skip below applies to
# all six instances; it is meant for the four with ingress ALLOW_ALL (tests/terraform checks that
# handle_deletion and sweep_retention pass CKV_GCP_124 without it).
resource "google_cloudfunctions2_function" "function" {
  # checkov:skip=CKV_GCP_124: register_device and relay_contacts are called by the mobile app from the internet, every request authenticated in code with an Entra ID access token; operators call manage_tenants from their own networks and Cloud Run IAM admits only var.tenant_admin_invokers; tenant administrators' browsers reach tenant_portal, which signs them in with Entra ID
  for_each = local.functions

  name        = replace(each.key, "_", "-")
  project     = var.project_id
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = local.runtime
    entry_point       = each.key
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.bucket["function_sources"].name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.function[each.key].email
    ingress_settings               = each.value.ingress
    all_traffic_on_latest_revision = true
    max_instance_count             = local.function_config[each.key].scaling.max_instance_count
    min_instance_count             = local.function_config[each.key].scaling.min_instance_count
    available_memory               = local.function_config[each.key].scaling.available_memory
    available_cpu                  = local.function_config[each.key].scaling.available_cpu
    # Requests one instance serves at once; functions-framework runs gunicorn with THREADS threads
    # (default 4 per vCPU), so THREADS below matches it.
    max_instance_request_concurrency = local.function_config[each.key].scaling.max_instance_request_concurrency
    timeout_seconds                  = local.function_config[each.key].scaling.timeout_seconds
    environment_variables = merge(
      local.common_env,
      { for key, value in local.entra_env : key => value if local.function_config[each.key].entra },
      local.function_config[each.key].env,
      { THREADS = tostring(local.function_config[each.key].scaling.max_instance_request_concurrency) },
    )

    dynamic "secret_environment_variables" {
      for_each = local.function_config[each.key].secrets
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  dynamic "event_trigger" {
    for_each = compact([local.function_config[each.key].trigger_topic])
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = google_pubsub_topic.topic[event_trigger.value].id
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.delivery[each.key].email
    }
  }

  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.function_secret,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_project_iam_member.build_log_writer,
    google_service_account_iam_member.delivery_token_creator,
  ]
}
