output "function_urls" {
  description = "HTTPS URL of each function, keyed by entry point. handle_deletion and sweep_retention accept only internal traffic."
  value       = { for name, function in google_cloudfunctions2_function.function : name => function.service_config[0].uri }
}

output "register_device_url" {
  description = "URL the mobile app uses for device registration and diagnostics uploads."
  value       = google_cloudfunctions2_function.function["register_device"].service_config[0].uri
}

output "relay_contacts_url" {
  description = "URL the mobile app uses to sync contacts."
  value       = google_cloudfunctions2_function.function["relay_contacts"].service_config[0].uri
}

output "manage_tenants_url" {
  description = "URL of the administration API (call with an identity token of a principal in tenant_admin_invokers)."
  value       = google_cloudfunctions2_function.function["manage_tenants"].service_config[0].uri
}

output "tenant_portal_url" {
  description = "URL the tenant portal's function answers at (serve it at portal_base_url, e.g. through a custom domain mapping)."
  value       = google_cloudfunctions2_function.function["tenant_portal"].service_config[0].uri
}

output "topics" {
  description = "Pub/Sub topic names."
  value       = { for key, topic in google_pubsub_topic.topic : key => topic.name }
}

output "deletion_subscription" {
  description = "Push subscription that delivers deletion requests to handle_deletion (with dead-letter policy)."
  value       = google_pubsub_subscription.handle_deletion.name
}

output "dead_letter_subscription" {
  description = "Pull subscription holding deletion requests that exhausted their retries, for inspection and re-drive."
  value       = google_pubsub_subscription.deletion_requests_dead_letter.name
}

output "firestore_database" {
  description = "Firestore database resource name."
  value       = google_firestore_database.main.id
}

output "technical_files_bucket" {
  description = "Bucket for technical files (TECHNICAL_FILES_BUCKET)."
  value       = google_storage_bucket.bucket["technical_files"].name
}

output "secret_ids" {
  description = "Secret Manager secret IDs to add versions to, keyed by environment variable."
  value       = { for key, secret in google_secret_manager_secret.secret : key => secret.secret_id }
}

output "service_accounts" {
  description = "Service account e-mail of each function and of the build and delivery identities."
  value = merge(
    { for name, account in google_service_account.function : name => account.email },
    {
      build         = google_service_account.build.email
      deletion_push = google_service_account.delivery["handle_deletion"].email
      sweep_trigger = google_service_account.delivery["sweep_retention"].email
    },
  )
}

output "source_bucket" {
  description = "Bucket holding the functions' source bundles."
  value       = google_storage_bucket.bucket["function_sources"].name
}

output "source_object" {
  description = "Object name of the deployed source bundle (contains its SHA-256)."
  value       = google_storage_bucket_object.source.name
}
