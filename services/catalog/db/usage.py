"""A tenant's usage, counted from its rows."""

from __future__ import annotations

import uuid

import asyncpg

from services.catalog.db import rows
from services.catalog.db.pool import database_methods
from services.catalog.model import TenantMetrics

__all__ = ["PgUsageStore"]

_TENANT_METRICS = """
    WITH live AS (
        SELECT size_bytes, upload_count FROM assets
        WHERE tenant_id = $1 AND deleted_at IS NULL
    )
    SELECT
      (SELECT count(*) FROM live) AS asset_count,
      (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb) FROM (
          SELECT status, count(*) AS n FROM assets WHERE tenant_id = $1 GROUP BY status
       ) s) AS assets_by_status,
      (SELECT count(*) FROM renditions r JOIN assets a
          ON a.id = r.asset_id AND a.tenant_id = r.tenant_id
        WHERE r.tenant_id = $1 AND a.deleted_at IS NULL) AS rendition_count,
      -- Each original object once: a key outlives its deleted asset until Purge.
      (SELECT coalesce(sum(size_bytes), 0)::bigint FROM (
          SELECT DISTINCT ON (original_key) size_bytes FROM assets WHERE tenant_id = $1
       ) o) AS original_bytes,
      (SELECT coalesce(sum(size_bytes), 0)::bigint FROM renditions WHERE tenant_id = $1)
        AS rendition_bytes,
      (SELECT coalesce(sum(size_bytes * upload_count), 0)::bigint FROM live)
        AS logical_bytes,
      (SELECT coalesce(sum(size_bytes), 0)::bigint FROM live) AS physical_bytes,
      (SELECT coalesce(sum(upload_count - 1), 0)::bigint FROM live) AS deduplicated_uploads,
      (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb) FROM (
          SELECT state, count(*) AS n FROM jobs WHERE tenant_id = $1 GROUP BY state
       ) j) AS jobs_by_state,
      (SELECT count(*) FROM poison_jobs WHERE tenant_id = $1 AND replayed_at IS NULL)
        AS poison_job_count,
      (SELECT coalesce(jsonb_object_agg(format, jsonb_build_array(n, bytes::bigint)),
                       '{}'::jsonb)
         FROM (SELECT format, count(*) AS n, sum(size_bytes) AS bytes
               FROM renditions WHERE tenant_id = $1 GROUP BY format) f)
        AS renditions_by_format
"""


@database_methods
class PgUsageStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def tenant_metrics(self, tenant_id: uuid.UUID) -> TenantMetrics:
        row = await self._pool.fetchrow(_TENANT_METRICS, tenant_id)
        assert row is not None
        return rows.tenant_metrics(row)
