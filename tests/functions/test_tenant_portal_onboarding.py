"""Onboarding through admin consent (functions/tenant_portal/onboarding.py) against the fake Entra ID over
HTTPS (its consent page, MSAL client-credentials tokens) and the Firestore emulator."""
from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from functions.tenant_portal.onboarding import OnboardingOutcome, OnboardingService, PendingOnboarding
from tests import support
from tests.conftest import make_client

NAME = "Contoso Onboarding AG"


class Clock:
    """UTC now, movable forward."""

    def __init__(self):
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def tenant(fake):
    """A tenant this process has never seen, without the app's consent (as a new customer is)."""
    tenant_id = str(uuid.uuid4())
    fake.consent(tenant_id, "not_consented")
    return tenant_id


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def service(emulators, clock):
    return make_service(clock)


def portal_url() -> str:
    """PORTAL_BASE_URL of the stack: its /onboard/callback is a redirect URI registered for the fake's app."""
    return support.settings().portal_base_url


def make_service(clock, retry_delays=(0.2, 0.2)) -> OnboardingService:
    from shared import wiring

    config = support.settings()
    return OnboardingService(support.store().tenants, wiring.graph_access_check(config), clock,
                             authority_host=config.entra_authority_host,
                             client_id=config.entra_client_id, portal_base_url=portal_url(), retry_delays=retry_delays)


def consent(fake, url: str, decision: str = "accept") -> dict[str, str]:
    """The admin answers the consent page; the callback's query as the portal receives it."""
    location = fake.answer_consent_page(url, decision)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{portal_url()}/onboard/callback"
    return dict(parse_qsl(parts.query, keep_blank_values=True))


def start(service, tenant_id: str, name: str = NAME):
    step = service.begin(tenant_id, name, admin=True)
    assert step.outcome == OnboardingOutcome.REDIRECT_TO_CONSENT
    return step


def stored_tenant(tenant_id: str):
    snapshot = support.db().document(f"tenants/{tenant_id}").get()
    return snapshot.to_dict() if snapshot.exists else None


def test_consent_url_has_the_contracts_parameters(service, tenant, stack):
    step = start(service, tenant)
    url = urlsplit(step.consent_url)
    assert f"{url.scheme}://{url.netloc}" == stack.urls["entra"]
    assert url.path == f"/{tenant}/v2.0/adminconsent"
    assert parse_qsl(url.query) == [("client_id", support.settings().entra_client_id),
                                    ("scope", "https://graph.microsoft.com/.default"),
                                    ("redirect_uri", f"{portal_url()}/onboard/callback"),
                                    ("state", step.pending.state)]
    assert len(step.pending.state) >= 32 and step.pending.tenant_id == tenant and step.pending.name == NAME
    assert start(service, tenant).pending.state != step.pending.state  # a fresh state each time
    assert stored_tenant(tenant) is None  # beginning stores nothing


def test_successful_onboarding_creates_the_tenant_once(service, tenant, fake, log_lines):
    step = start(service, tenant, f"  {NAME} ")
    query = consent(fake, step.consent_url)
    assert query["admin_consent"] == "True" and query["tenant"] == tenant
    done = service.complete(query, step.pending, tenant, admin=True)
    assert done.outcome == OnboardingOutcome.ONBOARDED and done.outcome.signed_in_overview
    assert done.tenant.tenant_id == tenant and done.tenant.name == NAME
    stored = stored_tenant(tenant)
    assert set(stored) == {"name", "status", "createdAt", "settings"}
    assert stored["name"] == NAME and stored["status"] == "active"
    assert stored["settings"] == {"fields": ["displayName", "givenName", "surname", "jobTitle", "department",
                                             "companyName", "mail", "mobilePhone", "businessPhones",
                                             "officeLocation"]}
    # Replaying the callback (same query, same cookie) changes nothing.
    before = support.world()
    again = service.complete(query, step.pending, tenant, admin=True)
    assert again.outcome == OnboardingOutcome.ALREADY_ONBOARDED and support.world() == before
    # Operators see it at once.
    listed = make_client("manage_tenants").get("/tenants?pageSize=1000").get_json()["tenants"]
    assert {"tenantId": tenant, "name": NAME, "status": "active"}.items() <= \
        next(t for t in listed if t["tenantId"] == tenant).items()
    # No state, name or token in any log line; the outcome and tenant ID are there.
    text = "\n".join(log_lines)
    assert step.pending.state not in text and NAME not in text and "eyJ" not in text
    assert any(json.loads(line).get("reason") == "onboarded" and json.loads(line).get("tenantId") == tenant
               for line in log_lines)


