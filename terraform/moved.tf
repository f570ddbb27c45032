# State moves from the layout with one resource block per function (before the function map), so that
# applying this version to an existing deployment renames addresses instead of destroying and re-creating
# service accounts, secrets, topics, buckets, indexes, functions and grants. Harmless on a fresh project.
#
# The operator invoker grants were keyed by member and are now keyed "manage_tenants <member>": moved
# cannot rename for_each keys it does not know, so the old entries are only forgotten (destroy = false)
# and the new resource adds the same members again (adding an existing IAM member changes nothing).
# Apply the upgrade with tenant_admin_invokers unchanged: a member dropped in that same apply would keep
# its (forgotten) grant.
removed {
  from = google_cloud_run_v2_service_iam_member.manage_tenants_invokers

  lifecycle {
    destroy = false
  }
}

moved {
  from = google_cloudfunctions2_function.register_device
  to   = google_cloudfunctions2_function.function["register_device"]
}

moved {
  from = google_cloudfunctions2_function.relay_contacts
  to   = google_cloudfunctions2_function.function["relay_contacts"]
}

moved {
  from = google_cloudfunctions2_function.manage_tenants
  to   = google_cloudfunctions2_function.function["manage_tenants"]
}

moved {
  from = google_cloudfunctions2_function.handle_deletion
  to   = google_cloudfunctions2_function.function["handle_deletion"]
}

moved {
  from = google_cloudfunctions2_function.sweep_retention
  to   = google_cloudfunctions2_function.function["sweep_retention"]
}

moved {
  from = google_service_account.register_device
  to   = google_service_account.function["register_device"]
}

moved {
  from = google_service_account.relay_contacts
  to   = google_service_account.function["relay_contacts"]
}

moved {
  from = google_service_account.manage_tenants
  to   = google_service_account.function["manage_tenants"]
}

moved {
  from = google_service_account.handle_deletion
  to   = google_service_account.function["handle_deletion"]
}

moved {
  from = google_service_account.sweep_retention
  to   = google_service_account.function["sweep_retention"]
}

moved {
  from = google_service_account.deletion_push
  to   = google_service_account.delivery["handle_deletion"]
}

moved {
  from = google_service_account.sweep_trigger
  to   = google_service_account.delivery["sweep_retention"]
}

moved {
  from = google_project_iam_member.firestore_user_register_device
  to   = google_project_iam_member.firestore["register_device"]
}

moved {
  from = google_project_iam_member.firestore_relay_contacts
  to   = google_project_iam_member.firestore["relay_contacts"]
}

moved {
  from = google_project_iam_member.firestore_user_manage_tenants
  to   = google_project_iam_member.firestore["manage_tenants"]
}

moved {
  from = google_project_iam_member.firestore_user_handle_deletion
  to   = google_project_iam_member.firestore["handle_deletion"]
}

moved {
  from = google_project_iam_member.firestore_sweep_retention
  to   = google_project_iam_member.firestore["sweep_retention"]
}

moved {
  from = google_storage_bucket_iam_member.technical_files_creator_register_device
  to   = google_storage_bucket_iam_member.technical_files["register_device"]
}

moved {
  from = google_storage_bucket_iam_member.technical_files_creator_manage_tenants
  to   = google_storage_bucket_iam_member.technical_files["manage_tenants"]
}

moved {
  from = google_storage_bucket_iam_member.technical_files_eraser_handle_deletion
  to   = google_storage_bucket_iam_member.technical_files["handle_deletion"]
}

moved {
  from = google_storage_bucket_iam_member.technical_files_eraser_sweep_retention
  to   = google_storage_bucket_iam_member.technical_files["sweep_retention"]
}

moved {
  from = google_pubsub_topic_iam_member.deletion_publisher_register_device
  to   = google_pubsub_topic_iam_member.deletion_publisher["register_device"]
}

moved {
  from = google_pubsub_topic_iam_member.deletion_publisher_manage_tenants
  to   = google_pubsub_topic_iam_member.deletion_publisher["manage_tenants"]
}

moved {
  from = google_pubsub_topic_iam_member.deletion_publisher_sweep_retention
  to   = google_pubsub_topic_iam_member.deletion_publisher["sweep_retention"]
}

moved {
  from = google_secret_manager_secret_iam_member.entra_client_secret_relay_contacts
  to   = google_secret_manager_secret_iam_member.function_secret["relay_contacts ENTRA_CLIENT_SECRET"]
}

moved {
  from = google_secret_manager_secret_iam_member.cursor_key_relay_contacts
  to   = google_secret_manager_secret_iam_member.function_secret["relay_contacts CURSOR_KEY"]
}

moved {
  from = google_secret_manager_secret_iam_member.receipt_key_register_device
  to   = google_secret_manager_secret_iam_member.function_secret["register_device RECEIPT_KEY"]
}

moved {
  from = google_secret_manager_secret_iam_member.receipt_key_manage_tenants
  to   = google_secret_manager_secret_iam_member.function_secret["manage_tenants RECEIPT_KEY"]
}

moved {
  from = google_secret_manager_secret_iam_member.receipt_key_handle_deletion
  to   = google_secret_manager_secret_iam_member.function_secret["handle_deletion RECEIPT_KEY"]
}

moved {
  from = google_secret_manager_secret_iam_member.receipt_key_sweep_retention
  to   = google_secret_manager_secret_iam_member.function_secret["sweep_retention RECEIPT_KEY"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.register_device_public
  to   = google_cloud_run_v2_service_iam_member.invoker["register_device allUsers"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.relay_contacts_public
  to   = google_cloud_run_v2_service_iam_member.invoker["relay_contacts allUsers"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.handle_deletion_invoker
  to   = google_cloud_run_v2_service_iam_member.invoker["handle_deletion delivery"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.sweep_retention_invoker
  to   = google_cloud_run_v2_service_iam_member.invoker["sweep_retention delivery"]
}

moved {
  from = google_service_account_iam_member.deletion_push_token_creator
  to   = google_service_account_iam_member.delivery_token_creator["handle_deletion"]
}

moved {
  from = google_service_account_iam_member.sweep_trigger_token_creator
  to   = google_service_account_iam_member.delivery_token_creator["sweep_retention"]
}

moved {
  from = google_secret_manager_secret.entra_client_secret
  to   = google_secret_manager_secret.secret["ENTRA_CLIENT_SECRET"]
}

moved {
  from = google_secret_manager_secret.cursor_key
  to   = google_secret_manager_secret.secret["CURSOR_KEY"]
}

moved {
  from = google_secret_manager_secret.receipt_key
  to   = google_secret_manager_secret.secret["RECEIPT_KEY"]
}

moved {
  from = google_pubsub_topic.deletion_requests
  to   = google_pubsub_topic.topic["deletion_requests"]
}

moved {
  from = google_pubsub_topic.deletion_requests_dead_letter
  to   = google_pubsub_topic.topic["deletion_requests_dead_letter"]
}

moved {
  from = google_pubsub_topic.retention_sweep
  to   = google_pubsub_topic.topic["retention_sweep"]
}

moved {
  from = google_storage_bucket.technical_files
  to   = google_storage_bucket.bucket["technical_files"]
}

moved {
  from = google_storage_bucket.function_sources
  to   = google_storage_bucket.bucket["function_sources"]
}

moved {
  from = google_firestore_field.files_delete_after
  to   = google_firestore_field.collection_group_index["files"]
}

moved {
  from = google_firestore_field.devices_last_seen_at
  to   = google_firestore_field.collection_group_index["devices"]
}
