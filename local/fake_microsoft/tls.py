"""Throw-away TLS material for the fakes: a `trustme` CA and a server certificate for loopback.

Clients trust the fakes only through the standard variables (`REQUESTS_CA_BUNDLE` for `requests`,
`SSL_CERT_FILE` for `urllib`/`httpx`), pointed at `ca.pem`; production code has no test branch.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_IDENTITIES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class CaFiles:
    """Paths of the TLS files written by `make_ca`."""

    directory: Path
    ca_pem: Path  # the CA certificate: the bundle clients trust (REQUESTS_CA_BUNDLE / SSL_CERT_FILE)
    server_cert: Path  # server certificate chain (leaf first) for 127.0.0.1 and localhost
    server_key: Path  # the server's private key (mode 0600)
    bundle_pem: Path  # ca.pem plus the public roots of `certifi`, for processes that need both


def make_ca(directory: str | os.PathLike[str]) -> CaFiles:
    """Create a fresh CA and a loopback server certificate under `directory`; return the paths."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="fake-microsoft local CA")
    leaf = ca.issue_cert(*SERVER_IDENTITIES, common_name="127.0.0.1")

    files = CaFiles(
        directory=root,
        ca_pem=root / "ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        bundle_pem=root / "bundle.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_pem))
    with open(files.server_cert, "wb") as chain:
        for blob in leaf.cert_chain_pems:
            chain.write(blob.bytes())
    # The key is created with owner-only permissions before any byte is written.
    fd = os.open(files.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(leaf.private_key_pem.bytes())
    files.bundle_pem.write_bytes(ca.cert_pem.bytes() + _public_roots())
    return files


def server_ssl_context(files: CaFiles) -> ssl.SSLContext:
    """An `ssl.SSLContext` for a server presenting the loopback certificate (TLS 1.2+)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(files.server_cert), keyfile=str(files.server_key))
    context.set_alpn_protocols(["http/1.1"])
    return context


def client_ssl_context(files: CaFiles) -> ssl.SSLContext:
    """An `ssl.SSLContext` for a client that trusts only the fake CA (handy in tests)."""
    return ssl.create_default_context(cafile=str(files.ca_pem))


def _public_roots() -> bytes:
    try:
        import certifi
    except ImportError:  # the bundle then holds only the fake CA
        return b""
    return b"\n" + Path(certifi.where()).read_bytes()
