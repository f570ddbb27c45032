# Least privilege, grant by grant. Every grant is on the resource itself (bucket, topic, subscription,
# secret, repository, Cloud Run service, service account) wherever that resource has its own IAM policy.
# Only Firestore (no per-database or per-collection IAM policy) and log writing are granted at project
# level, and the Firestore grants are conditioned on this one database. No primitive roles, no admin roles.
# All grants are additive (_iam_member), so nothing else in the project is overwritten.

# ---------------------------------------------------------------------------------------------------
# Custom roles: narrower than any predefined role.
# ---------------------------------------------------------------------------------------------------

# relay_contacts reads tenants/devices and updates lastSeenAt; it can neither create nor delete,
# so a deleted device is never re-created by a sync.
resource "google_project_iam_custom_role" "relay_firestore" {
  project     = var.project_id
  role_id     = "contactSyncRelayFirestore"
  title       = "Contact sync relay: read and update documents"
  description = "Read documents and update existing ones in Firestore; no create, no delete."
  permissions = [
    "datastore.databases.get",
    "datastore.databases.getMetadata",
    "datastore.entities.get",
    "datastore.entities.list",
    "datastore.entities.update",
  ]
}

# sweep_retention reads deadlines and writes the `pending` receipt of each request it publishes;
# it can neither update nor delete a document (deletions go through handle_deletion).
resource "google_project_iam_custom_role" "sweeper_firestore" {
  project     = var.project_id
  role_id     = "contactSyncSweeperFirestore"
  title       = "Contact sync sweeper: read documents, create receipts"
  description = "Read documents and create new ones in Firestore; no update, no delete."
  permissions = [
    "datastore.databases.get",
    "datastore.databases.getMetadata",
    "datastore.entities.create",
    "datastore.entities.get",
    "datastore.entities.list",
  ]
}

# Deleting technical files without being able to read them (no storage.objects.get).
resource "google_project_iam_custom_role" "technical_files_eraser" {
  project     = var.project_id
  role_id     = "contactSyncTechnicalFilesEraser"
  title       = "Contact sync: list and delete technical files"
  description = "List and delete objects; cannot read object contents or write objects."
  permissions = [
    "storage.objects.delete",
    "storage.objects.list",
  ]
}

# ---------------------------------------------------------------------------------------------------
# Firestore (project level, conditioned on the database).
# ---------------------------------------------------------------------------------------------------

resource "google_project_iam_member" "firestore_user_register_device" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.register_device.email}"

  condition {
    title       = "contact-sync-database-only"
    description = "Only the contact-sync Firestore database."
    expression  = local.firestore_condition_expression
  }
}

resource "google_project_iam_member" "firestore_relay_contacts" {
  project = var.project_id
  role    = google_project_iam_custom_role.relay_firestore.name
  member  = "serviceAccount:${google_service_account.relay_contacts.email}"

  condition {
    title       = "contact-sync-database-only"
    description = "Only the contact-sync Firestore database."
    expression  = local.firestore_condition_expression
  }
}

resource "google_project_iam_member" "firestore_user_manage_tenants" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.manage_tenants.email}"

  condition {
    title       = "contact-sync-database-only"
    description = "Only the contact-sync Firestore database."
    expression  = local.firestore_condition_expression
  }
}

resource "google_project_iam_member" "firestore_user_handle_deletion" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.handle_deletion.email}"

  condition {
    title       = "contact-sync-database-only"
    description = "Only the contact-sync Firestore database."
    expression  = local.firestore_condition_expression
  }
}

resource "google_project_iam_member" "firestore_sweep_retention" {
  project = var.project_id
  role    = google_project_iam_custom_role.sweeper_firestore.name
  member  = "serviceAccount:${google_service_account.sweep_retention.email}"

  condition {
    title       = "contact-sync-database-only"
    description = "Only the contact-sync Firestore database."
    expression  = local.firestore_condition_expression
  }
}

# ---------------------------------------------------------------------------------------------------
# Technical files bucket.
# ---------------------------------------------------------------------------------------------------

# Uploaders create objects only: they cannot read, list, overwrite or delete them.
resource "google_storage_bucket_iam_member" "technical_files_creator_register_device" {
  bucket = google_storage_bucket.technical_files.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.register_device.email}"
}

