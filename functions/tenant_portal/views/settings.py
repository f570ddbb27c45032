"""The tenant's settings: fields, default region, directory scope and photos."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Response

from functions.tenant_portal.visit import FUNCTION, Visit, actor_of, admin, tenant_of
from shared import logs
from shared.errors import BadRequest

if TYPE_CHECKING:
    from functions.tenant_portal.service import SettingsForm

log = logs.get_logger(__name__)

# Which field of the settings form an error is about (the summary links to it, the field shows it).
_ERROR_FIELDS = {"invalid-name": "name", "invalid-scope-group": "groups",
                 "duplicate-scope-group": "groups", "too-many-scope-groups": "groups"}


def page(visit: Visit, error: str | None = None, status: int = 200, form: SettingsForm | None = None) -> Response:
    """The settings page: the stored settings, or after a refused save what the admin posted (with the
    error at the top and beside its field), so nothing typed is lost."""
    from shared.store.schema import MAX_SCOPE_GROUPS, RELAY_FIELDS, SCOPE_FLAGS, effective_scope, photos_enabled

    tenant = tenant_of(visit)
    scope = effective_scope(tenant.settings)
    flags: dict[str, bool] = {flag: scope[flag] for flag in SCOPE_FLAGS}
    shown: dict[str, Any] = {"name": tenant.name, "fields": set(tenant.settings.get("fields", RELAY_FIELDS)),
             "region": tenant.settings.get("defaultRegion") or "", "groups": "\n".join(scope["groups"]),
             "flags": flags, "photos": photos_enabled(tenant.settings)}
    if form is not None:
        shown.update(name=form.name, fields=set(form.fields), region=form.region)
        if form.groups is not None:
            shown["groups"] = form.groups
        flags.update({flag: value == "true" for flag, value in form.flags.items()})
        if form.photos is not None:
            shown["photos"] = form.photos == "true"
    saved = visit.request.args.get("saved")
    return visit.html("settings.html", status, nav="settings", tenant=tenant, relay_fields=RELAY_FIELDS,
                      shown=shown, scope_flags=SCOPE_FLAGS, max_groups=MAX_SCOPE_GROUPS, regions=_regions(),
                      saved=saved in ("1", "scope"), full_sync=saved == "scope", error=error,
                      error_field=_ERROR_FIELDS.get(error or ""))


def save(visit: Visit) -> Response:
    from functions.tenant_portal.service import SettingsForm
    from shared.store.schema import SCOPE_FLAGS

    tenant = tenant_of(visit)
    flags = {flag: value for flag in SCOPE_FLAGS if (value := visit.last(flag)) is not None}
    form = SettingsForm(name=visit.value("name"), fields=visit.form.get("fields", []),
                        region=visit.value("defaultRegion"), groups=visit.last("groups"), flags=flags,
                        photos=visit.last("photos"))
    try:
        saved = visit.portal.service.update_settings(tenant, form, actor_of(admin(visit)))
    except BadRequest as error:
        return page(visit, error=error.slug, status=400, form=form)
    log.info("settings saved", function=FUNCTION, tenantId=tenant.tenant_id, full=saved.scope_changed)
    return visit.redirect("/settings", saved="scope" if saved.scope_changed else "1")


def _regions() -> list[str]:
    from phonenumbers import SUPPORTED_REGIONS

    return sorted(SUPPORTED_REGIONS)
