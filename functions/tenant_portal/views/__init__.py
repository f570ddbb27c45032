"""The portal's pages, one module per area; `functions/tenant_portal/handler.py` routes to them."""