resource "google_storage_bucket_iam_member" "technical_files_creator_manage_tenants" {
  bucket = google_storage_bucket.technical_files.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.manage_tenants.email}"
}

# The deletion cascade.
resource "google_storage_bucket_iam_member" "technical_files_eraser_handle_deletion" {
  bucket = google_storage_bucket.technical_files.name
  role   = google_project_iam_custom_role.technical_files_eraser.name
  member = "serviceAccount:${google_service_account.handle_deletion.email}"
}

# The sweeper removes objects that have no manifest (ARCHITECTURE: orphans older than a day);
# such objects have no manifest to name them in a file.delete request.
resource "google_storage_bucket_iam_member" "technical_files_eraser_sweep_retention" {
  bucket = google_storage_bucket.technical_files.name
  role   = google_project_iam_custom_role.technical_files_eraser.name
  member = "serviceAccount:${google_service_account.sweep_retention.email}"
}

# ---------------------------------------------------------------------------------------------------
# Pub/Sub: only the publishers publish; only Pub/Sub itself moves messages to the dead letter.
# ---------------------------------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "deletion_publisher_register_device" {
  project = var.project_id
  topic   = google_pubsub_topic.deletion_requests.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.register_device.email}"
}

resource "google_pubsub_topic_iam_member" "deletion_publisher_manage_tenants" {
  project = var.project_id
  topic   = google_pubsub_topic.deletion_requests.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.manage_tenants.email}"
}

resource "google_pubsub_topic_iam_member" "deletion_publisher_sweep_retention" {
  project = var.project_id
  topic   = google_pubsub_topic.deletion_requests.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.sweep_retention.email}"
}

# Dead-lettering: the Pub/Sub service agent publishes to the dead-letter topic and acks the
# original message on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher_pubsub_agent" {
  project = var.project_id
  topic   = google_pubsub_topic.deletion_requests_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "handle_deletion_subscriber_pubsub_agent" {
  project      = var.project_id
  subscription = google_pubsub_subscription.handle_deletion.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# ---------------------------------------------------------------------------------------------------
# Secrets: each function reads only the secrets it uses.
# ---------------------------------------------------------------------------------------------------

resource "google_secret_manager_secret_iam_member" "entra_client_secret_relay_contacts" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.entra_client_secret.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.relay_contacts.email}"
}

resource "google_secret_manager_secret_iam_member" "cursor_key_relay_contacts" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.cursor_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.relay_contacts.email}"
}

resource "google_secret_manager_secret_iam_member" "receipt_key_register_device" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.receipt_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.register_device.email}"
}

resource "google_secret_manager_secret_iam_member" "receipt_key_manage_tenants" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.receipt_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.manage_tenants.email}"
}

resource "google_secret_manager_secret_iam_member" "receipt_key_sweep_retention" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.receipt_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sweep_retention.email}"
}

resource "google_secret_manager_secret_iam_member" "receipt_key_handle_deletion" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.receipt_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.handle_deletion.email}"
}

# ---------------------------------------------------------------------------------------------------
# Build identity.
# ---------------------------------------------------------------------------------------------------

resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.function_sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

# ---------------------------------------------------------------------------------------------------
# Who may invoke which function (roles/run.invoker on each function's Cloud Run service).
# ---------------------------------------------------------------------------------------------------

# Public by design: the app calls these; each request is authenticated in code (Entra ID token,
# tenant active, device registered).
resource "google_cloud_run_v2_service_iam_member" "register_device_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.register_device.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "relay_contacts_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.relay_contacts.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Operators and support only.
resource "google_cloud_run_v2_service_iam_member" "manage_tenants_invokers" {
  for_each = toset(var.tenant_admin_invokers)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.manage_tenants.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_v2_service_iam_member" "handle_deletion_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.handle_deletion.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.deletion_push.email}"
}

resource "google_cloud_run_v2_service_iam_member" "sweep_retention_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.sweep_retention.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.sweep_trigger.email}"
}

# Pub/Sub mints the OIDC tokens of push deliveries as these identities (needed on projects created
# before April 2021, harmless after). Granted on each service account, not on the project.
resource "google_service_account_iam_member" "deletion_push_token_creator" {
  service_account_id = google_service_account.deletion_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

resource "google_service_account_iam_member" "sweep_trigger_token_creator" {
  service_account_id = google_service_account.sweep_trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
