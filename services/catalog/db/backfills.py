"""Re-renders: an asset's focal point (and the job re-rendering it), and backfills, one
re-render job per selected asset made by one INSERT ... SELECT.

A re-render job is an ordinary pending job in the outbox (the relay publishes it at
the tenant's fair share, see jobs.py _FAIR_SHARE), marked `rerender` so that its
failure leaves the asset as it was (poison.py), with its presets and the asset's focal
point fixed when it is made.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.catalog.db import rows
from services.catalog.db.assets import asset_row
from services.catalog.db.pool import database_methods, sql_list, transaction
from services.catalog.db.presets import DEFAULT_PRESETS, PresetDefaults, effective_presets_sql
from services.catalog.lifecycle import NON_TERMINAL, TERMINAL
from services.catalog.model import Backfill, BackfillScope, FocalChange, FocalPoint
from services.shared.presets import Preset

__all__ = ["PgBackfillStore"]

_UNFINISHED = sql_list(NON_TERMINAL)

_SET_FOCAL = """
    UPDATE assets SET focal_x = $3, focal_y = $4, updated_at = clock_timestamp()
    WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
    RETURNING status
"""
_RERENDER_ONE = f"""
    INSERT INTO jobs AS j (id, tenant_id, asset_id, state, presets, focal_x, focal_y, rerender)
    SELECT $3, a.tenant_id, a.id, 'pending', {effective_presets_sql("a.tenant_id", "$4")},
           a.focal_x, a.focal_y, true
    FROM assets a WHERE a.tenant_id = $1 AND a.id = $2
    RETURNING {rows.JOB_COLUMNS}
"""
# The tenant's ready assets the scope selects ($3; $4: the preset, '' for all of them;
# $5: the ids of an asset_ids scope), less those with an unfinished job (that job
# renders them already), each given a pending re-render job of backfill $1.
# missing: no rendition of a wanted preset; outdated: a rendition of a wanted preset
# made from another version of it (or from an unknown one: '').
_BACKFILL = f"""
    WITH current AS (
        SELECT {effective_presets_sql("$2", "$6")} AS presets
    ), wanted AS (
        SELECT d->>'name' AS name, d->>'version' AS version
        FROM current, jsonb_array_elements(current.presets) d
        WHERE $4 = '' OR d->>'name' = $4
    ), inserted AS (
        INSERT INTO jobs (id, tenant_id, asset_id, state, presets, focal_x, focal_y,
                          rerender, backfill_id)
        SELECT gen_random_uuid(), a.tenant_id, a.id, 'pending', (SELECT presets FROM current),
               a.focal_x, a.focal_y, true, $1
        FROM assets a
        WHERE a.tenant_id = $2 AND a.status = 'ready' AND a.deleted_at IS NULL
          AND CASE $3
            WHEN 'all' THEN true
            WHEN 'asset_ids' THEN a.id = ANY($5::uuid[])
            WHEN 'missing' THEN EXISTS (
                SELECT 1 FROM wanted w WHERE NOT EXISTS (
                    SELECT 1 FROM renditions r
                    WHERE r.asset_id = a.id AND r.tenant_id = a.tenant_id AND r.preset = w.name))
            WHEN 'outdated' THEN EXISTS (
                SELECT 1 FROM renditions r JOIN wanted w ON w.name = r.preset
                WHERE r.asset_id = a.id AND r.tenant_id = a.tenant_id
                  AND r.preset_version <> w.version)
          END
          AND NOT EXISTS (
            SELECT 1 FROM jobs u WHERE u.asset_id = a.id AND u.tenant_id = a.tenant_id
              AND u.state IN ({_UNFINISHED}))
        RETURNING 1
    )
    SELECT count(*) FROM inserted
"""
_BACKFILL_BY_ID = f"""
    SELECT b.id, b.tenant_id, b.scope, b.preset, b.total, b.created_at,
           count(j.id) FILTER (WHERE j.state = 'done') AS done,
           count(j.id) FILTER (WHERE j.state = 'dead') AS failed,
           count(j.id) FILTER (WHERE j.state NOT IN ({sql_list(TERMINAL)})) AS unfinished,
           max(j.finished_at) AS last_finished_at
    FROM backfills b LEFT JOIN jobs j ON j.backfill_id = b.id AND j.tenant_id = b.tenant_id
    WHERE b.tenant_id = $1 AND b.id = $2
    GROUP BY b.id
"""


def _backfill(row: asyncpg.Record) -> Backfill:
    return Backfill(
        id=row["id"],
        tenant_id=row["tenant_id"],
        scope=BackfillScope(row["scope"]),
        preset=row["preset"],
        total=row["total"],
        done=row["done"],
        failed=row["failed"],
        unfinished=row["unfinished"],
        created_at=row["created_at"],
        last_finished_at=row["last_finished_at"],
    )


@database_methods
class PgBackfillStore:
    def __init__(self, pool: asyncpg.Pool, defaults: Sequence[Preset] = DEFAULT_PRESETS) -> None:
        self._pool = pool
        self._defaults = PresetDefaults(tuple(defaults))

    async def set_focal_point(
        self,
        tenant_id: uuid.UUID,
        asset_id: uuid.UUID,
        point: FocalPoint | None,
        *,
        rerender: bool,
    ) -> FocalChange | None:
        """Set (None: clear) the point; with `rerender`, a re-render job of the asset
        unless it failed (its original does not render). None: no such live asset."""
        x, y = (point.x, point.y) if point else (None, None)
        async with transaction(self._pool) as connection:
            status = await connection.fetchval(_SET_FOCAL, tenant_id, asset_id, x, y)
            if status is None:
                return None
            job = None
            if rerender and status != "failed":
                row = await connection.fetchrow(
                    _RERENDER_ONE, tenant_id, asset_id, uuid.uuid4(), self._defaults.snapshot
                )
                assert row is not None
                job = rows.job(row)
            return FocalChange(await asset_row(connection, tenant_id, asset_id), job)

    async def start_backfill(
        self,
        tenant_id: uuid.UUID,
        scope: BackfillScope,
        preset: str,
        asset_ids: Sequence[uuid.UUID],
    ) -> Backfill:
        """The backfill with its jobs, made in one statement; backfills of one tenant
        take turns (a lock), so two of them never give an asset two jobs."""
        backfill_id = uuid.uuid4()
        async with transaction(self._pool) as connection:
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"backfill:{tenant_id}"
            )
            await connection.execute(
                "INSERT INTO backfills (id, tenant_id, scope, preset, total) "
                "VALUES ($1, $2, $3, $4, 0)",
                backfill_id,
                tenant_id,
                scope,
                preset,
            )
            total = await connection.fetchval(
                _BACKFILL,
                backfill_id,
                tenant_id,
                scope,
                preset,
                list(asset_ids),
                self._defaults.snapshot,
            )
            await connection.execute(
                "UPDATE backfills SET total = $2 WHERE id = $1", backfill_id, total
            )
            row = await connection.fetchrow(_BACKFILL_BY_ID, tenant_id, backfill_id)
            assert row is not None
            return _backfill(row)

    async def get_backfill(self, tenant_id: uuid.UUID, backfill_id: uuid.UUID) -> Backfill | None:
        row = await self._pool.fetchrow(_BACKFILL_BY_ID, tenant_id, backfill_id)
        return None if row is None else _backfill(row)
