"""JSON log lines in the Cloud Logging format, with an allow-list of the keys a line may carry.

Privacy is enforced here: a key that is not in SAFE_KEYS never reaches the output, so a careless log
call that passes a contact field as a keyword cannot leak it; and a value reaches it only in its key's
shape (a UUID for IDs, a number for counts, one of a fixed set of methods, a short identifier without
spaces otherwise), so a value that came from a request or a response (a method, an event type, an error
code) cannot carry text into a line. Lines of other libraries' loggers keep their logger and severity
but not their text, which may quote URLs, headers or bodies.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Callable

from shared.ids import UUID_PATTERN

# Keys a log line may carry besides severity/message/time. IDs here are tenant/device/file/request IDs,
# which the data model stores anyway; no contact field, token, or secret has a key here.
SAFE_KEYS = frozenset({
    "function", "route", "method", "status", "error", "reason", "eventType", "requestId", "kind",
    "tenantId", "deviceId", "fileId", "attempt", "retryAfter", "pages", "contacts", "removed",
    "durationMs", "documents", "files", "verified", "published", "batches", "objects", "count",
    "httpStatus", "graphCode", "messageId", "deliveryAttempt", "setting", "upstream", "phase",
    "devices", "tenants", "orphans", "scanned", "skipped", "full", "scopeRequests",
    # capacity (issue 13): deletion continuations, sync admission, Graph throttling
    "continuation", "progressing", "sync", "leases", "limit", "throttleLimitPercentage", "pausedMs",
    # shared rounds (issue 21): one line per round, counts only
    "round", "listeners", "graphRequests", "completed", "behind",
})

_UUID = re.compile(UUID_PATTERN)
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:/<>?-]{0,100}")  # no spaces, quotes, @ or +: no free text
_SLUG = re.compile(r"[a-z0-9-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
# The shape of each string-valued key; any other key of SAFE_KEYS takes numbers and booleans as they are
# and strings only in _IDENTIFIER's shape.
_MESSAGE_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


def _matches(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda text: pattern.fullmatch(text) is not None


_SHAPES: dict[str, Callable[[str], bool]] = {
    **dict.fromkeys(("tenantId", "deviceId", "fileId", "requestId"), _matches(_UUID)),
    "method": _METHODS.__contains__,
    "reason": _matches(_SLUG),
    "kind": _matches(_SLUG),
    "messageId": _matches(_MESSAGE_ID),
}
UNRECOGNISED = "unrecognised"


def shaped(key: str, value: object) -> object:
    """`value` if it has `key`'s shape, else UNRECOGNISED."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str) and _SHAPES.get(key, _IDENTIFIER.fullmatch)(value):
        return value
    return UNRECOGNISED


_OWN_LOGGERS = ("functions", "shared", "local", "benchmarks", "main", "__main__")


def _own(logger_name: str) -> bool:
    return logger_name.split(".", 1)[0] in _OWN_LOGGERS


# Cloud Logging's LogSeverity names by the lowest Python level that maps to them; a level between two
# (a library's custom level) takes the one below it, so `severity` is always a name Cloud Logging knows.
_SEVERITIES = ((logging.CRITICAL, "CRITICAL"), (logging.ERROR, "ERROR"), (logging.WARNING, "WARNING"),
               (logging.INFO, "INFO"), (logging.DEBUG, "DEBUG"))


def severity(levelno: int) -> str:
    for threshold, name in _SEVERITIES:
        if levelno >= threshold:
            return name
    return "DEFAULT"


_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)
_project: str = ""


def bind_trace(header_value: str | None, project: str) -> None:
    """Binds the request's X-Cloud-Trace-Context so every line of this request carries it."""
    global _project
    _project = project
    trace_id = (header_value or "").split("/", 1)[0]
    _trace.set(trace_id if trace_id.isalnum() and len(trace_id) <= 64 else None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Own messages are constant strings (fields carry the values); a library's text is withheld.
        message = str(record.msg) if _own(record.name) else f"{record.name} log line (text withheld)"
        line: dict[str, object] = {
            "severity": severity(record.levelno),
            "message": message,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        fields = getattr(record, "fields", None) or {}
        for key, value in fields.items():
            if key in SAFE_KEYS:
                line[key] = shaped(key, value)
        trace_id = _trace.get()
        if trace_id and _project:
            line["logging.googleapis.com/trace"] = f"projects/{_project}/traces/{trace_id}"
        if record.exc_info and record.exc_info[0] is not None:
            # Exception type only: messages of SDK exceptions may quote request data.
            line["error"] = record.exc_info[0].__name__
        return json.dumps(line, default=str)


def configure() -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    from shared.config import log_level

    level = logging.getLevelName(log_level())
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries' own loggers may print URLs, headers, or bodies at DEBUG; keep them at WARNING.
    for noisy in ("urllib3", "msal", "google", "werkzeug", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Logger:
    """A thin wrapper: log.info("message", tenantId=..., status=...)."""

    def __init__(self, name: str):
        self._logger = logging.getLogger(name)

    def _log(self, level: int, message: str, fields: dict[str, object], exc_info: bool = False) -> None:
        self._logger.log(level, message, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, message: str, **fields: object) -> None:
        self._log(logging.DEBUG, message, fields)

    def info(self, message: str, **fields: object) -> None:
        self._log(logging.INFO, message, fields)

    def warning(self, message: str, **fields: object) -> None:
        self._log(logging.WARNING, message, fields)

    def error(self, message: str, **fields: object) -> None:
        self._log(logging.ERROR, message, fields)

    def exception(self, message: str, **fields: object) -> None:
        self._log(logging.ERROR, message, fields, exc_info=True)


def get_logger(name: str) -> Logger:
    configure()
    return Logger(name)
