"""Folds the usage deltas the row triggers write into per-tenant totals.

GetTenantMetrics is exact without this worker (tenant_usage() sums the base and every
delta in one snapshot); folding keeps the deltas few, so that read stays a few dozen
rows. Each tenant_usage_compact() call is one statement: readers see a delta either
still as a delta or already in the base. With several catalogs, one compacts at a time
and the others find nothing to do (an advisory lock inside the function).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from prometheus_client import Counter

from services.shared.logs import get_logger

__all__ = ["UsageCompactor"]

log = get_logger(__name__)

FOLDED = Counter(
    "imagepipe_usage_deltas_folded", "Usage counter deltas folded into the per-tenant totals."
)
INTERVAL_SECONDS = 10.0
# Deltas folded per statement; a backlog (after an outage) is folded in several.
BATCH = 50_000


class UsageCompactor:
    """A Worker (services/shared/server.py): runs tenant_usage_compact() every `interval`."""

    def __init__(
        self, pool: asyncpg.Pool, *, interval: float = INTERVAL_SECONDS, batch: int = BATCH
    ) -> None:
        self._pool = pool
        self._interval = interval
        self._batch = batch
        self._stopping = asyncio.Event()

    async def compact(self) -> int:
        """Fold every delta there is now; returns how many were folded."""
        total = 0
        while not self._stopping.is_set():
            folded = int(await self._pool.fetchval("SELECT tenant_usage_compact($1)", self._batch))
            total += folded
            FOLDED.inc(folded)
            if folded < self._batch:
                break
        return total

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                folded = await self.compact()
                if folded:
                    log.debug("usage deltas folded", extra={"deltas": folded})
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                # The deltas wait for the next pass; reads stay exact meanwhile.
                log.warning("usage compaction failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def stop(self, grace: float) -> None:
        self._stopping.set()
