"""/readyz: ready while catalog and S3 answer, probed every health interval.

The probing is the shared HealthMonitor's, the one every gRPC service's health follows
(same checks, same timeouts, same log line when a dependency goes or comes back); only
the answer is read from here instead of from grpc.health.v1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from grpc_health.v1 import health

from services.shared.server import Check, HealthMonitor

__all__ = ["DependencyReadiness"]


class DependencyReadiness:
    """A Readiness (ports.py) from dependency checks; False once draining."""

    def __init__(self, checks: Mapping[str, Check]) -> None:
        self._monitor = HealthMonitor(health.aio.HealthServicer(), [], checks)
        self._serving = False
        self._draining = False

    @property
    def ready(self) -> bool:
        return self._serving and not self._draining

    async def probe(self, timeout: float) -> bool:
        self._serving = await self._monitor.probe(timeout)
        return self.ready

    async def run(self, interval: float) -> None:
        while True:
            await self.probe(timeout=max(interval, 1.0))
            await asyncio.sleep(interval)

    def drain(self) -> None:
        """Report not ready from now on: load balancers stop sending new requests."""
        self._draining = True