def test_declined_consent_creates_nothing(service, tenant, fake):
    step = start(service, tenant)
    query = consent(fake, step.consent_url, "decline")
    assert query["admin_consent"] == "True" and query["error"] == "access_denied"
    done = service.complete(query, step.pending, tenant, admin=True)
    assert done.outcome == OnboardingOutcome.DECLINED and done.entra_error == "access_denied"
    assert stored_tenant(tenant) is None


def test_other_entra_errors_are_consent_failed(service, tenant):
    step = start(service, tenant)
    done = service.complete({"admin_consent": "True", "error": "consent_required",
                             "error_description": "AADSTS65004: x", "state": step.pending.state},
                            step.pending, tenant, admin=True)
    assert done.outcome == OnboardingOutcome.CONSENT_FAILED and done.entra_error == "consent_required"
    # Error text from outside is never passed on as a code.
    odd = service.complete({"error": "<script>x</script>", "state": step.pending.state}, step.pending, tenant,
                           admin=True)
    assert odd.outcome == OnboardingOutcome.CONSENT_FAILED and odd.entra_error == "unrecognised"
    assert stored_tenant(tenant) is None


def test_consent_in_another_tenant_is_refused(service, tenant, fake):
    other = str(uuid.uuid4())
    fake.consent(other, "not_consented")
    step = start(service, tenant)
    # The admin edits the consent URL (or signs in to another organisation at Entra ID).
    query = consent(fake, step.consent_url.replace(f"/{tenant}/", f"/{other}/"))
    assert query["tenant"] == other and query["state"] == step.pending.state
    done = service.complete(query, step.pending, tenant, admin=True)
    assert done.outcome == OnboardingOutcome.WRONG_TENANT
    assert stored_tenant(tenant) is None and stored_tenant(other) is None


def test_replayed_or_foreign_state_is_refused(service, tenant, fake):
    step = start(service, tenant)
    query = consent(fake, step.consent_url)
    # The cookie is cleared on first use: a replay arrives without it.
    assert service.complete(query, None, tenant, admin=True).outcome == OnboardingOutcome.NO_SESSION
    # Another browser's onboarding (its own state) does not accept this answer.
    foreign = start(service, tenant).pending
    assert service.complete(query, foreign, tenant, admin=True).outcome == OnboardingOutcome.STATE_MISMATCH
    # A state started in another session (another tenant signed in) does not either.
    moved = PendingOnboarding(step.pending.state, str(uuid.uuid4()), NAME, step.pending.issued_at)
    assert service.complete(query, moved, tenant, admin=True).outcome == OnboardingOutcome.STATE_MISMATCH
    without_state = {k: v for k, v in query.items() if k != "state"}
    assert service.complete(without_state, step.pending, tenant, admin=True).outcome == OnboardingOutcome.STATE_MISMATCH
    assert stored_tenant(tenant) is None


def test_expired_state_is_refused(service, tenant, fake, clock):
    step = start(service, tenant)
    query = consent(fake, step.consent_url)
    clock.offset = timedelta(minutes=10, seconds=1)
    assert service.complete(query, step.pending, tenant, admin=True).outcome == OnboardingOutcome.STATE_EXPIRED
    clock.offset = -timedelta(minutes=5)  # issued "in the future": a forged or broken cookie
    assert service.complete(query, step.pending, tenant, admin=True).outcome == OnboardingOutcome.STATE_EXPIRED
    assert stored_tenant(tenant) is None


def test_just_within_ten_minutes_is_accepted(service, tenant, fake, clock):
    step = start(service, tenant)
    query = consent(fake, step.consent_url)
    clock.offset = timedelta(minutes=9, seconds=50)
    assert service.complete(query, step.pending, tenant, admin=True).outcome == OnboardingOutcome.ONBOARDED


def test_no_session_is_refused(service, tenant, fake):
    step = start(service, tenant)
    query = consent(fake, step.consent_url)
    assert service.complete(query, step.pending, None, admin=True).outcome == OnboardingOutcome.NO_SESSION
    assert service.complete(query, None, None, admin=True).outcome == OnboardingOutcome.NO_SESSION
    assert service.status(None, admin=True).outcome == OnboardingOutcome.NO_SESSION
    assert service.begin(None, NAME, admin=True).outcome == OnboardingOutcome.NO_SESSION
    assert service.begin("not-a-guid", NAME, admin=True).outcome == OnboardingOutcome.NO_SESSION
    assert stored_tenant(tenant) is None


