# Inputs. Every location defaults to the EU; leaving the EU takes an explicit override.

locals {
  # The Google Cloud regions inside EU member states, the one list every location validation below uses
  # (europe-west2 London and europe-west6 Zurich are in Europe but not in the EU).
  eu_regions = [
    "europe-central2", "europe-north1", "europe-north2", "europe-southwest1",
    "europe-west1", "europe-west3", "europe-west4", "europe-west8",
    "europe-west9", "europe-west10", "europe-west12",
  ]

  # Cloud Storage bucket names (3-63 lower-case letters, digits, dots, hyphens, underscores).
  bucket_name_pattern = "^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"
}

variable "project_id" {
  type        = string
  description = "ID of the Google Cloud project that hosts the whole system (one project per environment)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project ID (6-30 lower-case letters, digits or hyphens)."
  }
}

variable "allow_non_eu_locations" {
  type        = bool
  default     = false
  description = "Explicit override that allows region, firestore_location and storage_location outside the EU. Leave false: the product promises EU hosting."
}

variable "region" {
  type        = string
  default     = "europe-west1"
  description = "Region of the functions, Pub/Sub message storage, Secret Manager replicas, Artifact Registry and Cloud Scheduler. Must be an EU region unless allow_non_eu_locations is true."

  validation {
    condition     = var.allow_non_eu_locations || contains(local.eu_regions, var.region)
    error_message = "region must be a Google Cloud region in the EU (e.g. europe-west1, europe-west3, europe-west4); set allow_non_eu_locations = true to override."
  }
}

variable "firestore_location" {
  type        = string
  default     = "eur3"
  description = "Location of the Firestore (Native mode) database: the EU multi-region eur3 (Belgium + Netherlands) or an EU region."

  validation {
    condition     = var.allow_non_eu_locations || contains(concat(["eur3"], local.eu_regions), var.firestore_location)
    error_message = "firestore_location must be eur3 or an EU region; set allow_non_eu_locations = true to override."
  }
}

variable "storage_location" {
  type        = string
  default     = "EU"
  description = "Location of the Cloud Storage buckets: the EU multi-region, the EUR4 dual-region (Finland + Netherlands) or an EU region."

  validation {
    condition     = var.allow_non_eu_locations || contains(concat(["eu", "eur4"], local.eu_regions), lower(var.storage_location))
    error_message = "storage_location must be EU, EUR4 or an EU region; set allow_non_eu_locations = true to override."
  }
}

variable "technical_files_bucket_name" {
  type        = string
  default     = null
  description = "Name of the bucket for technical files (TECHNICAL_FILES_BUCKET). Defaults to \"<project_id>-technical-files\"."

  validation {
    condition     = var.technical_files_bucket_name == null || can(regex(local.bucket_name_pattern, var.technical_files_bucket_name))
    error_message = "technical_files_bucket_name must be a valid bucket name (3-63 lower-case letters, digits, dots, hyphens, underscores)."
  }
}

variable "source_bucket_name" {
  type        = string
  default     = null
  description = "Name of the bucket that holds the functions' source bundles. Defaults to \"<project_id>-function-sources\"."

  validation {
    condition     = var.source_bucket_name == null || can(regex(local.bucket_name_pattern, var.source_bucket_name))
    error_message = "source_bucket_name must be a valid bucket name (3-63 lower-case letters, digits, dots, hyphens, underscores)."
  }
}

variable "source_dir" {
  type        = string
  default     = null
  description = "Repository root to bundle as the functions' source (main.py and requirements.txt at its top). Defaults to the parent directory of this module."
}

variable "entra_client_id" {
  type        = string
  description = "Application (client) ID of the Entra ID app registration of this API (ENTRA_CLIENT_ID): the expected token audience and the Graph client-credentials client."

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.entra_client_id))
    error_message = "entra_client_id must be a lower-case GUID."
  }
}

variable "portal_base_url" {
  type = string
  # Required in effect: "" fails the validation below with its message. A string default (not null, not
  # absent) keeps the function map evaluable offline, so checkov still sees each function instance.
  default     = ""
  description = "Origin the tenant portal is served at (PORTAL_BASE_URL), e.g. its custom domain; {portal_base_url}/auth/callback and {portal_base_url}/onboard/callback are the redirect URIs registered for the app."

  validation {
    condition     = can(regex("^https://[^/]+$", var.portal_base_url))
    error_message = "portal_base_url must be an https origin without a path (the __Host- session cookie needs Path=/)."
  }
}

variable "entra_authority_host" {
  type        = string
  default     = "https://login.microsoftonline.com"
  description = "Entra ID authority host (ENTRA_AUTHORITY_HOST). Outbound HTTP is allow-listed to this host and graph_base_url."

  validation {
    condition     = can(regex("^https://[^/]+$", var.entra_authority_host))
    error_message = "entra_authority_host must be an https:// origin without a path."
  }
}

