"""The local stack: official Google emulators, fake-gcs-server, fake Entra ID + Graph, every function.

`LocalStack.start()` starts each process on loopback (free ports unless configured) through the launcher
(`local/launcher.py`), waits until each answers (polling, no fixed sleeps), provisions topics, the push
subscription with dead-letter policy, the bucket and optionally a demo tenant, and `stop()` ends every
process it started (process groups, SIGTERM then SIGKILL). `make dev`, the test suite (session fixtures) and
the benchmarks use the same class.
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.launcher import (
    LOOPBACK,
    ROOT,
    Process,
    StackError,
    check_prerequisites,
    free_port,
    start_fake_gcs_server,
    start_fake_microsoft,
    start_firestore_emulator,
    start_function,
    start_pubsub_emulator,
    stop_all,
)

PROJECT = "demo-contact-sync"
BUCKET = "technical-files"
DELETION_TOPIC = "deletion-requests"
DEAD_LETTER_TOPIC = "deletion-requests-dead-letter"
SWEEP_TOPIC = "retention-sweep"
PUSH_SUBSCRIPTION = "deletion-requests-to-handle-deletion"
DEAD_LETTER_SUBSCRIPTION = "deletion-requests-dead-letter-inspect"
SWEEP_SUBSCRIPTION = "retention-sweep-to-sweep-retention"
MAX_DELIVERY_ATTEMPTS = 5
ENTRA_CLIENT_ID = "6f1c1a35-0b0a-4f58-9a3c-5b8b7d3e9a11"
DEMO_TENANT_ID = "0c8d3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
# A second directory in the fake Entra ID, never onboarded: its users show what the portal does for strangers.
OTHER_TENANT_ID = "7d3f9a10-2b4c-4e5f-8a6b-9c0d1e2f3a4b"
# The new customer's admin consent replicates this long in the fake (Microsoft: seconds to minutes).
DEMO_CONSENT_REPLICATION_SECONDS = 4.0
HTTP_FUNCTIONS = ("register_device", "relay_contacts", "manage_tenants")


# How a process that lost its port says so: the JVM emulators, Go's fake-gcs-server, gunicorn.
_PORT_TAKEN = ("Address already in use", "address already in use")


def entry_points(main: Path = ROOT / "main.py") -> list[str]:
    """Names main.py exports (its `__all__`): the functions that exist."""
    tree = ast.parse(main.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise StackError("main.py declares no __all__")


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """os.environ with `values` (None removes a variable) while the block runs, then exactly as before."""
    saved = dict(os.environ)
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _http(method: str, url: str, body: dict | None = None, accept: tuple[int, ...] = (),
          timeout: float = 10) -> tuple[int, Any]:
    """(status, decoded JSON answer) of one request to a process of the stack; StackError for an error
    status not in `accept` (an accepted one answers `(status, {})`)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method),
                                    timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        if error.code in accept:
            return error.code, {}
        raise StackError(f"{method} {url}: {error.code} {error.read()[:300]!r}") from None
    try:
        return response.status, json.loads(raw or b"{}")
    except ValueError:  # an answer without a JSON body
        return response.status, {}


