"""The catalog's PostgreSQL: the only package that talks to it (or imports asyncpg).

Every statement that touches tenant data filters on tenant_id, even where the id
alone would do, so that a bug elsewhere cannot leak one tenant's rows to another.
Rows become model objects here (rows.py) and never leave as rows; every store
follows one policy on database failures (pool.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.catalog.db.assets import PgAssetStore
from services.catalog.db.backfills import PgBackfillStore
from services.catalog.db.jobs import PgJobStore
from services.catalog.db.poison import PgPoisonStore
from services.catalog.db.pool import create_pool, database_methods
from services.catalog.db.presets import DEFAULT_PRESETS, PgPresetStore
from services.catalog.db.purge import PgContentLock, PgPurgeStore
from services.catalog.db.tenants import PgTenantStore
from services.catalog.db.usage import PgUsageStore
from services.shared.presets import Preset
from services.shared.retry_policy import DEFAULT_POLICY, RetryPolicy

__all__ = [
    "CatalogDatabase",
    "PgAssetStore",
    "PgBackfillStore",
    "PgContentLock",
    "PgJobStore",
    "PgPoisonStore",
    "PgPresetStore",
    "PgPurgeStore",
    "PgTenantStore",
    "PgUsageStore",
    "create_pool",
]


@database_methods
class CatalogDatabase:
    """Every store on one pool (ports.Stores); closing the pool is the owner's."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        tenant_max_in_flight: int = 0,
        policy: RetryPolicy = DEFAULT_POLICY,
        presets: Sequence[Preset] = DEFAULT_PRESETS,
    ) -> None:
        # `presets`: the service defaults (IMAGEPIPE_PRESETS), what a tenant without
        # presets of its own renders.
        self.pool = pool
        self.tenants = PgTenantStore(pool)
        self.assets = PgAssetStore(
            pool, tenant_max_in_flight=tenant_max_in_flight, defaults=presets
        )
        self.jobs = PgJobStore(pool, tenant_max_in_flight=tenant_max_in_flight, policy=policy)
        self.poison = PgPoisonStore(pool, presets)
        self.purge = PgPurgeStore(pool, presets)
        self.usage = PgUsageStore(pool)
        self.presets = PgPresetStore(pool, presets)
        self.backfills = PgBackfillStore(pool, presets)

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")
