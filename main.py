"""Entry points of the deployed functions (one source bundle). Re-exports only; logic lives in functions/."""
from functions.tenant_admin.handler import manage_tenants

__all__ = ["manage_tenants"]
