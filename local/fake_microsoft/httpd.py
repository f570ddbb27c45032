"""A small HTTPS/1.1 server (standard library) with keep-alive, Content-Length and quiet shutdown."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("fake_microsoft")

MAX_BODY = 1 << 20


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query
    raw_path: str  # as received (path and query)
    query: dict[str, str]  # last value wins; blank values kept
    headers: Any  # email.message.Message: case-insensitive .get()
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        value = self.headers.get(name)
        return default if value is None else str(value)

    def json(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    truncate: bool = False  # send headers and half the body, then drop the connection
    delay: float = 0.0  # seconds to wait before answering

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None,
             content_type: str = "application/json; charset=utf-8") -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, body, content_type, list(headers or []))


Handler = Callable[[Request], Response]


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # header and body go out without a 40 ms delayed-ACK stall
    timeout = 120  # idle keep-alive connections are closed after this
    server: HttpsServer

    def version_string(self) -> str:
        return "fake-microsoft/1.0"

    def setup(self) -> None:
        self.request.settimeout(10)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # in this worker thread, not in the accept loop
        super().setup()

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = self.headers.get("Content-Length")
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(Response.json(411, {"error": "length_required"}))
            self.close_connection = True
            return
        if length:
            size = int(length)
            if size > MAX_BODY:
                self._send(Response.json(413, {"error": "request_too_large"}))
                self.close_connection = True
                return
            body = self.rfile.read(size)
        request = Request(self.command, unquote(split.path), self.path, query, self.headers, body)
        try:
            response = self.server.app(request)
        except Exception:  # a bug in the fake: answer 500 rather than hang the client
            log.exception("fake_microsoft handler failed for %s %s", self.command, split.path)
            response = Response.json(500, {"error": {"code": "generalException",
                                                     "message": "fake_microsoft internal error"}})
        self._send(response)

    def _send(self, response: Response) -> None:
        if response.delay > 0:
            threading.Event().wait(response.delay)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if response.truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.truncate:
            self.wfile.write(response.body[: len(response.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.request.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            log.info("%s %s", self.address_string(), format % args)


class HttpsServer(ThreadingHTTPServer):
    """ThreadingHTTPServer over TLS; the handshake runs in each connection's thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Handler, context: ssl.SSLContext,
                 verbose: bool = False) -> None:
        super().__init__(address, _RequestHandler)
        self.app = app
        self.verbose = verbose
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def process_request(self, request, client_address) -> None:  # type: ignore[override]  # socketserver leaves it untyped
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[override]  # socketserver leaves it untyped
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]  # socketserver leaves it untyped
        # Clients that hang up, fail the handshake or time out are normal here.
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, ssl.SSLError, TimeoutError, socket.timeout, OSError)):
            return
        log.exception("fake_microsoft connection error from %s", client_address)

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections would otherwise linger
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
