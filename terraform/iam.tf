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
  title       = "Contact sync relay: read and update documents, hold sync leases"
  description = "Read documents and update existing ones in Firestore; create and delete only its sync leases (enforced in code: shared/store/leases.py)."
  # create/delete: the sync leases of the admission control (tenants/{tenantId}/syncLeases/{slot}). IAM cannot
  # narrow a Firestore permission to a collection; the code writes nothing but leases with them, and a
  # device is only ever updated (never re-created) by a sync.
  permissions = [
    "datastore.databases.get",
    "datastore.databases.getMetadata",
    "datastore.entities.create",
    "datastore.entities.delete",
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

# tenant_portal reads its tenant, devices and receipts, creates pending receipts and updates the tenant
# (settings, the deletion mark); it can delete nothing.
resource "google_project_iam_custom_role" "portal_firestore" {
  project     = var.project_id
  role_id     = "contactSyncPortalFirestore"
  title       = "Contact sync portal: read, create and update documents"
  description = "Read, create and update documents in Firestore; no delete."
  permissions = [
    "datastore.databases.get",
    "datastore.databases.getMetadata",
    "datastore.entities.create",
    "datastore.entities.get",
    "datastore.entities.list",
    "datastore.entities.update",
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

# Per-function grants, from each entry of local.functions (functions.tf): grants, secrets, invokers, delivery.
locals {
  # Custom roles the function map names by key; any other role name is a predefined role.
  custom_roles = {
    relay_firestore        = google_project_iam_custom_role.relay_firestore.name
    portal_firestore       = google_project_iam_custom_role.portal_firestore.name
    sweeper_firestore      = google_project_iam_custom_role.sweeper_firestore.name
    technical_files_eraser = google_project_iam_custom_role.technical_files_eraser.name
  }

  # "<function> <ENV_VAR>" for every secret a function reads.
  function_secrets = merge([
    for name, fn in local.function_config : {
      for key in fn.secrets : "${name} ${key}" => { function = name, secret = key }
    }
  ]...)

  # "<function> <member>" for every listed invoker, "<function> delivery" for each delivery identity.
  invokers = merge(
    {
      for name in keys(local.delivery_identities) : "${name} delivery" => {
        function = name
        member   = "serviceAccount:${google_service_account.delivery[name].email}"
      }
    },
    [
      for name, fn in local.function_config : {
        for member in fn.invokers : "${name} ${member}" => { function = name, member = member }
      }
    ]...
  )
}

# ---------------------------------------------------------------------------------------------------
# Firestore (project level, conditioned on the database).
# ---------------------------------------------------------------------------------------------------

resource "google_project_iam_member" "firestore" {
  for_each = local.functions

  project = var.project_id
  role    = lookup(local.custom_roles, each.value.grants.firestore, each.value.grants.firestore)
  member  = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title       = "contact-sync-database-only"
    description = "Only the contact-sync Firestore database."
    expression  = local.firestore_condition_expression
  }
}

# ---------------------------------------------------------------------------------------------------
# Technical files bucket: uploaders create only (cannot read, list, overwrite or delete); erasers list
# and delete (cannot read). Nobody reads technical files back.
# ---------------------------------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "technical_files" {
  for_each = { for name, fn in local.function_config : name => fn.grants.technical_files if fn.grants.technical_files != null }

  bucket = google_storage_bucket.bucket["technical_files"].name
  role   = lookup(local.custom_roles, each.value, each.value)
  member = "serviceAccount:${google_service_account.function[each.key].email}"
}

# ---------------------------------------------------------------------------------------------------
# Pub/Sub: only the publishers publish; only Pub/Sub itself moves messages to the dead letter.
# ---------------------------------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "deletion_publisher" {
  for_each = { for name, fn in local.function_config : name => fn.grants.deletion_requests if fn.grants.deletion_requests != null }

  project = var.project_id
  topic   = google_pubsub_topic.topic["deletion_requests"].name
  role    = lookup(local.custom_roles, each.value, each.value)
  member  = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Dead-lettering: the Pub/Sub service agent publishes to the dead-letter topic and acks the
# original message on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher_pubsub_agent" {
  project = var.project_id
  topic   = google_pubsub_topic.topic["deletion_requests_dead_letter"].name
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

resource "google_secret_manager_secret_iam_member" "function_secret" {
  for_each = local.function_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.function].email}"
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
  bucket = google_storage_bucket.bucket["function_sources"].name
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
# Who may invoke which function (roles/run.invoker on each function's Cloud Run service):
# register_device and relay_contacts allUsers (the app; each request is authenticated in code),
# manage_tenants var.tenant_admin_invokers only, handle_deletion and sweep_retention their delivery identity only.
# ---------------------------------------------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.invokers

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.value.function].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
}

# Pub/Sub mints the OIDC tokens of push deliveries as the delivery identities (needed on projects created
# before April 2021, harmless after). Granted on each service account, not on the project.
resource "google_service_account_iam_member" "delivery_token_creator" {
  for_each = local.delivery_identities

  service_account_id = google_service_account.delivery[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
