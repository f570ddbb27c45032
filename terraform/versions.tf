terraform {
  # 1.9 is the first release whose variable validations may refer to other variables
  # (the EU-only region check reads var.allow_non_eu_locations).
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0.0, < 7.0.0"
    }
    archive = {
      # 2.5.0 added glob patterns to archive_file excludes.
      source  = "hashicorp/archive"
      version = ">= 2.5.0, < 3.0.0"
    }
  }
}

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = var.labels
}
