"""Entry points of the deployed functions (one source bundle). Re-exports only; logic lives in functions/."""
from functions.contact_relay.handler import relay_contacts
from functions.deletion.handler import handle_deletion
from functions.device_registration.handler import register_device
from functions.retention.handler import sweep_retention
from functions.tenant_admin.handler import manage_tenants

__all__ = ["register_device", "relay_contacts", "manage_tenants", "handle_deletion", "sweep_retention"]
