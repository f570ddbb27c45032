# One runtime identity per function, plus identities for building and for event delivery.
# None of them gets a role at creation; iam.tf grants each one only what its job needs.

resource "google_service_account" "register_device" {
  project      = var.project_id
  account_id   = "fn-register-device"
  display_name = "register_device function"
  description  = "Runtime identity of register_device: devices, diagnostics uploads, device.delete requests."
}

resource "google_service_account" "relay_contacts" {
  project      = var.project_id
  account_id   = "fn-relay-contacts"
  display_name = "relay_contacts function"
  description  = "Runtime identity of relay_contacts: reads tenants and devices, updates lastSeenAt, nothing else."
}

resource "google_service_account" "manage_tenants" {
  project      = var.project_id
  account_id   = "fn-manage-tenants"
  display_name = "manage_tenants function"
  description  = "Runtime identity of manage_tenants: tenant administration, technical files, deletion requests."
}

resource "google_service_account" "handle_deletion" {
  project      = var.project_id
  account_id   = "fn-handle-deletion"
  display_name = "handle_deletion function"
  description  = "Runtime identity of handle_deletion: the only identity that deletes Firestore data and technical files."
}

resource "google_service_account" "sweep_retention" {
  project      = var.project_id
  account_id   = "fn-sweep-retention"
  display_name = "sweep_retention function"
  description  = "Runtime identity of sweep_retention: reads deadlines, writes pending receipts, publishes deletion requests, removes orphaned objects."
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "fn-build"
  display_name = "Cloud Functions builder"
  description  = "Cloud Build identity for the functions: reads the source bundle, pushes images to the functions repository, writes build logs."
}

resource "google_service_account" "deletion_push" {
  project      = var.project_id
  account_id   = "push-handle-deletion"
  display_name = "Pub/Sub push to handle_deletion"
  description  = "Identity in the OIDC token of the handle-deletion push subscription; may only invoke handle_deletion."
}

resource "google_service_account" "sweep_trigger" {
  project      = var.project_id
  account_id   = "trigger-sweep-retention"
  display_name = "Eventarc trigger of sweep_retention"
  description  = "Identity of the Eventarc trigger on retention-sweep; may only invoke sweep_retention."
}
