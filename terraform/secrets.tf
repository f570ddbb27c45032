# Secret Manager: the secrets exist here, their values never do. Operators add versions with
# gcloud (see README), so no secret value is in variables, tfvars or the Terraform state.

resource "google_secret_manager_secret" "secret" {
  # Secret IDs keyed by the environment variable a function reads them into (secrets in local.functions).
  for_each = {
    ENTRA_CLIENT_SECRET = "entra-client-secret"
    CURSOR_KEY          = "cursor-key"
    RECEIPT_KEY         = "receipt-key"
  }

  secret_id = each.value
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
