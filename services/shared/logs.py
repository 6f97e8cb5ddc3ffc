"""Structured logs: one JSON object per line on stderr.

Every record carries the service name and the request id of the work it belongs to
(``request_id_var``), so one id can be followed from an upload through all four
services. Secrets never reach the output: configured secret values, tenant API keys
and bearer tokens are masked by a filter on the handler.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

__all__ = ["configure_logging", "get_logger", "new_request_id", "request_id_var"]

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_API_KEY = re.compile(r"\b(ip_[0-9a-f]+_)[0-9A-Za-z]+")
_BEARER = re.compile(r"((?i:bearer)\s+)\S+")
_DSN_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")


def new_request_id() -> str:
    return uuid.uuid4().hex


def _masked(match: re.Match[str]) -> str:
    """A configured secret becomes ***; a key, bearer token or DSN keeps its prefix."""
    prefix = next((group for group in match.groups() if group is not None), None)
    if prefix is None:
        return "***"
    return prefix + ("***@" if match.group(0).endswith("@") else "***")


class _Redactor(logging.Filter):
    """Masks secrets in the rendered message and in extra fields."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # One pass over the text for everything masked: configured secrets (longest
        # first, so one that contains another is masked whole), then the key, bearer and
        # DSN shapes. Every log line goes through here; delivery writes one per request.
        literal = [re.escape(s) for s in sorted({s for s in secrets if len(s) >= 4}, key=len)]
        shapes = [_API_KEY.pattern, _BEARER.pattern, _DSN_PASSWORD.pattern]
        alternatives = [f"(?:{p})" for p in [*reversed(literal), *shapes]]
        self._pattern = re.compile("|".join(alternatives))

    def redact(self, text: str) -> str:
        return self._pattern.sub(_masked, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "event": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key != "request_id":
                entry[key] = value
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Route every logger to one JSON handler on stderr. Call once per process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(service))
    handler.addFilter(_Redactor(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log connection chatter at INFO; keep them to warnings.
    for noisy in ("aio_pika", "aiormq", "asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
