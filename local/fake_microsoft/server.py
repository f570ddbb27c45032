"""Start the fake Entra ID and the fake Graph: two HTTPS servers on 127.0.0.1, one shared state."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .control import control
from .entra import EntraApp
from .graph import GraphApp
from .httpd import HttpsServer, Request, Response
from .state import FakeMicrosoft
from .tls import CaFiles, make_ca, server_ssl_context

DEFAULT_CLIENT_ID = "11111111-2222-4333-8444-555555555555"
DEFAULT_CLIENT_SECRET = "fake-client-secret"
LOOPBACK = "127.0.0.1"


@dataclass
class FakeMicrosoftServers:
    """Handle of running fakes. `stop()` (or leaving the `with` block) shuts both down."""

    entra_url: str  # authority host, e.g. https://127.0.0.1:P (ENTRA_AUTHORITY_HOST)
    graph_url: str  # e.g. https://127.0.0.1:Q/v1.0 (GRAPH_BASE_URL)
    ca: CaFiles
    state: FakeMicrosoft
    client_id: str
    client_secret: str
    _servers: list[HttpsServer] = field(default_factory=list, repr=False)

    @property
    def ca_pem(self) -> str:
        return str(self.ca.ca_pem)

    def authority(self, tenant: str) -> str:
        """The MSAL authority for a tenant: {entra_url}/{tenant}."""
        return f"{self.entra_url}/{tenant}"

    def env(self) -> dict[str, str]:
        """Environment for clients of the fakes (the contract's variable names)."""
        return {"ENTRA_AUTHORITY_HOST": self.entra_url, "GRAPH_BASE_URL": self.graph_url,
                "ENTRA_CLIENT_ID": self.client_id, "ENTRA_CLIENT_SECRET": self.client_secret,
                "REQUESTS_CA_BUNDLE": self.ca_pem, "SSL_CERT_FILE": self.ca_pem}

    def mint(self, kind: str = "raw", tenant: str | None = None, **kwargs: Any) -> str:
        """A signed token (see FakeMicrosoft.mint / POST /_fake/mint); returns the compact JWT."""
        return self.state.mint(kind, tenant, **kwargs)["token"]

    def describe(self) -> dict[str, str]:
        return {"entra": self.entra_url, "graph": self.graph_url, "ca": self.ca_pem}

    def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.stop()

    def __enter__(self) -> FakeMicrosoftServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _with_control(state: FakeMicrosoft, app) -> Any:
    def handle(request: Request) -> Response:
        if request.path == "/_fake" or request.path.startswith("/_fake/"):
            return control(state, request)
        return app(request)

    return handle


def start_servers(state_dir: str | os.PathLike[str], entra_port: int = 0, graph_port: int = 0,
                  client_id: str = DEFAULT_CLIENT_ID, client_secret: str = DEFAULT_CLIENT_SECRET,
                  directory_size: int | None = None, verbose: bool = False,
                  redirect_uris: tuple[str, ...] = ()) -> FakeMicrosoftServers:
    """Create a fresh CA in `state_dir`, then serve the fake Entra ID and the fake Graph over HTTPS on
    127.0.0.1 (port 0 = a free port) from background threads of this process.

    `client_id`/`client_secret` register the app that gets client-credentials tokens for Graph and
    whose API (`api://{client_id}/access_as_user`) users sign in to."""
    ca = make_ca(Path(state_dir))
    context = server_ssl_context(ca)
    state = FakeMicrosoft(client_id, client_secret, tuple(redirect_uris))
    if directory_size is not None:
        state.settings["default_directory_size"] = int(directory_size)
    entra = HttpsServer((LOOPBACK, entra_port), _with_control(state, EntraApp(state)), context, verbose)
    try:
        graph = HttpsServer((LOOPBACK, graph_port), _with_control(state, GraphApp(state)), context, verbose)
    except OSError:
        entra.server_close()
        raise
    state.entra_base = f"https://{LOOPBACK}:{entra.port}"
    state.graph_base = f"https://{LOOPBACK}:{graph.port}/v1.0"
    entra.start("fake-entra")
    graph.start("fake-graph")
    handle = FakeMicrosoftServers(state.entra_base, state.graph_base, ca, state, client_id.lower(),
                                  client_secret, [entra, graph])
    (Path(state_dir) / "fake-microsoft.json").write_text(json.dumps(handle.describe()))
    return handle
