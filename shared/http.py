"""Framework-facing HTTP helpers: a small router, bounded body reading, JSON in and out, one error mapping."""
from __future__ import annotations

import json
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Request, Response
from werkzeug import exceptions as wexc
from werkzeug.routing import BaseConverter, Map, Rule

from shared import logs
from shared.errors import (
    PROBLEM_CONTENT_TYPE,
    AppError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TransientError,
    UnsupportedMediaType,
)

log = logs.get_logger(__name__)

Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    """`path` in werkzeug's rule syntax (`/tenants/<tenantId>`); `query` the parameters it accepts."""
    method: str
    path: str
    handler: Handler
    query: tuple[str, ...] | None = ()  # None: any query (a callback takes what the identity provider sends)


class ExceptConverter(BaseConverter):
    """`<except(changes):name>`: any one segment but the literals named, so a literal sibling route such as
    `POST /photos/changes` is never taken for a parameter (and `GET /photos/changes` is a 405)."""

    def __init__(self, url_map: Map, *excluded: str):
        super().__init__(url_map)
        alternatives = "|".join(re.escape(literal) for literal in excluded)
        self.regex = f"(?!(?:{alternatives})$)[^/]+"


class Router:
    """werkzeug.routing (what Flask and functions-framework use) over whole paths; a trailing slash is
    allowed, empty segments are not. Every route refuses query parameters it does not declare."""

    def __init__(self, routes: Iterable[Route]):
        self.routes = tuple(routes)
        self._adapter = Map([Rule(route.path, endpoint=index, methods=[route.method])
                             for index, route in enumerate(self.routes)],
                            strict_slashes=False, merge_slashes=False, converters={"except": ExceptConverter}
                            ).bind("function")

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        if "//" in path:
            raise NotFound("no such route")
        try:
            index, params = self._adapter.match(path or "/", method)
        except wexc.MethodNotAllowed as error:
            raise MethodNotAllowed(self._declared(error.valid_methods)) from None
        except wexc.HTTPException:
            raise NotFound("no such route") from None
        route = self.routes[index]
        params = {name: str(value) for name, value in params.items()}
        if route.method != method:  # werkzeug answers HEAD with the GET rule; this API does not
            raise MethodNotAllowed(self._declared(self._adapter.allowed_methods(path or "/")))
        return route, params

    @staticmethod
    def _declared(methods: Iterable[str] | None) -> list[str]:
        return sorted(set(methods or ()) - {"HEAD", "OPTIONS"})


def reject_undeclared_query(request: Request, route: Route) -> None:
    if route.query is None:
        return
    unknown = sorted(set(request.args) - set(route.query))
    if unknown:
        raise BadRequest(f"unknown query parameters: {', '.join(k[:64] for k in unknown[:10])}",
                         slug="unknown-parameter")


def problem_response(error: AppError) -> Response:
    response = Response(json.dumps(error.problem()), status=error.status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, content_type="application/json")


# zlib's default level: about 5× smaller NDJSON of directory data at ~4 µs of CPU per contact (the relay
# spends ~53 µs per contact; README "Performance"); egress is the rollout's main cost (docs/capacity.md).
GZIP_LEVEL = 6


class SharedChunk:
    """Bytes that many streams write (a shared round's page): compressed once, for every stream that asked
    for gzip, the first time one of them needs it."""

    __slots__ = ("_deflated", "_lock", "data")

    def __init__(self, data: bytes):
        self.data = data
        self._deflated: bytes | None = None
        self._lock = threading.Lock()

    def deflated(self) -> bytes:
        if self._deflated is None:
            with self._lock:
                if self._deflated is None:
                    self._deflated = _deflate(self.data)
        return self._deflated


Chunk = str | bytes | SharedChunk


