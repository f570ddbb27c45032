# Secret Manager: the secrets exist here, their values never do. Operators add versions with
# gcloud (see README), so no secret value is in variables, tfvars or the Terraform state.

resource "google_secret_manager_secret" "secret" {
  # Keyed by the environment variable a function reads the secret into (secrets in local.functions);
  # the secret ID is that name in kebab case: entra-client-secret, cursor-key, receipt-key, portal-session-key.
  for_each = toset(["ENTRA_CLIENT_SECRET", "CURSOR_KEY", "RECEIPT_KEY", "PORTAL_SESSION_KEY"])

  secret_id = lower(replace(each.key, "_", "-"))
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