variable "graph_base_url" {
  type        = string
  default     = "https://graph.microsoft.com/v1.0"
  description = "Microsoft Graph base URL (GRAPH_BASE_URL)."

  validation {
    condition     = can(regex("^https://", var.graph_base_url))
    error_message = "graph_base_url must start with https://."
  }
}

variable "entra_required_scope" {
  type        = string
  default     = "access_as_user"
  description = "Delegated scope the app's access tokens must carry (ENTRA_REQUIRED_SCOPE)."
}

variable "tenant_admin_invokers" {
  type        = list(string)
  default     = []
  description = "Principals allowed to call manage_tenants (operators, support), as IAM members: \"user:…\", \"group:…\" or \"serviceAccount:…\". Nobody else can invoke it."

  validation {
    condition = alltrue([
      for member in var.tenant_admin_invokers : can(regex("^(user|group|serviceAccount):[^@\\s]+@[^@\\s]+$", member))
    ])
    error_message = "tenant_admin_invokers may only list user:, group: or serviceAccount: members (never allUsers, allAuthenticatedUsers or domain:)."
  }
}

variable "diagnostics_retention_days" {
  type        = number
  default     = 30
  description = "Days a device diagnostics upload is kept before deletion (DIAGNOSTICS_RETENTION_DAYS)."

  validation {
    condition     = var.diagnostics_retention_days >= 1 && var.diagnostics_retention_days <= 365 && floor(var.diagnostics_retention_days) == var.diagnostics_retention_days
    error_message = "diagnostics_retention_days must be a whole number between 1 and 365."
  }
}

variable "audit_retention_days" {
  type        = number
  default     = 365
  description = "Days an audit event of a tenant is kept before the TTL policy removes it (AUDIT_RETENTION_DAYS)."

  validation {
    condition     = var.audit_retention_days >= 1 && var.audit_retention_days <= 3650 && floor(var.audit_retention_days) == var.audit_retention_days
    error_message = "audit_retention_days must be a whole number between 1 and 3650."
  }
}

variable "device_inactivity_days" {
  type        = number
  default     = 180
  description = "Days of silence after which the sweeper deletes a device (DEVICE_INACTIVITY_DAYS)."

  validation {
    condition     = var.device_inactivity_days >= 1 && floor(var.device_inactivity_days) == var.device_inactivity_days
    error_message = "device_inactivity_days must be a whole number of at least 1."
  }
}

variable "max_devices_per_tenant" {
  type        = number
  default     = 10000
  description = "Approximate per-tenant device quota enforced by register_device (MAX_DEVICES_PER_TENANT)."

  validation {
    condition     = var.max_devices_per_tenant >= 1 && floor(var.max_devices_per_tenant) == var.max_devices_per_tenant
    error_message = "max_devices_per_tenant must be a whole number of at least 1."
  }
}

variable "device_registrations_per_tenant_per_minute" {
  type        = number
  default     = 600
  description = "New devices one tenant may register per UTC minute, across all instances (DEVICE_REGISTRATIONS_PER_TENANT_PER_MINUTE)."

  validation {
    condition     = var.device_registrations_per_tenant_per_minute >= 1 && floor(var.device_registrations_per_tenant_per_minute) == var.device_registrations_per_tenant_per_minute
    error_message = "device_registrations_per_tenant_per_minute must be a whole number of at least 1."
  }
}

variable "device_registrations_per_user_per_10_minutes" {
  type        = number
  default     = 5
  description = "New devices one user may register per 10 minutes, per instance, counted in memory only (DEVICE_REGISTRATIONS_PER_USER_PER_10_MINUTES)."

  validation {
    condition     = var.device_registrations_per_user_per_10_minutes >= 1 && floor(var.device_registrations_per_user_per_10_minutes) == var.device_registrations_per_user_per_10_minutes
    error_message = "device_registrations_per_user_per_10_minutes must be a whole number of at least 1."
  }
}

variable "diagnostics_per_device_per_day" {
  type        = number
  default     = 24
  description = "Diagnostics uploads one device may make per UTC day (DIAGNOSTICS_PER_DEVICE_PER_DAY)."

  validation {
    condition     = var.diagnostics_per_device_per_day >= 1 && floor(var.diagnostics_per_device_per_day) == var.diagnostics_per_device_per_day
    error_message = "diagnostics_per_device_per_day must be a whole number of at least 1."
  }
}

variable "graph_retry_deadline_seconds" {
  type        = number
  default     = 20
  description = "How long relay_contacts retries throttled Graph calls before answering 503 (GRAPH_RETRY_DEADLINE_SECONDS)."

  validation {
    condition     = var.graph_retry_deadline_seconds >= 1 && var.graph_retry_deadline_seconds <= 120
    error_message = "graph_retry_deadline_seconds must be between 1 and 120."
  }
}

variable "relay_full_syncs_per_tenant" {
  type        = number
  default     = 20
  description = "Full syncs of one tenant that relay_contacts runs at once across all instances (RELAY_FULL_SYNCS_PER_TENANT); more get 503 sync-busy. See docs/capacity.md."

  validation {
    condition     = var.relay_full_syncs_per_tenant >= 1 && var.relay_full_syncs_per_tenant <= 1000 && floor(var.relay_full_syncs_per_tenant) == var.relay_full_syncs_per_tenant
    error_message = "relay_full_syncs_per_tenant must be a whole number between 1 and 1000."
  }
}

