# The five Cloud Functions (2nd gen), one per entry point in main.py, all from one source bundle.

locals {
  runtime = "python312"

  function_defaults = {
    register_device = { max_instance_count = 20, min_instance_count = 0, available_memory = "256Mi", timeout_seconds = 60 }
    relay_contacts  = { max_instance_count = 50, min_instance_count = 0, available_memory = "512Mi", timeout_seconds = 540 }
    manage_tenants  = { max_instance_count = 5, min_instance_count = 0, available_memory = "256Mi", timeout_seconds = 120 }
    handle_deletion = { max_instance_count = 20, min_instance_count = 0, available_memory = "512Mi", timeout_seconds = 540 }
    sweep_retention = { max_instance_count = 1, min_instance_count = 0, available_memory = "512Mi", timeout_seconds = 540 }
  }

  function_settings = {
    for name, defaults in local.function_defaults : name => {
      for key, value in defaults : key => coalesce(try(var.function_overrides[name][key], null), value)
    }
  }

  # Settings every function reads.
  common_env = {
    GOOGLE_CLOUD_PROJECT   = var.project_id
    TECHNICAL_FILES_BUCKET = google_storage_bucket.technical_files.name
    DELETION_TOPIC         = google_pubsub_topic.deletion_requests.name
  }

  entra_env = {
    ENTRA_AUTHORITY_HOST = var.entra_authority_host
    ENTRA_CLIENT_ID      = var.entra_client_id
    ENTRA_REQUIRED_SCOPE = var.entra_required_scope
  }

  # Each function gets the settings it uses; secrets come from Secret Manager below.
  function_env = {
    register_device = merge(local.common_env, local.entra_env, {
      DIAGNOSTICS_RETENTION_DAYS = tostring(var.diagnostics_retention_days)
      MAX_DEVICES_PER_TENANT     = tostring(var.max_devices_per_tenant)
    })
    relay_contacts = merge(local.common_env, local.entra_env, {
      GRAPH_BASE_URL               = var.graph_base_url
      GRAPH_RETRY_DEADLINE_SECONDS = tostring(var.graph_retry_deadline_seconds)
    })
    manage_tenants = local.common_env
    handle_deletion = merge(local.common_env, {
      DELETION_INITIAL_OPS_PER_SECOND = tostring(var.deletion_initial_ops_per_second)
      DELETION_MAX_OPS_PER_SECOND     = tostring(var.deletion_max_ops_per_second)
    })
    sweep_retention = merge(local.common_env, {
      DEVICE_INACTIVITY_DAYS = tostring(var.device_inactivity_days)
      STUCK_DELETION_MINUTES = tostring(var.stuck_deletion_minutes)
    })
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

resource "google_cloudfunctions2_function" "register_device" {
  # checkov:skip=CKV_GCP_124: register_device is called by the mobile app from the internet; every request is authenticated in code with an Entra ID access token
  name        = "register-device"
  project     = var.project_id
  location    = var.region
  description = "Registers and unregisters devices; accepts diagnostics uploads. Public, authenticated by Entra ID tokens in code."

  build_config {
    runtime           = local.runtime
    entry_point       = "register_device"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_sources.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.register_device.email
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    max_instance_count             = local.function_settings.register_device.max_instance_count
    min_instance_count             = local.function_settings.register_device.min_instance_count
    available_memory               = local.function_settings.register_device.available_memory
    timeout_seconds                = local.function_settings.register_device.timeout_seconds
    environment_variables          = local.function_env.register_device

    secret_environment_variables {
      key        = "RECEIPT_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.receipt_key.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.receipt_key_register_device,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_project_iam_member.build_log_writer,
  ]
}

resource "google_cloudfunctions2_function" "relay_contacts" {
  # checkov:skip=CKV_GCP_124: relay_contacts is called by the mobile app from the internet; every request is authenticated in code with an Entra ID access token
  name        = "relay-contacts"
  project     = var.project_id
  location    = var.region
  description = "Streams the tenant's directory from Microsoft Graph to the device; stores no contact data. Public, authenticated by Entra ID tokens in code."

  build_config {
    runtime           = local.runtime
    entry_point       = "relay_contacts"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_sources.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.relay_contacts.email
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    max_instance_count             = local.function_settings.relay_contacts.max_instance_count
    min_instance_count             = local.function_settings.relay_contacts.min_instance_count
    available_memory               = local.function_settings.relay_contacts.available_memory
    timeout_seconds                = local.function_settings.relay_contacts.timeout_seconds
    environment_variables          = local.function_env.relay_contacts

    secret_environment_variables {
      key        = "ENTRA_CLIENT_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.entra_client_secret.secret_id
      version    = "latest"
    }

    secret_environment_variables {
      key        = "CURSOR_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.cursor_key.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.entra_client_secret_relay_contacts,
    google_secret_manager_secret_iam_member.cursor_key_relay_contacts,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_project_iam_member.build_log_writer,
  ]
}

resource "google_cloudfunctions2_function" "manage_tenants" {
  # checkov:skip=CKV_GCP_124: operators call manage_tenants from their own networks; Cloud Run IAM admits only the principals in var.tenant_admin_invokers
  name        = "manage-tenants"
  project     = var.project_id
  location    = var.region
  description = "Tenant administration for operators and support. Invocable only by var.tenant_admin_invokers (IAM)."

  build_config {
    runtime           = local.runtime
    entry_point       = "manage_tenants"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_sources.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.manage_tenants.email
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    max_instance_count             = local.function_settings.manage_tenants.max_instance_count
    min_instance_count             = local.function_settings.manage_tenants.min_instance_count
    available_memory               = local.function_settings.manage_tenants.available_memory
    timeout_seconds                = local.function_settings.manage_tenants.timeout_seconds
    environment_variables          = local.function_env.manage_tenants

    secret_environment_variables {
      key        = "RECEIPT_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.receipt_key.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.receipt_key_manage_tenants,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_project_iam_member.build_log_writer,
  ]
}

# Triggered by the handle-deletion push subscription in pubsub.tf (with dead-letter policy),
# not by an event_trigger: see the comment there. Reachable only from inside Google Cloud.
resource "google_cloudfunctions2_function" "handle_deletion" {
  name        = "handle-deletion"
  project     = var.project_id
  location    = var.region
  description = "Cascading deletion of tenants, devices and technical files from deletion-requests."

  build_config {
    runtime           = local.runtime
    entry_point       = "handle_deletion"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_sources.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.handle_deletion.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    max_instance_count             = local.function_settings.handle_deletion.max_instance_count
    min_instance_count             = local.function_settings.handle_deletion.min_instance_count
    available_memory               = local.function_settings.handle_deletion.available_memory
    timeout_seconds                = local.function_settings.handle_deletion.timeout_seconds
    environment_variables          = local.function_env.handle_deletion

    secret_environment_variables {
      key        = "RECEIPT_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.receipt_key.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.receipt_key_handle_deletion,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_project_iam_member.build_log_writer,
  ]
}

resource "google_cloudfunctions2_function" "sweep_retention" {
  name        = "sweep-retention"
  project     = var.project_id
  location    = var.region
  description = "Retention sweeper, ticked by Cloud Scheduler through retention-sweep; publishes deletion requests."

  build_config {
    runtime           = local.runtime
    entry_point       = "sweep_retention"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_sources.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.sweep_retention.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    max_instance_count             = local.function_settings.sweep_retention.max_instance_count
    min_instance_count             = local.function_settings.sweep_retention.min_instance_count
    available_memory               = local.function_settings.sweep_retention.available_memory
    timeout_seconds                = local.function_settings.sweep_retention.timeout_seconds
    environment_variables          = local.function_env.sweep_retention

    # The sweeper writes the pending receipt (subject = HMAC under RECEIPT_KEY) of each request it publishes.
    secret_environment_variables {
      key        = "RECEIPT_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.receipt_key.secret_id
      version    = "latest"
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.retention_sweep.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.sweep_trigger.email
  }

  depends_on = [
    google_project_service.required,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_project_iam_member.build_log_writer,
    google_service_account_iam_member.sweep_trigger_token_creator,
    google_secret_manager_secret_iam_member.receipt_key_sweep_retention,
  ]
}
