# Secret Manager: the secrets exist here, their values never do. Operators add versions with
# gcloud (see README), so no secret value is in variables, tfvars or the Terraform state.

resource "google_secret_manager_secret" "entra_client_secret" {
  secret_id = "entra-client-secret"
  project   = var.project_id

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_secret_manager_secret" "cursor_key" {
  secret_id = "cursor-key"
  project   = var.project_id

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_secret_manager_secret" "receipt_key" {
  secret_id = "receipt-key"
  project   = var.project_id

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.required]
}
