"""Serves one entry point of main.py the way functions-framework's command does (its gunicorn server,
same threads and timeouts), with one difference: header fields of up to 64 KiB reach the function.

gunicorn refuses a header line over 8,190 bytes with its own HTML `431` before the function runs, and
functions-framework's command offers no option for it; locally the function itself answers, so an
oversized token gets the app's problem+json (`401 token-malformed`). Production: docs/operations.md,
"Oversized headers".

    python -m local.serve --source main.py --target register_device --host 127.0.0.1 --port 8081
"""
from __future__ import annotations

import argparse

HEADER_FIELD_LIMIT = 64 * 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.serve")
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    from functions_framework import create_app
    from functions_framework._http import create_server

    app = create_app(args.target, args.source)
    create_server(app, False, limit_request_field_size=HEADER_FIELD_LIMIT).run(args.host, args.port)


if __name__ == "__main__":
    main()
