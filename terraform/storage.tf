# Cloud Storage: the technical files bucket (customer data, erased for real) and the source bundle.

locals {
  # The technical files bucket (customer data, erased for real: TECHNICAL_FILES_BUCKET) and the bucket of
  # the source bundles.
  bucket_names = {
    technical_files  = coalesce(var.technical_files_bucket_name, "${var.project_id}-technical-files")
    function_sources = coalesce(var.source_bucket_name, "${var.project_id}-function-sources")
  }
}

resource "google_storage_bucket" "bucket" {
  # checkov:skip=CKV_GCP_62: usage logs would copy object names (tenant and device IDs) into yet another bucket, and the source bucket holds no customer data; access is audited with Cloud Audit Logs instead (see README)
  # checkov:skip=CKV_GCP_78: versioning is off on purpose: a noncurrent technical file would keep erased customer data alive, and every source bundle has a unique content-hash name
  # Bucket => days after customTime at which the lifecycle rule deletes an object. Only technical files have
  # the rule, the safety net behind the sweeper (every object carries customTime = deleteAfter).
  for_each = {
    technical_files  = [var.technical_files_lifecycle_grace_days]
    function_sources = []
  }

  name          = local.bucket_names[each.key]
  project       = var.project_id
  location      = var.storage_location
  storage_class = "STANDARD"
  force_destroy = false

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = false
  }

  # Soft delete would keep deleted objects restorable for 7+ days; a deletion must be final.
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  dynamic "lifecycle_rule" {
    for_each = each.value
    content {
      condition {
        days_since_custom_time = lifecycle_rule.value
        # The provider leaves a 0 out of the request unless told to send it, and the rule is then not
        # the one written (terraform-provider-google #17990: a condition that lost its 0 deleted every
        # object). technical_files_lifecycle_grace_days may be 0.
        send_days_since_custom_time_if_zero = true
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.required]
}

# One source bundle for every function: the repository root without tests, infrastructure,
# the local stack (and its state), benchmarks, docs, virtualenvs, caches and VCS data.
data "archive_file" "source" {
  type             = "zip"
  source_dir       = local.source_dir
  output_path      = "${path.module}/.build/source-bundle.zip"
  output_file_mode = "0644"

  excludes = [
    "tests", "tests/**",
    "terraform", "terraform/**",
    "local", "local/**",
    "benchmarks", "benchmarks/**",
    ".venv*", ".venv*/**",
    ".git", ".git/**",
    ".github", ".github/**",
    ".ci", ".ci/**",
    ".local-stack", ".local-stack/**",
    "docs", "docs/**",
    ".env*",
    ".pytest_cache", ".pytest_cache/**",
    ".hypothesis", ".hypothesis/**",
    ".mypy_cache", ".mypy_cache/**",
    ".ruff_cache", ".ruff_cache/**",
    "**/__pycache__", "**/__pycache__/**",
    "**/*.pyc",
    "requirements-dev.txt",
    "requirements-checkov.txt",
    "Makefile",
  ]
}

resource "google_storage_bucket_object" "source" {
  # The content hash in the name makes every code change a new object, and so a redeploy.
  name         = "contact-sync/source-${data.archive_file.source.output_sha256}.zip"
  bucket       = google_storage_bucket.bucket["function_sources"].name
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}
