"""Entry points of the deployed functions (one source bundle). Re-exports only; logic lives in functions/.

functions-framework runs this module once per app it creates, inside that app's context: the error handler
registered here makes what Flask refuses before a function runs (unroutable paths, see
shared.http.framework_refusal) problem+json too, and Flask's own routing does not answer `//x` with a 308
to `/x` (empty path segments are refused, as shared.http.Router refuses them).
"""
import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from functions.handle_deletion.handler import handle_deletion
from functions.manage_tenants.handler import manage_tenants
from functions.register_device.handler import register_device
from functions.relay_contacts.handler import relay_contacts
from functions.sweep_retention.handler import sweep_retention
from functions.tenant_portal.handler import tenant_portal
from shared.http import framework_refusal

functions_framework.errorhandler(HTTPException)(framework_refusal)
if flask.has_app_context():  # functions-framework's create_app; a plain import (a benchmark, a test) has none
    flask.current_app.url_map.merge_slashes = False

__all__ = ["register_device", "relay_contacts", "manage_tenants", "handle_deletion", "sweep_retention", "tenant_portal"]
