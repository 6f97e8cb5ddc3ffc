"""A tenant's usage, kept current by the row triggers of migration 0008."""

from __future__ import annotations

import uuid

import asyncpg

from services.catalog.db import rows
from services.catalog.db.pool import database_methods
from services.catalog.model import TenantMetrics

__all__ = ["PgUsageStore"]

# Base totals plus the deltas not yet folded, in one snapshot: exact, and a few dozen
# rows whatever the tenant's size (migration 0008, docs/catalog.md "Usage counters").
_TENANT_METRICS = "SELECT * FROM tenant_usage($1)"


@database_methods
class PgUsageStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def tenant_metrics(self, tenant_id: uuid.UUID) -> TenantMetrics:
        row = await self._pool.fetchrow(_TENANT_METRICS, tenant_id)
        assert row is not None
        return rows.tenant_metrics(row)
