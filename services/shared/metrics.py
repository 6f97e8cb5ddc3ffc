"""Prometheus metrics shared by every service (go-grpc-prometheus names)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

__all__ = ["GRPC_HANDLED", "GRPC_HANDLING_SECONDS", "GRPC_STARTED", "serve_metrics"]

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


def serve_metrics(host: str, port: int) -> None:
    """Expose /metrics over HTTP on a background thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=host)