def test_missing_user_read_all_is_refused(service, tenant, fake, clock):
    # The registration lacked User.Read.All when the admin consented: the token carries only what was granted.
    fake.consent(tenant, roles=["GroupMember.Read.All"])
    step = start(service, tenant)
    query = consent(fake, step.consent_url)
    done = service.complete(query, step.pending, tenant, admin=True)
    # Graph refuses (403) right after consent: it may still replicate, so the portal waits first ...
    assert done.outcome == OnboardingOutcome.AWAITING_CONSENT and done.waiting.tenant_id == tenant
    assert service.check(done.waiting, tenant, admin=True).outcome == OnboardingOutcome.AWAITING_CONSENT
    clock.offset = timedelta(minutes=5, seconds=1)  # ... for 5 minutes, then says why
    after = service.check(done.waiting, tenant, admin=True)
    assert after.outcome == OnboardingOutcome.MISSING_PERMISSION and after.waiting == done.waiting
    assert stored_tenant(tenant) is None


def test_callback_without_real_consent_is_refused(service, tenant, clock):
    # A forged success answer (right state and tenant) while the tenant never consented: Entra ID refuses
    # the token (AADSTS700016), so nothing is created: the portal waits for 5 minutes, then says so.
    step = start(service, tenant)
    done = service.complete({"admin_consent": "True", "tenant": tenant, "scope": "x", "state": step.pending.state},
                            step.pending, tenant, admin=True)
    assert done.outcome == OnboardingOutcome.AWAITING_CONSENT
    assert done.entra_error == "entra-unauthorized_client"
    clock.offset = timedelta(minutes=6)
    after = service.check(done.waiting, tenant, admin=True)
    assert after.outcome == OnboardingOutcome.CONSENT_NOT_FOUND and after.entra_error == "entra-unauthorized_client"
    assert stored_tenant(tenant) is None


def test_consent_that_replicates_after_the_callback_is_picked_up_by_the_waiting_page(emulators, tenant, fake,
                                                                                      clock):
    """Consent replicates in seconds to minutes: longer than the callback's short retry, the waiting page's
    checks onboard the tenant once Graph confirms; a wrong session or a check after a day is refused."""
    fake.configure(tenant=tenant, consent_replication_seconds=1.5)
    service = make_service(clock, retry_delays=(0.1,))
    step = start(service, tenant)
    done = service.complete(consent(fake, step.consent_url), step.pending, tenant, admin=True)
    assert done.outcome == OnboardingOutcome.AWAITING_CONSENT and stored_tenant(tenant) is None
    assert service.check(done.waiting, str(uuid.uuid4()), admin=True).outcome == OnboardingOutcome.STATE_MISMATCH
    assert service.check(done.waiting, tenant, admin=False).outcome == OnboardingOutcome.NOT_ADMIN
    assert service.check(None, tenant, admin=True).outcome == OnboardingOutcome.NO_SESSION
    deadline = time.monotonic() + 10
    while (checked := service.check(done.waiting, tenant, admin=True)).outcome == OnboardingOutcome.AWAITING_CONSENT:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert checked.outcome == OnboardingOutcome.ONBOARDED and stored_tenant(tenant)["name"] == NAME
    assert service.check(done.waiting, tenant, admin=True).outcome == OnboardingOutcome.ALREADY_ONBOARDED


def test_the_onboarding_stays_recoverable_after_the_wait(emulators, tenant, fake, clock):
    """The administrator comes back an hour later, when the consent has replicated: "check again" onboards."""
    fake.configure(tenant=tenant, consent_replication_seconds=3600)
    service = make_service(clock, retry_delays=())
    step = start(service, tenant)
    done = service.complete(consent(fake, step.consent_url), step.pending, tenant, admin=True)
    clock.offset = timedelta(hours=1)
    assert service.check(done.waiting, tenant, admin=True).outcome == OnboardingOutcome.CONSENT_NOT_FOUND
    fake.configure(tenant=tenant, consent_replication_seconds=0)
    assert service.check(done.waiting, tenant, admin=True).outcome == OnboardingOutcome.ONBOARDED
    clock.offset = timedelta(days=1, minutes=1)  # a waiting cookie older than a day is not honoured
    assert service.check(done.waiting, tenant, admin=True).outcome == OnboardingOutcome.STATE_MISMATCH


