"""The tenant's audit trail: what each change records, and its page tokens (docs/architecture.md, "Audit
trail"). An event names the action, its target (a device ID, changed settings keys or a request ID), the
kind of actor and the role that allowed it, and the portal session's random ID; never the person. The
repositories write an event in the same transaction (or batch) as the change it records.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.clock import Clock, timestamp
from shared.errors import BadRequest
from shared.ids import is_canonical_id, new_id
from shared.store.records import AuditEvent
from shared.store.schema import ActorKind, AuditAction

# The role that lets an operator call manage_tenants: Cloud Run's invoker role, granted by IAM to
# var.tenant_admin_invokers (terraform/functions.tf). Operators have no portal session.
OPERATOR_ROLE = "roles/run.invoker"
OPERATOR_SESSION = "operator"


@dataclass(frozen=True)
class Actor:
    """Who makes a change, without saying who they are: the kind of actor, the role that allowed the change
    and the portal session's random ID (operators: "operator")."""
    kind: ActorKind
    role: str
    session: str


OPERATOR = Actor(ActorKind.OPERATOR, OPERATOR_ROLE, OPERATOR_SESSION)


def settings_target(keys: Iterable[str]) -> str:
    """The target of a `settings.update`: the names of the changed keys, sorted, comma-separated."""
    return ",".join(sorted(set(keys)))


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ between `before` and `after` (one added or removed counts as changed)."""
    missing = object()
    return sorted(key for key in set(before) | set(after) if before.get(key, missing) != after.get(key, missing))


def changed_settings(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The settings keys whose effective values differ (a scope or photos left to their defaults is the same
    as one stored with the default values)."""
    from shared.store import schema

    def effective(settings: Mapping[str, Any]) -> dict[str, Any]:
        return {**settings, "scope": schema.effective_scope(settings), "photos": schema.photos_enabled(settings)}

    return changed_keys(effective(before), effective(after))


class AuditTrail:
    """Makes the events of changes: a random event ID, the time, `expiresAt` after the retention period."""

    def __init__(self, clock: Clock, retention_days: int, new_event_id: Callable[[], str] = new_id):
        self._clock = clock
        self._retention = timedelta(days=retention_days)
        self._new_event_id = new_event_id

    def now(self) -> datetime:
        return self._clock()

    def event(self, actor: Actor, action: AuditAction, target: str | None = None,
              at: datetime | None = None) -> AuditEvent:
        at = at or self._clock()
        return AuditEvent(self._new_event_id(), at, action, target, actor.kind, actor.role, actor.session,
                          at + self._retention)


def event_view(event: AuditEvent, session: str | None = None) -> dict[str, Any]:
    """An event as the operator API, the portal and its downloads show it; with `session`, whether the event
    was made in that (the viewer's) session."""
    view: dict[str, Any] = {"eventId": event.event_id, "at": timestamp(event.at), "action": event.action,
                            "target": event.target, "actorKind": event.actor_kind, "actorRole": event.actor_role,
                            "session": event.session}
    if session is not None:
        view["thisSession"] = event.session == session
    return view


# -- page tokens: a position (the last event's time and ID), base64url without padding ------------------
_TOKEN_TEXT = re.compile(r"(?P<micros>[0-9]{1,20})\.(?P<event>[0-9a-f-]{36})")


def audit_page_token(after: tuple[datetime, str]) -> str:
    at, event_id = after
    micros = round((at - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    return base64.urlsafe_b64encode(f"{micros}.{event_id}".encode("ascii")).rstrip(b"=").decode("ascii")


def after_audit_event(token: Any) -> tuple[datetime, str] | None:
    """The position a page token continues after; None for no token; 400 for anything not made by
    `audit_page_token` (the event ID inside is validated before a document path is built from it)."""
    if token in (None, ""):
        return None
    invalid = BadRequest("pageToken is not a token this API returned", slug="invalid-page-token")
    if not isinstance(token, str) or len(token) > 96 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise invalid
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise invalid from None
    match = _TOKEN_TEXT.fullmatch(decoded)
    if match is None or not is_canonical_id(match["event"]):
        raise invalid
    try:
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(match["micros"]))
    except OverflowError:
        raise invalid from None
    if audit_page_token((at, match["event"])) != token:
        raise invalid
    return at, match["event"]
