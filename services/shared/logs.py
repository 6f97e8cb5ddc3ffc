"""Structured logs: one JSON object per line on stderr.

Every record carries the service name and the request id of the work it belongs to
(``request_id_var``), so one id can be followed from an upload through all four
services. Secrets never reach the output: configured secret values, tenant API keys
and bearer tokens are masked by a filter on the handler.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

__all__ = ["LineLog", "configure_logging", "get_logger", "new_request_id", "request_id_var"]

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_API_KEY = re.compile(r"\b(ip_[0-9a-f]+_)[0-9A-Za-z]+")
_BEARER = re.compile(r"((?i:bearer)\s+)\S+")
_DSN_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")


def _id_prefix() -> str:
    return uuid.uuid4().hex[:16]


_request_ids = itertools.count(1)
_request_id_prefix = _id_prefix()


def _new_process_ids() -> None:
    global _request_id_prefix, _request_ids
    _request_id_prefix, _request_ids = _id_prefix(), itertools.count(1)


os.register_at_fork(after_in_child=_new_process_ids)


def new_request_id() -> str:
    """32 hex digits: this process's random 64-bit prefix, then a counter. Unique without
    a random draw per id (delivery makes one per request)."""
    return f"{_request_id_prefix}{next(_request_ids):016x}"


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
        self._literals = tuple(s for s in secrets if len(s) >= 4)

    def redact(self, text: str) -> str:
        if not self._may_hold_secret(text):
            return text
        return self._pattern.sub(_masked, text)

    def _may_hold_secret(self, text: str) -> bool:
        """False only when no alternative of the pattern can match: each shape needs its
        marker. Substring tests run at C speed; the regex tries every alternative at
        every position, and most lines (an access line per request) hold no secret."""
        return (
            any(secret in text for secret in self._literals)
            or "ip_" in text
            or ("://" in text and "@" in text)
            or "bearer" in text.lower()
        )

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
        self.service = service

    def entry(self, created: float, level: str, logger: str, event: str) -> dict[str, Any]:
        """The fields every line starts with."""
        return {
            "ts": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "service": self.service,
            "logger": logger,
            "event": event,
        }

    def format(self, record: logging.LogRecord) -> str:
        entry = self.entry(
            record.created, record.levelname.lower(), record.name, record.getMessage()
        )
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
    handler = _JsonHandler(service, secrets)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log connection chatter at INFO; keep them to warnings.
    for noisy in ("aio_pika", "aiormq", "asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


class LineLog:
    """An INFO line per event on a hot path (delivery's access log): the same JSON shape
    and masking as every other line, without the logging machinery's cost per record (a
    LogRecord, a filter pass per field, the handler chain), which was a fifth of
    delivery's time per request. The line is masked in one pass, whole.

    Before `configure_logging` (tests capturing records), lines go through `logging`.
    """

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def info(self, event: str, fields: dict[str, Any]) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        handler = next(
            (h for h in logging.getLogger().handlers if isinstance(h, _JsonHandler)), None
        )
        if handler is None:
            self._logger.info(event, extra=fields)
            return
        entry = handler.formatter_.entry(time.time(), "info", self._logger.name, event)
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(fields)
        line = handler.redactor.redact(json.dumps(entry, default=str, ensure_ascii=False))
        handler.write_line(line)


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler: JSON lines on a stream, secrets masked."""

    def __init__(self, service: str, secrets: Iterable[str]) -> None:
        super().__init__(sys.stderr)
        self.formatter_ = _JsonFormatter(service)
        self.redactor = _Redactor(secrets)
        self.setFormatter(self.formatter_)
        self.addFilter(self.redactor)

    def write_line(self, line: str) -> None:
        with self.lock or contextlib.nullcontext():
            try:
                self.stream.write(line + self.terminator)
                self.flush()
            except (OSError, ValueError):  # a closed or broken stream, as emit treats it
                self.handleError(logging.LogRecord("", 0, "", 0, line, None, None))
