"""One exception hierarchy; `problem_response` maps it to application/problem+json (RFC 9457).

`detail` strings are written by our code only; they never quote tokens, secrets, or contact data.
"""
from __future__ import annotations

import re


class AppError(Exception):
    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None, slug: str | None = None,
                 retry_after: float | None = None):
        super().__init__(detail)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        if retry_after is not None:  # whole seconds, at least one (RFC 9110 delay-seconds)
            self.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
        if slug:
            self.slug = slug

    def problem(self) -> dict[str, object]:
        return {"type": f"/problems/{self.slug}", "title": self.title, "status": self.status,
                "detail": self.detail}


class BadRequest(AppError):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(AppError):
    status, title, slug = 401, "Unauthorized", "invalid-token"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None, slug: str | None = None,
                 retry_after: float | None = None):
        if headers is None:
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        super().__init__(detail, headers=headers, slug=slug, retry_after=retry_after)


class Forbidden(AppError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(AppError):
    status, title, slug = 404, "Not found", "not-found"


class MethodNotAllowed(AppError):
    status, title, slug = 405, "Method not allowed", "method-not-allowed"

    def __init__(self, allowed: list[str]):
        super().__init__(f"allowed methods: {', '.join(allowed)}", headers={"Allow": ", ".join(allowed)})


class Conflict(AppError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(AppError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(AppError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class TooManyRequests(AppError):
    status, title, slug = 429, "Too many requests", "quota-exceeded"


class BadGateway(AppError):
    status, title, slug = 502, "Bad gateway", "upstream-refused"


class ServiceUnavailable(AppError):
    status, title, slug = 503, "Service unavailable", "unavailable"

    def __init__(self, detail: str = "", retry_after: float | None = None, *,
                 headers: dict[str, str] | None = None, slug: str | None = None):
        super().__init__(detail, retry_after=retry_after, headers=headers, slug=slug)


def reason_slug(error: Exception) -> str:
    """A log-safe slug of one of our own exception texts ("message is not UTF-8 JSON" →
    "message-is-not-utf-8-json"); only for exceptions whose text our code wrote."""
    return re.sub(r"[^a-z0-9]+", "-", str(error).lower()).strip("-")[:64] or "unspecified"


class TransientError(Exception):
    """A dependency failed in a way worth retrying (events: raise so Pub/Sub redelivers)."""


class PoisonMessage(Exception):
    """An event that can never succeed: acknowledged with an error log, nothing changed."""


PROBLEM_CONTENT_TYPE = "application/problem+json"