def streamed_response(request: Request, chunks: Iterator[Chunk], content_type: str,
                      write_timeout: float | None = None) -> Response:
    """A streamed `200`, gzip-compressed when the client accepts it (`Accept-Encoding`, q-values honoured,
    parsed by werkzeug). Each chunk is flushed as it is produced, so the client still reads lines as they
    come; closing the response closes `chunks` (a sync releases its lease and stops fetching).

    `write_timeout`: a write to a client that stopped reading fails after this many seconds (the connection's
    socket timeout, under gunicorn and werkzeug's server), so the server closes `chunks` and frees its thread
    instead of blocking on that client until the function's timeout."""
    compress = request.accept_encodings["gzip"] > 0
    if write_timeout is not None:
        connection = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
        settimeout = getattr(connection, "settimeout", None)
        if settimeout is not None:
            settimeout(write_timeout)
    body = _Body(chunks, _gzipped(chunks) if compress else _encoded(chunks))
    response = Response(body, status=200, content_type=content_type)
    if compress:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    return response


class _Body:
    """The response body: closing it closes `chunks` too, also when the server never started reading it (a
    generator closed before its first step skips its own `finally`)."""

    def __init__(self, chunks: Iterator[Chunk], encoded: Iterator[bytes]):
        self._chunks = chunks
        self._encoded = encoded

    def __iter__(self) -> Iterator[bytes]:
        return self._encoded

    def close(self) -> None:
        for part in (self._encoded, self._chunks):
            close = getattr(part, "close", None)
            if close is not None:
                close()


def _plain(chunk: Chunk) -> bytes:
    if isinstance(chunk, SharedChunk):
        return chunk.data
    return chunk if isinstance(chunk, bytes) else chunk.encode()


def _encoded(chunks: Iterator[Chunk]) -> Iterator[bytes]:
    for chunk in chunks:
        yield _plain(chunk)


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name or time, unknown OS
_LAST_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block


def _deflate(data: bytes) -> bytes:
    """`data` as raw deflate blocks of their own, sync-flushed (byte-aligned, not final): such pieces, each from
    a fresh compressor, can follow one another in any order inside one deflate stream."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _gzipped(chunks: Iterator[Chunk]) -> Iterator[bytes]:
    """One gzip member (RFC 1952) whose deflate data is each chunk compressed on its own: a shared chunk's
    compressed bytes are made once for every stream, a stream only adds the header, its CRC-32 and length."""
    crc = length = 0
    head = _GZIP_HEADER
    for chunk in chunks:
        data = _plain(chunk)
        crc = zlib.crc32(data, crc)
        length += len(data)
        yield head + (chunk.deflated() if isinstance(chunk, SharedChunk) else _deflate(data))
        head = b""
    yield head + _LAST_BLOCK + struct.pack("<II", crc, length & 0xFFFFFFFF)


def dispatch(request: Request, router: Router, function: str, project: str = "") -> Response:
    """Routes one request and maps every AppError (and every surprise) to problem+json."""
    logs.bind_trace(request.headers.get("X-Cloud-Trace-Context"), project)
    started = time.perf_counter()
    route = "?"
    try:
        matched, params = router.resolve(request.method, request.path)
        route = matched.path
        reject_undeclared_query(request, matched)
        response = matched.handler(request, **params)
    except AppError as error:
        response = problem_response(error)
        log.info("request refused", function=function, method=request.method, route=route,
                 status=error.status, reason=error.slug)
        return drained(request, response)
    except TransientError:
        log.exception("dependency unavailable", function=function, method=request.method, route=route)
        return drained(request, problem_response(ServiceUnavailable("a dependency is unavailable; try again",
                                                                    retry_after=5)))
    except Exception:
        log.exception("request failed", function=function, method=request.method, route=route)
        return drained(request, problem_response(AppError("the request could not be completed")))
    if not response.is_streamed:
        log.info("request served", function=function, method=request.method, route=route,
                 status=response.status_code, durationMs=round((time.perf_counter() - started) * 1000, 1))
    return drained(request, response)


def framework_refusal(error: wexc.HTTPException) -> Response:
    """What Flask refuses before an entry point runs, as problem+json like every other error: e.g. a path
    with a decoded newline, which functions-framework's own `/<path:path>` rule does not match (`.` stops at
    a newline), or a method a CloudEvent function's route does not take. Registered in main.py."""
    from flask import current_app, request

    status = error.code or 500
    if status == 404:
        refusal: AppError = NotFound("no such route")
    elif status == 405:
        allowed = error.valid_methods if isinstance(error, wexc.MethodNotAllowed) else None
        refusal = MethodNotAllowed(sorted(set(allowed or ()) - {"HEAD", "OPTIONS"}))
    elif isinstance(error, wexc.ClientDisconnected):  # a body read by the framework itself (a CloudEvent's)
        refusal = BadRequest("the body is shorter than its Content-Length", slug="truncated-body")
    else:
        refusal = AppError("the request was refused before it reached the function", slug="framework-refusal")
        refusal.status, refusal.title = status, error.name
    log.info("request refused", function=current_app.name, method=request.method, route="?", status=status,
             reason=refusal.slug)
    return problem_response(refusal)