@dataclass
class LocalStack:
    state_dir: Path = ROOT / ".local-stack"
    with_functions: bool = True
    demo_tenant: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    demo_accounts: dict[str, dict[str, str]] = field(default_factory=dict)

    chosen: set[str] = field(default_factory=set)  # ports picked here (not configured): may be re-picked

    def port(self, name: str) -> int:
        if name not in self.ports:
            self.ports[name] = free_port()
            self.chosen.add(name)
        return self.ports[name]

    def _ready_on_free_ports(self, starters: dict[str, Callable[[int], Process]],
                             fixed: frozenset[str] = frozenset()) -> dict[str, Process]:
        """Starts each process on its port, then waits for all. A port picked here can be taken by anyone
        between picking and binding (an outgoing connection takes ephemeral ports too); a process that
        exits because its port is in use starts again on another one, up to three times, unless the port
        was configured or others already know it (`fixed`)."""
        processes = {name: self._started(start(self.port(name))) for name, start in starters.items()}
        for name, start in starters.items():
            for attempt in range(3):
                try:
                    processes[name].wait_ready()
                    break
                except StackError as error:
                    if (attempt == 2 or name in fixed or name not in self.chosen
                            or not any(sign in str(error) for sign in _PORT_TAKEN)):
                        raise
                    del self.ports[name]
                    processes[name] = self._started(start(self.port(name)))
        return processes

    @property
    def portal_url(self) -> str:
        """PORTAL_BASE_URL: the tenant_portal process (http on loopback, as browsers treat it as secure)."""
        return f"http://{LOOPBACK}:{self.port('tenant_portal')}"

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        tools = check_prerequisites()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_emulators(tools)
            self._start_fake_microsoft()
            self.env = self._function_env()
            self._provision()
            if self.with_functions:
                self._start_functions()
                self._provision_push()
            if self.demo_tenant and self.with_functions:
                self.onboard(DEMO_TENANT_ID, "Contoso Demo GmbH", {"defaultRegion": "DE"}, exist_ok=True)
                self.demo_accounts = self.portal_accounts(DEMO_TENANT_ID, OTHER_TENANT_ID)
                # A new customer: no consent yet, so its admin onboards through the fake consent page, and
                # (as at Microsoft) the consent takes a few seconds to replicate: the portal's waiting page.
                self.fake_microsoft().consent(OTHER_TENANT_ID, "not_consented")
                self.fake_microsoft().configure(tenant=OTHER_TENANT_ID,
                                                consent_replication_seconds=DEMO_CONSENT_REPLICATION_SECONDS)
            self._write_stack_file()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_all(self.processes)
        self.processes.clear()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- processes -------------------------------------------------------------------------------
    def _started(self, process: Process) -> Process:
        self.processes.append(process)  # stopped by stop(), even if it never becomes ready
        return process

    def _start_emulators(self, tools: dict[str, Path]) -> None:
        self._ready_on_free_ports({
            "firestore": lambda port: start_firestore_emulator(tools, port, self.state_dir),
            "pubsub": lambda port: start_pubsub_emulator(tools, port, self.state_dir),
            "gcs": lambda port: start_fake_gcs_server(tools, port, self.state_dir)})
        self.urls.update(firestore=f"{LOOPBACK}:{self.ports['firestore']}",
                         pubsub=f"{LOOPBACK}:{self.ports['pubsub']}", gcs=f"http://{LOOPBACK}:{self.ports['gcs']}")

    def _start_fake_microsoft(self) -> None:
        self.client_secret = self.extra_env.get("ENTRA_CLIENT_SECRET") or secrets.token_urlsafe(24)
        process = self._started(start_fake_microsoft(
            self.state_dir / "fake-microsoft", self.port("entra"), self.port("graph"), ENTRA_CLIENT_ID,
            self.client_secret, self.state_dir,
            redirect_uris=[f"{self.portal_url}/auth/callback", f"{self.portal_url}/onboard/callback"]))
        process.wait_ready()
        self.urls.update(process.announced)

    def _function_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FIRESTORE_", "PUBSUB_", "STORAGE_"))}
        ca = self.urls["ca"]
        env.update({
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "FIRESTORE_EMULATOR_HOST": self.urls["firestore"],
            "PUBSUB_EMULATOR_HOST": self.urls["pubsub"],
            "STORAGE_EMULATOR_HOST": self.urls["gcs"],
            "TECHNICAL_FILES_BUCKET": BUCKET,
            "DELETION_TOPIC": DELETION_TOPIC,
            "ENTRA_AUTHORITY_HOST": self.urls["entra"],
            "GRAPH_BASE_URL": self.urls["graph"],
            "ENTRA_CLIENT_ID": ENTRA_CLIENT_ID,
            "ENTRA_CLIENT_SECRET": self.client_secret,
            "CURSOR_KEY": secrets.token_urlsafe(32),
            "RECEIPT_KEY": secrets.token_urlsafe(32),
            "PORTAL_BASE_URL": self.portal_url,
            "PORTAL_SESSION_KEY": secrets.token_urlsafe(32),
            "REQUESTS_CA_BUNDLE": ca,
            "SSL_CERT_FILE": ca,
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def _start_functions(self) -> None:
        def starter(name: str) -> Callable[[int], Process]:
            return lambda port: start_function(name, port, self.env, self.state_dir / f"{name}.log")

        # The portal's URL is already known to the fake Entra ID (its redirect URI): it keeps its port.
        self._ready_on_free_ports({name: starter(name) for name in entry_points()},
                                  fixed=frozenset({"tenant_portal"}))
        for name in entry_points():
            self.urls[name] = f"http://{LOOPBACK}:{self.ports[name]}"

    # -- talking to the stack --------------------------------------------------------------------
    def pubsub(self, method: str, path: str, body: dict | None = None, timeout: float = 10,
               accept: tuple[int, ...] = (409,)) -> dict:
        """The Pub/Sub emulator's REST API under `/v1/projects/{PROJECT}/`; by default "already exists" (409)
        is fine, so provisioning is repeatable."""
        url = f"http://{self.urls['pubsub']}/v1/projects/{PROJECT}/{path}"
        return _http(method, url, body or {}, accept=accept, timeout=timeout)[1]

    def onboard(self, tenant_id: str, name: str, settings: dict[str, Any] | None = None,
                exist_ok: bool = False) -> int:
        """Onboards a tenant through the manage_tenants process (as an operator does); its status (201)."""
        body: dict[str, Any] = {"tenantId": tenant_id, "name": name}
        if settings is not None:
            body["settings"] = settings
        return _http("POST", self.urls["manage_tenants"] + "/tenants", body, accept=(409,) if exist_ok else (),
                     timeout=30)[0]

    def portal_accounts(self, *tenant_ids: str) -> dict[str, dict[str, str]]:
        """The portal's demo sign-ins of each tenant in the fake Entra ID ({tenantId: {role: userPrincipalName}}):
        user 0 is a Global Administrator, user 1 a plain member, user 2 holds the Tenant.Admin app role."""
        from local.fake_microsoft.authorize import demo_role

        fake = self.fake_microsoft()
        accounts: dict[str, dict[str, str]] = {}
        for tenant_id in tenant_ids:
            users = fake.call("GET", f"/tenants/{tenant_id}/users?limit=3")["users"]
            accounts[tenant_id] = {demo_role(u["index"]): u["user"]["userPrincipalName"] for u in users
                                   if u["user"] is not None and u["index"] < 3}
        return accounts

    def fake_microsoft(self):
        """A client of the fakes' control API (`local/fake_microsoft/client.py`)."""
        from local.fake_microsoft.client import FakeMicrosoftClient

        return FakeMicrosoftClient(self.urls["entra"], self.urls["ca"])

    @contextlib.contextmanager
    def client_environment(self) -> Iterator[LocalStack]:
        """This process talks to the stack as its functions do (os.environ = their environment without
        FUNCTION_TARGET) while the block runs: in-process entry points, repositories, official clients."""
        with environment({**self.env, "FUNCTION_TARGET": None}):
            yield self

    # -- provisioning ----------------------------------------------------------------------------
    def _provision(self) -> None:
        for topic in (DELETION_TOPIC, DEAD_LETTER_TOPIC, SWEEP_TOPIC):
            self.pubsub("PUT", f"topics/{topic}")
        self.pubsub("PUT", f"subscriptions/{DEAD_LETTER_SUBSCRIPTION}",
                    {"topic": f"projects/{PROJECT}/topics/{DEAD_LETTER_TOPIC}", "ackDeadlineSeconds": 30})
        _http("POST", f"{self.urls['gcs']}/storage/v1/b?project={PROJECT}", {"name": BUCKET}, accept=(409,))

    def _provision_push(self) -> None:
        if "handle_deletion" in self.urls:
            self.pubsub("PUT", f"subscriptions/{PUSH_SUBSCRIPTION}", {
                "topic": f"projects/{PROJECT}/topics/{DELETION_TOPIC}",
                "pushConfig": {"pushEndpoint": self.urls["handle_deletion"] + "/"},
                "ackDeadlineSeconds": 60,
                "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "5s"},
                "deadLetterPolicy": {"deadLetterTopic": f"projects/{PROJECT}/topics/{DEAD_LETTER_TOPIC}",
                                     "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS}})
        if "sweep_retention" in self.urls:
            self.pubsub("PUT", f"subscriptions/{SWEEP_SUBSCRIPTION}", {
                "topic": f"projects/{PROJECT}/topics/{SWEEP_TOPIC}",
                "pushConfig": {"pushEndpoint": self.urls["sweep_retention"] + "/"},
                "ackDeadlineSeconds": 300})

    def pause_deletion_push(self) -> None:
        """Removes the push subscription to handle_deletion (messages published meanwhile are not kept).

        The test session runs most tests in-process against shared emulators; a deletion request pushed
        to the handle_deletion process a second later would land in the next test's data.
        """
        if "handle_deletion" in self.urls:
            _http("DELETE", f"http://{self.urls['pubsub']}/v1/projects/{PROJECT}/subscriptions/{PUSH_SUBSCRIPTION}",
                  accept=(404,))

    def resume_deletion_push(self) -> None:
        """Creates the push subscription again (only messages published from now on are delivered)."""
        self._provision_push()

    def _write_stack_file(self) -> None:
        """Non-secret facts for clients (the demo client): URLs, the app's client ID, the demo tenant."""
        facts = {"urls": self.urls, "clientId": ENTRA_CLIENT_ID, "demoTenantId": DEMO_TENANT_ID,
                 "project": PROJECT, "pids": self.pids()}
        (self.state_dir / "stack.json").write_text(json.dumps(facts, indent=2))

    # -- test support ----------------------------------------------------------------------------
    def reset_data(self) -> None:
        """Empties Firestore (the emulator's reset endpoint) and the bucket; topics stay."""
        _http("DELETE", f"http://{self.urls['firestore']}/emulator/v1/projects/{PROJECT}/databases/(default)"
                        "/documents", timeout=30)
        listing = f"{self.urls['gcs']}/storage/v1/b/{BUCKET}/o"
        while True:
            items = _http("GET", listing, timeout=30)[1].get("items", [])
            if not items:
                break
            for item in items:
                _http("DELETE", f"{listing}/{urllib.parse.quote(item['name'], safe='')}", timeout=30)
