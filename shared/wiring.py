"""Builds the collaborators of every entry point from settings, once per process: Google clients,
repositories, object store, token validator, Graph client and deletion requester.

Each handler's wiring is one short function over these, decorated with `components` (below): its
settings are checked at cold start and it is built once per process; tests rebuild it from other
settings with its `.reset()`. Everything Google is imported inside the builders, so a cold start
imports an SDK only when the first request needs it.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.clock import Clock, utc_now
from shared.config import Settings, function_target, settings_for
from shared.ids import new_id
from shared.store import Store

if TYPE_CHECKING:
    from google.cloud.firestore import Client as FirestoreClient
    from google.cloud.pubsub_v1 import PublisherClient
    from google.cloud.storage import Bucket

    from shared.auth import TokenValidator
    from shared.deletion_requests import DeletionRequester
    from shared.egress import AllowListedSession
    from shared.events import DeletionPublisher
    from shared.graph.client import AppTokens, GraphAccessCheck, GraphClient
    from shared.store.repositories import TenantRepository

T = TypeVar("T")


# -- once per process: an entry point's collaborators ---------------------------------------------
def cold_start_check(function_name: str) -> None:
    """Fails the cold start of `function_name` when a setting it needs is missing (names the variable)."""
    if function_target() == function_name:
        settings_for(function_name)


def components(function_name: str) -> Callable[[Callable[[Settings, Store], T]], Once[T]]:
    """Decorates an entry point's builder `build(config, store)`: the function's settings are checked at
    cold start, and its collaborators are built once per process on first use (`.reset()` rebuilds)."""
    cold_start_check(function_name)

    def decorate(build: Callable[[Settings, Store], T]) -> Once[T]:
        def built() -> T:
            config = settings_for(function_name)
            return build(config, store(config))

        return Once(built)

    return decorate


class Once(Generic[T]):
    """A lazily built process-wide singleton (clients, services), built exactly once even when the
    first requests of a cold instance arrive concurrently (functools.cache would build one per thread).
    `reset()` drops it, so the next call builds it again (e.g. from other settings)."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._lock = threading.Lock()
        self._built: list[T] = []
        functools.update_wrapper(self, factory)

    def __call__(self) -> T:
        if not self._built:
            with self._lock:
                if not self._built:
                    self._built.append(self._factory())
        return self._built[0]

    def reset(self) -> None:
        with self._lock:
            self._built.clear()


def once(factory: Callable[[], T]) -> Once[T]:
    """`Once(factory)`, as a decorator."""
    return Once(factory)


# -- Google clients: one per process; with *_EMULATOR_HOST set they talk to the emulators by themselves --
@functools.cache
def firestore_client(project: str) -> FirestoreClient:
    from google.cloud import firestore

    return firestore.Client(project=project)


@functools.cache
def publisher_client() -> PublisherClient:
    from google.cloud.pubsub_v1 import PublisherClient

    return PublisherClient()


@functools.cache
def storage_bucket(project: str, bucket: str) -> Bucket:
    from google.cloud.storage import Client

    return Client(project=project).bucket(bucket)


# -- persistence ---------------------------------------------------------------------------------
def store(config: Settings, db: Any = None, bucket: Any = None) -> Store:
    """The repositories for `config`; `db` / `bucket` replace the process's clients (e.g. instrumented ones)."""
    from shared.store.erasure import DocumentEraser
    from shared.store.objects import ObjectStore
    from shared.store.repositories import (
        AuditRepository,
        DeviceRepository,
        FileRepository,
        ReceiptRepository,
        TenantRepository,
    )

    db = db if db is not None else firestore_client(config.project)
    if bucket is None and config.technical_files_bucket:
        bucket = storage_bucket(config.project, config.technical_files_bucket)
    from shared.store.leases import SyncLeaseRepository
    from shared.store.portal_sessions import PortalSessionRepository

    return Store(TenantRepository(db), DeviceRepository(db), FileRepository(db), ReceiptRepository(db),
                 DocumentEraser(db, config.deletion_initial_ops_per_second, config.deletion_max_ops_per_second),
                 ObjectStore(bucket) if bucket is not None else None, sync_leases=SyncLeaseRepository(db),
                 audit=AuditRepository(db), portal_sessions=PortalSessionRepository(db))


# -- deletion requests ---------------------------------------------------------------------------
def deletion_publisher(config: Settings) -> DeletionPublisher:
    """The publisher of `DELETION_TOPIC` (one client per process)."""
    from shared.events import DeletionPublisher

    return DeletionPublisher(publisher_client(), config.project, config.deletion_topic)


def deletion_requester(config: Settings, persistence: Store, clock: Clock = utc_now,
                       publisher: DeletionPublisher | None = None) -> DeletionRequester:
    from shared.deletion_requests import DeletionRequester

    return DeletionRequester(persistence, publisher or deletion_publisher(config), config.receipt_key, clock, new_id)


# -- Microsoft -----------------------------------------------------------------------------------
def egress_session(config: Settings, pool_size: int = 16) -> AllowListedSession:
    from shared.egress import AllowListedSession

    return AllowListedSession(config.allowed_egress, pool_size=pool_size)


def token_validator(config: Settings, tenants: TenantRepository,
                    session: AllowListedSession | None = None) -> TokenValidator:
    """The app-facing validator: signing keys from the authority's JWKS, tenants from Firestore."""
    from shared.auth import JwksCache, TokenValidator, jwks_url

    keys = JwksCache(session or egress_session(config), jwks_url(config.entra_authority_host))
    return TokenValidator(keys, config.entra_authority_host, config.entra_client_id, config.entra_required_scope,
                          tenants.get)


def app_tokens(config: Settings, session: AllowListedSession | None = None) -> AppTokens:
    """Client-credentials tokens for Graph per tenant (MSAL, in-memory cache only)."""
    from shared.graph.client import AppTokens

    return AppTokens(config.entra_authority_host, config.entra_client_id, config.entra_client_secret,
                     session or egress_session(config))


def graph_access_check(config: Settings, session: AllowListedSession | None = None) -> GraphAccessCheck:
    """What onboarding asks to confirm a tenant's admin consent: Graph answering the app for that tenant."""
    from shared.graph.client import GraphAccessCheck

    session = session or egress_session(config)
    return GraphAccessCheck(app_tokens(config, session), session, config.graph_base_url)


def graph_client(config: Settings, session: AllowListedSession | None = None) -> GraphClient:
    """Graph with app-only tokens from MSAL (client credentials, one cache per process)."""
    from shared.graph.client import GraphClient

    session = session or egress_session(config)
    return GraphClient(session, config.graph_base_url, app_tokens(config, session), config.graph_retry_deadline_seconds)
