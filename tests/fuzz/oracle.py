"""What a fuzz case may answer, and what the stack must look like afterwards.

Per call: never INTERNAL or UNKNOWN; every other non-OK status carries a
google.rpc.ErrorInfo reason; no UNAVAILABLE (nothing is down during a fuzz run, so
UNAVAILABLE for bad input would make clients retry it forever); no hang.
After the run: every service process is the one that started, alive; no traceback
and no error-level line in any service log; a refused upload left no asset row and
no object (the upload tenant's rows and objects are exactly its accepted uploads).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = ["LogFinding", "Outcome", "error_reason", "outcome_of", "scan_logs"]

FAILING_CODES = {"INTERNAL", "UNKNOWN", "UNAVAILABLE"}


@dataclass(frozen=True)
class Outcome:
    code: str  # grpc.StatusCode name
    reason: str  # ErrorInfo reason; "" when there is none
    details: str
    response: bytes = b""
    timed_out: bool = False  # the client's own deadline expired: a hang

    @property
    def bucket(self) -> str:
        """The summary column: ok, invalid_argument, internal, unknown or other."""
        if self.code in ("OK", "INVALID_ARGUMENT", "INTERNAL", "UNKNOWN"):
            return self.code.lower()
        return "other"

    @property
    def transport_refusal(self) -> bool:
        """gRPC's own refusal of metadata over its size limit: it answers before any
        service code runs, so it cannot carry an ErrorInfo (counted, not a failure)."""
        return self.code == "RESOURCE_EXHAUSTED" and self.details.startswith(
            "received metadata size exceeds"
        )

    @property
    def problem(self) -> str:
        """Why this answer breaks the oracle ('' when it does not)."""
        if self.timed_out:
            return "no answer before the deadline"
        if self.code in FAILING_CODES:
            return self.code
        if self.code != "OK" and not self.reason and not self.transport_refusal:
            return f"{self.code} without an ErrorInfo reason"
        return ""


def error_reason(trailing: Iterable[tuple[str, Any]] | None) -> str:
    """The ErrorInfo reason in a call's trailing metadata, or ''."""
    for key, value in trailing or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return str(info.reason)
    return ""


def outcome_of(error: grpc.RpcError) -> Outcome:
    call: Any = error  # every RpcError a call raises is also its grpc.Call
    code: grpc.StatusCode = call.code()
    details: str = call.details() or ""
    trailing = call.trailing_metadata()
    # A deadline the client set expires on the client, without trailers from the server.
    timed_out = code == grpc.StatusCode.DEADLINE_EXCEEDED and not trailing
    return Outcome(code.name, error_reason(trailing), details, timed_out=timed_out)


@dataclass(frozen=True)
class LogFinding:
    file: str
    kind: str  # "error" (an error/critical line) or "traceback"
    request_id: str
    event: str  # the log line's message (first line of a raw line)
    exception: str  # last line of the traceback, when there is one


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Violation\w*|Exit)\b")


def _exception_line(text: str) -> str:
    """The `module.SomeError: message` line of a traceback (its last line may be a DETAIL)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    named = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (named or lines or [""])[-1][:200]


def scan_logs(log_files: Iterable[Path]) -> list[LogFinding]:
    """Error-level lines and tracebacks in the services' JSON-lines logs.

    A line that is not JSON (something wrote to stderr around the logger, e.g. an
    interpreter traceback) counts as a traceback when it starts one.
    """
    found: list[LogFinding] = []
    for path in log_files:
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                if line.startswith("Traceback"):
                    found.append(LogFinding(path.name, "traceback", "", line, ""))
                continue
            if not isinstance(entry, dict):
                continue
            exception = str(entry.get("exception", ""))
            level = str(entry.get("level", "")).lower()
            if exception or level in ("error", "critical", "fatal"):
                found.append(
                    LogFinding(
                        path.name,
                        "traceback" if "Traceback" in exception else "error",
                        str(entry.get("request_id", "")),
                        str(entry.get("event", ""))[:200],
                        _exception_line(exception),
                    )
                )
    return found
