"""Prometheus metrics shared by every service (go-grpc-prometheus names)."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Histogram, start_http_server

__all__ = [
    "EVENT_LOOP_LAG",
    "GRPC_HANDLED",
    "GRPC_HANDLING_SECONDS",
    "GRPC_STARTED",
    "serve_metrics",
    "watch_event_loop_lag",
]

GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time the server took to handle an RPC until it finished.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

EVENT_LOOP_LAG = Histogram(
    "imagepipe_event_loop_lag_seconds",
    "How late the event loop woke a timer: time the loop spent blocked by one task.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
# Often enough to catch a blocking call of a few tens of ms, cheap enough to leave on.
LAG_PROBE_INTERVAL = 0.05


async def watch_event_loop_lag(interval: float = LAG_PROBE_INTERVAL) -> None:
    """Observe, forever, how much later than asked the loop resumes a sleep."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        EVENT_LOOP_LAG.observe(max(0.0, loop.time() - started - interval))


def serve_metrics(host: str, port: int) -> None:
    """Expose /metrics over HTTP on a background thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=host)
