"""Prometheus metrics of the delivery service (on its own metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["CACHE", "REQUESTS", "REQUEST_SECONDS", "RESPONSE_BYTES"]

REQUESTS = Counter(
    "imagepipe_delivery_requests_total",
    "HTTP requests answered, by route (negotiated, format, health, other) and status.",
    ["route", "status"],
)
RESPONSE_BYTES = Counter(
    "imagepipe_delivery_response_bytes_total",
    "Body bytes sent, by route.",
    ["route"],
)
REQUEST_SECONDS = Histogram(
    "imagepipe_delivery_request_seconds",
    "Time from a request's arrival to the end of its body, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CACHE = Counter(
    "imagepipe_delivery_cache_total",
    "Cache lookups: lookup (catalog answers) or object (rendition bytes), hit or miss. "
    "A request that joins a load already under way counts as a hit: it costs no call.",
    ["cache", "result"],
)