def media_type(request: Request) -> str:
    return (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def sent_without_draining(response: Response) -> Response:
    """`response` as one the Functions Framework sends without first reading the rest of the request (it does
    not for streamed responses). For a body that ended before its Content-Length, where that read fails and
    would turn the 400 into a 500."""
    data = response.get_data()
    response.response = iter([data])
    return response


def drained(request: Request, response: Response) -> Response:
    """`response`, safe from functions-framework's last step. After a function returns, the framework's
    `after_request` hook reads the rest of the request body (`request.get_data()`, for any answer that is not
    streamed); for a body that ended before its Content-Length werkzeug raises `ClientDisconnected` there, and
    Flask turns an exception raised while finishing a response into a bare `500` (the error handler's answer
    is finished by the same hook, which fails again). So the rest is read here, where it can fail quietly: the
    data is cached for the hook, or — when it is missing — the answer is sent without the hook's read."""
    if response.is_streamed:
        return response
    try:
        request.get_data()
    except wexc.ClientDisconnected:
        return sent_without_draining(response)
    return response


def read_body(request: Request, limit: int, accepted_types: Iterable[str]) -> tuple[bytes, str]:
    """Returns (body, media type); 415 for another type, 413 past `limit` bytes (read at most limit+1)."""
    kind = media_type(request)
    accepted = tuple(accepted_types)
    if kind not in accepted:
        raise UnsupportedMediaType(f"Content-Type must be one of: {', '.join(accepted)}")
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body must be at most {limit} bytes")
    try:
        body = request.stream.read(limit + 1)
    except wexc.ClientDisconnected:  # the body ended before its Content-Length
        raise BadRequest("the body is shorter than its Content-Length", slug="truncated-body") from None
    if len(body) > limit:
        raise PayloadTooLarge(f"body must be at most {limit} bytes")
    if declared is not None and len(body) < declared:
        raise BadRequest("the body is shorter than its Content-Length", slug="truncated-body")
    return body, kind


def read_json_object(request: Request, limit: int, allowed: Iterable[str], required: Iterable[str] = ()
                     ) -> dict[str, Any]:
    """A JSON object body with only `allowed` keys and all `required` ones; 400 otherwise."""
    body, _ = read_body(request, limit, ("application/json",))
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deeply nested arrays
        raise BadRequest("body is not valid JSON", slug="malformed-json") from None
    if not isinstance(document, dict):
        raise BadRequest("body must be a JSON object", slug="malformed-json")
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(k[:64] for k in unknown[:10])}", slug="unknown-field")
    missing = [key for key in required if key not in document]
    if missing:
        raise BadRequest(f"missing fields: {', '.join(missing)}", slug="missing-field")
    return document

