"""What every answered request leaves behind: metrics and one JSON access-log line.

Framework-free, so any server adapter records requests the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from prometheus_client import Counter, Histogram

from services.delivery.metrics import REQUEST_SECONDS, REQUESTS, RESPONSE_BYTES
from services.delivery.reply import Route
from services.shared.logs import LineLog, new_request_id

__all__ = ["record_request", "redacted_query", "request_id_from"]

access_log = LineLog("services.delivery.access")

# A caller's id is kept when it looks like one (no control characters, bounded length);
# anything else gets a fresh one rather than landing in every log line it touches.
_REQUEST_ID = re.compile(r"^[!-~]{1,128}$")


def request_id_from(header: str | None) -> str:
    return header if header is not None and _REQUEST_ID.match(header) else new_request_id()


def redacted_query(query: Mapping[str, str]) -> str:
    """The query as logged: a signature is a bearer credential for its URL, so `s` is
    masked."""
    return "&".join(f"{name}={'***' if name == 's' else value}" for name, value in query.items())


def record_request(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    status: int,
    route: Route,
    body_bytes: int,
    seconds: float,
) -> None:
    requests, sent, latency = _series(route, status)
    requests.inc()
    sent.inc(body_bytes)
    latency.observe(seconds)
    access_log.info(
        f"{method} {path} {status}",
        {
            "method": method,
            "path": path,
            "query": redacted_query(query),
            "status": status,
            "route": route,
            "bytes": body_bytes,
            "duration_ms": round(seconds * 1000, 1),
        },
    )


@cache
def _series(route: Route, status: int) -> tuple[Counter, Counter, Histogram]:
    """A request's time series, looked up once per route and status (both bounded sets):
    `labels()` takes a lock and builds a key on every call."""
    return (
        REQUESTS.labels(route, str(status)),
        RESPONSE_BYTES.labels(route),
        REQUEST_SECONDS.labels(route),
    )