def test_malformed_callback_is_refused(service, tenant):
    step = start(service, tenant)
    for query in ({"tenant": tenant, "state": step.pending.state},  # no admin_consent=True
                  {"admin_consent": "True", "state": step.pending.state},  # no tenant
                  {"admin_consent": "True", "tenant": "../x", "state": step.pending.state}):
        assert service.complete(query, step.pending, tenant, admin=True).outcome == OnboardingOutcome.MALFORMED_CALLBACK
    assert stored_tenant(tenant) is None


def test_consent_replication_delay_is_covered_by_the_retry(emulators, tenant, fake, clock):
    fake.configure(tenant=tenant, consent_replication_seconds=1.0)
    service = make_service(clock, retry_delays=(0.4, 0.4, 0.4, 0.4))
    step = start(service, tenant)
    query = consent(fake, step.consent_url)
    before = fake.stats()["per_tenant"].get(tenant, {}).get("token_errors", 0)
    started = time.monotonic()
    assert service.complete(query, step.pending, tenant, admin=True).outcome == OnboardingOutcome.ONBOARDED
    assert time.monotonic() - started >= 0.8
    assert fake.stats()["per_tenant"][tenant]["token_errors"] > before  # refused at first, then granted


def test_already_onboarded_goes_to_the_overview(service, stack, fake):
    tenant_id = str(uuid.uuid4())
    assert make_client("manage_tenants").post("/tenants", json={"tenantId": tenant_id, "name": "Fabrikam"}
                                              ).status_code == 201
    assert service.status(tenant_id, admin=True).outcome == OnboardingOutcome.ALREADY_ONBOARDED
    begun = service.begin(tenant_id, "Another name", admin=True)
    assert begun.outcome == OnboardingOutcome.ALREADY_ONBOARDED and begun.consent_url is None
    assert begun.tenant.name == "Fabrikam"


def test_tenant_being_deleted_is_told_to_wait(service, fake):
    tenant_id = str(uuid.uuid4())
    admin = make_client("manage_tenants")
    admin.post("/tenants", json={"tenantId": tenant_id, "name": "Leaving GmbH"})
    assert admin.delete(f"/tenants/{tenant_id}").status_code == 202
    assert service.status(tenant_id, admin=True).outcome == OnboardingOutcome.TENANT_DELETING
    assert service.begin(tenant_id, NAME, admin=True).outcome == OnboardingOutcome.TENANT_DELETING
    # A consent answer arriving while the deletion runs changes nothing either.
    pending = PendingOnboarding("s" * 43, tenant_id, NAME, datetime.now(UTC))
    before = support.world()
    done = service.complete({"admin_consent": "True", "tenant": tenant_id, "state": "s" * 43}, pending, tenant_id,
                            admin=True)
    assert done.outcome == OnboardingOutcome.TENANT_DELETING and support.world() == before


@pytest.mark.parametrize("name", ["", "   ", "x" * 257, "Bad\x00Name", None, 42])
def test_invalid_names_are_refused_before_consent(service, tenant, name):
    step = service.begin(tenant, name, admin=True)
    assert step.outcome == OnboardingOutcome.NAME_INVALID and step.detail and step.consent_url is None


def test_pending_onboarding_round_trips_through_the_cookie(tenant):
    pending = PendingOnboarding("abc", tenant, NAME, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert PendingOnboarding.from_cookie(json.loads(json.dumps(pending.to_cookie()))) == pending
    for broken in (None, [], {}, {**pending.to_cookie(), "tid": "x"}, {**pending.to_cookie(), "iat": "1"},
                   {**pending.to_cookie(), "state": ""}, {**pending.to_cookie(), "iat": True},
                   {**pending.to_cookie(), "iat": 10 ** 20}):
        assert PendingOnboarding.from_cookie(broken) is None


def test_a_non_admin_cannot_onboard(service, tenant, fake):
    assert service.status(tenant, admin=False).outcome == OnboardingOutcome.NOT_ADMIN
    refused = service.begin(tenant, NAME, admin=False)
    assert refused.outcome == OnboardingOutcome.NOT_ADMIN and refused.consent_url is None
    # Even with a real consent answer and a valid cookie, a session without the admin flag creates nothing.
    step = start(service, tenant)
    query = consent(fake, step.consent_url)
    assert service.complete(query, step.pending, tenant, admin=False).outcome == OnboardingOutcome.NOT_ADMIN
    assert stored_tenant(tenant) is None
