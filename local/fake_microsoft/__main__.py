"""`python -m local.fake_microsoft`: serve the fakes until SIGTERM/SIGINT.

Prints one JSON line on stdout when ready: {"entra": ..., "graph": ..., "ca": ...}."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from .server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, start_servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.fake_microsoft",
                                     description="Fake Microsoft Entra ID + Graph v1.0 over HTTPS on 127.0.0.1.")
    parser.add_argument("--state-dir", required=True, help="where ca.pem and the server key are written")
    parser.add_argument("--entra-port", type=int, default=0)
    parser.add_argument("--graph-port", type=int, default=0)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--directory-size", type=int, default=None,
                        help="users in a tenant's directory when first used (default 250)")
    parser.add_argument("--redirect-uri", action="append", default=[],
                        help="a web redirect URI registered for the app (authorization code sign-in); repeatable")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    servers = start_servers(args.state_dir, args.entra_port, args.graph_port, args.client_id,
                            args.client_secret, directory_size=args.directory_size, verbose=args.verbose,
                            redirect_uris=tuple(args.redirect_uri))
    print(json.dumps(servers.describe()), flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