variable "stuck_deletion_minutes" {
  type        = number
  default     = 60
  description = "Minutes after which the sweeper re-publishes a tenant deletion that has not finished (STUCK_DELETION_MINUTES)."

  validation {
    condition     = var.stuck_deletion_minutes >= 5 && floor(var.stuck_deletion_minutes) == var.stuck_deletion_minutes
    error_message = "stuck_deletion_minutes must be a whole number of at least 5."
  }
}

variable "deletion_initial_ops_per_second" {
  type        = number
  default     = 500
  description = "Initial Firestore write rate of the deletion cascade (DELETION_INITIAL_OPS_PER_SECOND); 500 follows Firestore's 500/50/5 ramp."

  validation {
    condition     = var.deletion_initial_ops_per_second >= 1
    error_message = "deletion_initial_ops_per_second must be at least 1."
  }
}

variable "deletion_max_ops_per_second" {
  type        = number
  default     = 10000
  description = "Ceiling of the deletion cascade's Firestore write rate (DELETION_MAX_OPS_PER_SECOND)."

  validation {
    condition     = var.deletion_max_ops_per_second >= var.deletion_initial_ops_per_second
    error_message = "deletion_max_ops_per_second must be at least deletion_initial_ops_per_second."
  }
}

variable "deletion_attempt_seconds" {
  type        = number
  default     = 420
  description = "Seconds one handle_deletion attempt runs before it publishes a continuation (DELETION_ATTEMPT_SECONDS); below the function's 540 s timeout, leaving room for the last step and the verification."

  validation {
    condition     = var.deletion_attempt_seconds >= 30 && var.deletion_attempt_seconds <= 480
    error_message = "deletion_attempt_seconds must be between 30 and 480 (the function times out at 540 s)."
  }
}

variable "technical_files_lifecycle_grace_days" {
  type        = number
  default     = 1
  description = "Days after an object's customTime (its deleteAfter deadline) at which the bucket lifecycle rule deletes it. A safety net behind the sweeper, which normally deletes first."

  validation {
    condition     = var.technical_files_lifecycle_grace_days >= 0 && var.technical_files_lifecycle_grace_days <= 30 && floor(var.technical_files_lifecycle_grace_days) == var.technical_files_lifecycle_grace_days
    error_message = "technical_files_lifecycle_grace_days must be a whole number between 0 and 30."
  }
}

variable "retention_sweep_schedule" {
  type        = string
  default     = "*/15 * * * *"
  description = "Cron schedule (unix-cron, UTC) of the Cloud Scheduler job that publishes to retention-sweep."

  validation {
    condition     = length(split(" ", trimspace(var.retention_sweep_schedule))) == 5
    error_message = "retention_sweep_schedule must be a five-field unix-cron expression."
  }
}

variable "deletion_max_delivery_attempts" {
  type        = number
  default     = 60
  description = "Deliveries of a deletion request before Pub/Sub moves it to deletion-requests-dead-letter; pushes refused for lack of a free instance (429) count too (docs/deletion.md, \"Bursts\")."

  validation {
    condition     = var.deletion_max_delivery_attempts >= 5 && var.deletion_max_delivery_attempts <= 100
    error_message = "deletion_max_delivery_attempts must be between 5 and 100 (Pub/Sub limits)."
  }
}

variable "function_overrides" {
  type = map(object({
    max_instance_count               = optional(number)
    min_instance_count               = optional(number)
    available_memory                 = optional(string)
    available_cpu                    = optional(string)
    max_instance_request_concurrency = optional(number)
    timeout_seconds                  = optional(number)
  }))
  default     = {}
  description = "Per-function scaling overrides keyed by entry point (a key of local.functions in functions.tf); unset fields keep the function's scaling there."

  validation {
    condition     = alltrue([for name in keys(var.function_overrides) : contains(keys(local.functions), name)])
    error_message = "function_overrides keys must be entry points: ${join(", ", keys(local.functions))}."
  }
}

variable "alert_notification_channels" {
  type        = list(string)
  default     = []
  description = "Cloud Monitoring notification channel IDs (projects/<p>/notificationChannels/<id>) the alert policies notify (monitoring.tf; what each alert means: docs/operations.md). Empty: incidents open in the console only."
}

variable "deletion_protection" {
  type        = bool
  default     = true
  description = "Protects the Firestore database from deletion (delete_protection_state). Set false only to tear down a test environment."
}

variable "enable_apis" {
  type        = bool
  default     = true
  description = "Enable the required Google APIs from Terraform. Set false where a platform team enables APIs for you."
}

variable "labels" {
  type        = map(string)
  default     = { app = "contact-sync" }
  description = "Labels added to every resource that supports them (provider default_labels)."
}
