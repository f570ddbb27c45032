# One runtime identity per function, plus identities for building and for event delivery.
# None of them gets a role at creation; iam.tf grants each one only what its job needs.

locals {
  # Functions whose events are delivered by Pub/Sub or Eventarc, with the identity they deliver as.
  delivery_identities = { for name, fn in local.function_config : name => fn.delivery if fn.delivery != null }
}

# fn-register-device, fn-relay-contacts, fn-manage-tenants, fn-handle-deletion, fn-sweep-retention.
resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "fn-${replace(each.key, "_", "-")}"
  display_name = "${each.key} function"
  description  = each.value.account_description
}

# push-handle-deletion (OIDC identity of the handle-deletion push subscription) and
# trigger-sweep-retention (identity of the Eventarc trigger on retention-sweep).
resource "google_service_account" "delivery" {
  for_each = local.delivery_identities

  project      = var.project_id
  account_id   = each.value.account_id
  display_name = each.value.display_name
  description  = each.value.description
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "fn-build"
  display_name = "Cloud Functions builder"
  description  = "Cloud Build identity for the functions: reads the source bundle, pushes images to the functions repository, writes build logs."
}
