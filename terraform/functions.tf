# The six Cloud Functions (2nd gen), one entry per entry point in main.py. Everything a function gets is
# derived from its entry here: the function itself (cloudfunctions.tf), its runtime service account
# (serviceaccounts.tf), its IAM grants and invokers (iam.tf) and its secrets (secrets.tf). A new function is
# one more entry (and its folder functions/<entry point>/ re-exported by main.py).
#
# This file holds data only (literals, var.* and its own locals): the function_overrides validation in
# variables.tf names the entry points from it, and tests/terraform evaluates it with Terraform alone
# (variables.tf + functions.tf need no provider). Resources refer to it, never the other way round.
#
# An entry sets (required: description, account_description, ingress, grants.firestore, scaling; everything
# else has a default in local.function_defaults below):
#   description          the function's description
#   account_description  the description of its runtime service account fn-<entry-point>
#   delivery             event functions: the identity Pub/Sub or Eventarc deliver events as (its only invoker)
#   trigger_topic        an Eventarc trigger on this topic (a key of google_pubsub_topic.topic in pubsub.tf)
#   ingress              ALLOW_ALL for functions called from outside Google Cloud, else ALLOW_INTERNAL_ONLY
#   invokers             IAM members given roles/run.invoker on the function
#   entra                true: gets ENTRA_AUTHORITY_HOST, ENTRA_CLIENT_ID, ENTRA_REQUIRED_SCOPE
#   secrets              environment variables read from Secret Manager (keys of google_secret_manager_secret.secret)
#   grants               roles of the runtime identity on Firestore (conditioned on the database), the technical
#                        files bucket and the deletion-requests topic (default: none); a role is a predefined
#                        role or the key of a custom role in local.custom_roles (iam.tf)
#   scaling              max/min instances, memory, CPU, request concurrency per instance (functions-framework's
#                        gunicorn gets as many THREADS), timeout (var.function_overrides changes them)
#   env                  settings beyond the common ones (GOOGLE_CLOUD_PROJECT, TECHNICAL_FILES_BUCKET, DELETION_TOPIC)
locals {
  functions = {
    register_device = {
      description         = "Registers and unregisters devices; accepts diagnostics uploads. Public, authenticated by Entra ID tokens in code."
      account_description = "Runtime identity of register_device: devices, diagnostics uploads, device.delete requests."
      # Called by the mobile app from the internet; every request is authenticated in code (Entra ID token,
      # tenant active, device registered).
      ingress  = "ALLOW_ALL"
      invokers = ["allUsers"]
      entra    = true
      secrets  = ["RECEIPT_KEY"]
      # Uploaders create objects only: they cannot read, list, overwrite or delete them.
      grants = { firestore = "roles/datastore.user", technical_files = "roles/storage.objectCreator", deletion_requests = "roles/pubsub.publisher" }
      # docs/capacity.md: I/O-bound (a token check, one transaction); 40 requests per instance share 1 vCPU.
      scaling = { max_instance_count = 20, available_memory = "512Mi", available_cpu = "1", max_instance_request_concurrency = 40, timeout_seconds = 60 }
      env = {
        DIAGNOSTICS_RETENTION_DAYS                   = tostring(var.diagnostics_retention_days)
        MAX_DEVICES_PER_TENANT                       = tostring(var.max_devices_per_tenant)
        DEVICE_REGISTRATIONS_PER_TENANT_PER_MINUTE   = tostring(var.device_registrations_per_tenant_per_minute)
        DEVICE_REGISTRATIONS_PER_USER_PER_10_MINUTES = tostring(var.device_registrations_per_user_per_10_minutes)
        DIAGNOSTICS_PER_DEVICE_PER_DAY               = tostring(var.diagnostics_per_device_per_day)
      }
    }

    relay_contacts = {
      description         = "Streams the tenant's directory from Microsoft Graph to the device; stores no contact data. Public, authenticated by Entra ID tokens in code."
      account_description = "Runtime identity of relay_contacts: reads tenants and devices, updates lastSeenAt, nothing else."
      ingress             = "ALLOW_ALL"
      invokers            = ["allUsers"]
      entra               = true
      secrets             = ["ENTRA_CLIENT_SECRET", "CURSOR_KEY"]
      # Read and update (a deleted device is never re-created by a sync), plus its sync leases. Stores
      # nothing else, so no Storage or Pub/Sub access.
      grants = { firestore = "relay_firestore" }
      # docs/capacity.md: the phones of a tenant share rounds (one Graph read, lines built once), so a stream
      # costs only writing and gzipping shared bytes; 80 streams per instance (a few rounds' CPU, ≈ 0.3 MiB of
      # gzip state each). 3,600 s (the 2nd gen HTTP maximum): a phone's stream may span two rounds of a large
      # directory; the sync leases lapse after it (LEASE_SECONDS 3,660).
      scaling = { max_instance_count = 100, available_memory = "512Mi", available_cpu = "1", max_instance_request_concurrency = 80, timeout_seconds = 3600 }
      env     = { GRAPH_BASE_URL = var.graph_base_url, GRAPH_RETRY_DEADLINE_SECONDS = tostring(var.graph_retry_deadline_seconds), RELAY_FULL_SYNCS_PER_TENANT = tostring(var.relay_full_syncs_per_tenant) }
    }

    manage_tenants = {
      description         = "Tenant administration for operators and support. Invocable only by var.tenant_admin_invokers (IAM)."
      account_description = "Runtime identity of manage_tenants: tenant administration, technical files, deletion requests."
      # Operators call it from their own networks; Cloud Run IAM admits only the listed principals.
      ingress  = "ALLOW_ALL"
      invokers = var.tenant_admin_invokers
      secrets  = ["RECEIPT_KEY"]
      grants   = { firestore = "roles/datastore.user", technical_files = "roles/storage.objectCreator", deletion_requests = "roles/pubsub.publisher" }
      # Operators' calls, technical files up to 10 MiB: 10 at once per instance.
      scaling = { max_instance_count = 5, available_memory = "512Mi", available_cpu = "1", max_instance_request_concurrency = 10, timeout_seconds = 120 }
      env     = { AUDIT_RETENTION_DAYS = tostring(var.audit_retention_days) }
    }

    # Delivered by the handle-deletion push subscription in pubsub.tf (with dead-letter policy), not by an
    # Eventarc trigger: see the comment there.
    handle_deletion = {
      description         = "Cascading deletion of tenants, devices and technical files from deletion-requests."
      account_description = "Runtime identity of handle_deletion: the only identity that deletes Firestore data and technical files."
      delivery = {
        account_id   = "push-handle-deletion"
        display_name = "Pub/Sub push to handle_deletion"
        description  = "Identity in the OIDC token of the handle-deletion push subscription; may only invoke handle_deletion."
      }
      ingress = "ALLOW_INTERNAL_ONLY"
      secrets = ["RECEIPT_KEY"]
      # The deletion cascade: list and delete, never read. Consumes through the push subscription; publishes
      # only the continuation of a deletion that reached DELETION_ATTEMPT_SECONDS (same requestId).
      grants = { firestore = "roles/datastore.user", technical_files = "technical_files_eraser", deletion_requests = "roles/pubsub.publisher" }
      # docs/capacity.md: an attempt is time-boxed (DELETION_ATTEMPT_SECONDS) under the 540 s timeout; 4 attempts
      # per instance (each runs its own BulkWriter and 10 Storage delete threads).
      scaling = { max_instance_count = 20, available_memory = "512Mi", available_cpu = "1", max_instance_request_concurrency = 4, timeout_seconds = 540 }
      env     = { DELETION_INITIAL_OPS_PER_SECOND = tostring(var.deletion_initial_ops_per_second), DELETION_MAX_OPS_PER_SECOND = tostring(var.deletion_max_ops_per_second), DELETION_ATTEMPT_SECONDS = tostring(var.deletion_attempt_seconds) }
    }

    # The tenant administrators' portal: public pages; sign-in with Microsoft, sessions and CSRF are checked
    # in code. Register {portal_base_url}/auth/callback and /onboard/callback as Web redirect URIs of the app (README).
    tenant_portal = {
      description         = "Administration portal of tenant administrators (sign-in with Microsoft, onboarding, devices, settings, deletion, receipts, /privacy). Public, authenticated in code."
      account_description = "Runtime identity of tenant_portal: creates a self-onboarded tenant, reads its tenant, devices and receipts, updates settings, requests deletions."
      ingress             = "ALLOW_ALL"
      invokers            = ["allUsers"]
      entra               = true
      secrets             = ["ENTRA_CLIENT_SECRET", "RECEIPT_KEY", "PORTAL_SESSION_KEY"]
      # Reads, creates (receipts, a tenant onboarded through admin consent) and updates (settings, the deletion
      # mark); deletes nothing: handle_deletion does.
      grants = { firestore = "portal_firestore", deletion_requests = "roles/pubsub.publisher" }
      # docs/capacity.md: administrators' pages, I/O-bound (a token exchange, a few reads); low traffic.
      scaling = { max_instance_count = 5, available_memory = "512Mi", available_cpu = "1", max_instance_request_concurrency = 20, timeout_seconds = 60 }
      env     = { PORTAL_BASE_URL = var.portal_base_url, AUDIT_RETENTION_DAYS = tostring(var.audit_retention_days) }
    }

    # Ticked by Cloud Scheduler through retention-sweep.
    sweep_retention = {
      description         = "Retention sweeper, ticked by Cloud Scheduler through retention-sweep; publishes deletion requests."
      account_description = "Runtime identity of sweep_retention: reads deadlines, writes pending receipts, publishes deletion requests, removes orphaned objects."
      delivery = {
        account_id   = "trigger-sweep-retention"
        display_name = "Eventarc trigger of sweep_retention"
        description  = "Identity of the Eventarc trigger on retention-sweep; may only invoke sweep_retention."
      }
      trigger_topic = "retention_sweep"
      ingress       = "ALLOW_INTERNAL_ONLY"
      # Writes the pending receipt (subject = HMAC under RECEIPT_KEY) of each request it publishes.
      secrets = ["RECEIPT_KEY"]
      # Reads and creates only. Removes objects that have no manifest (orphans older than a day): no
      # file.delete can name them.
      grants = { firestore = "sweeper_firestore", technical_files = "technical_files_eraser", deletion_requests = "roles/pubsub.publisher" }
      # One sweep at a time.
      scaling = { max_instance_count = 1, available_memory = "512Mi", available_cpu = "1", max_instance_request_concurrency = 1, timeout_seconds = 540 }
      env     = { DEVICE_INACTIVITY_DAYS = tostring(var.device_inactivity_days), STUCK_DELETION_MINUTES = tostring(var.stuck_deletion_minutes) }
    }
  }

  # What an entry leaves out.
  function_defaults = {
    scaling       = { min_instance_count = 0 }
    invokers      = []
    entra         = false
    env           = {}
    secrets       = []
    grants        = { technical_files = null, deletion_requests = null }
    delivery      = null
    trigger_topic = null
  }

  # Each entry of local.functions completed with local.function_defaults; scaling with var.function_overrides.
  function_config = {
    for name, spec in local.functions : name => merge(local.function_defaults, spec, {
      grants = merge(local.function_defaults.grants, spec.grants)
      scaling = {
        for key, value in merge(local.function_defaults.scaling, spec.scaling) :
        key => coalesce(try(var.function_overrides[name][key], null), value)
      }
    })
  }
}
