"""Poison jobs: recording a job given up, listing them, replaying one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.catalog.db import rows
from services.catalog.db.pool import Connection, database_methods, transaction
from services.catalog.db.presets import DEFAULT_PRESETS, PresetDefaults, effective_presets_sql
from services.catalog.lifecycle import may_poison
from services.catalog.model import Job, JobState, PoisonJob, PoisonReason
from services.catalog.ports import KeysetPosition
from services.shared.presets import Preset

__all__ = ["PgPoisonStore", "poison"]

_LIST_POISON_JOBS = f"""
    SELECT {rows.POISON_COLUMNS} FROM poison_jobs
    WHERE tenant_id = $1 AND ($2 OR replayed_at IS NULL)
      AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
    ORDER BY created_at DESC, id DESC
    LIMIT $5
"""
# A fresh retry budget (budget_since) and deliveries counted afresh; the job renders
# the tenant's presets and the asset's focal point as they are now (it is made anew).
_REPLAY_JOB = f"""
    UPDATE jobs j SET state = 'pending', not_before = NULL, last_error = '',
        lease_owner = NULL, lease_expires_at = NULL, finished_at = NULL,
        deliveries = 0, spares = 0, budget_since = clock_timestamp(),
        updated_at = clock_timestamp(),
        presets = {effective_presets_sql("$2", "$3")},
        focal_x = a.focal_x, focal_y = a.focal_y
    FROM assets a
    WHERE j.id = $1 AND j.tenant_id = $2 AND j.state = 'dead'
      AND a.id = j.asset_id AND a.tenant_id = j.tenant_id
"""


async def poison(
    connection: Connection,
    job: asyncpg.Record,
    reason: PoisonReason,
    error: str,
    request: bytes,
) -> PoisonJob | None:
    """Under the job's row lock (`job`: its id, tenant_id, asset_id, state and
    rerender): the open poison job, recorded once. A re-render's failure leaves its
    asset as it is (ready, with the renditions it had)."""
    job_id = job["id"]
    existing = await connection.fetchrow(
        f"SELECT {rows.POISON_COLUMNS} FROM poison_jobs WHERE job_id = $1 AND replayed_at IS NULL",
        job_id,
    )
    if existing is not None:
        return rows.poison_job(existing)
    if not may_poison(JobState(job["state"])):
        return None
    await connection.execute(
        "UPDATE jobs SET state = 'dead', last_error = $2, lease_owner = NULL, "
        "lease_expires_at = NULL, updated_at = clock_timestamp(), "
        "finished_at = clock_timestamp() WHERE id = $1",
        job_id,
        error,
    )
    await connection.execute(
        "UPDATE job_attempts SET finished_at = clock_timestamp(), outcome = 'failed', "
        "error = CASE WHEN error = '' THEN $2 ELSE error END "
        "WHERE job_id = $1 AND finished_at IS NULL",
        job_id,
        error,
    )
    await connection.execute(
        "UPDATE assets SET status = 'failed', updated_at = clock_timestamp() "
        "WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL AND NOT $3",
        job["asset_id"],
        job["tenant_id"],
        job["rerender"],
    )
    row = await connection.fetchrow(
        "INSERT INTO poison_jobs (id, tenant_id, job_id, asset_id, reason, error, request) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {rows.POISON_COLUMNS}",
        uuid.uuid4(),
        job["tenant_id"],
        job_id,
        job["asset_id"],
        reason,
        error,
        request,
    )
    assert row is not None
    return rows.poison_job(row)


@database_methods
class PgPoisonStore:
    def __init__(self, pool: asyncpg.Pool, defaults: Sequence[Preset] = DEFAULT_PRESETS) -> None:
        self._pool = pool
        self._defaults = PresetDefaults(tuple(defaults))

    async def record_poison(
        self, job_id: uuid.UUID, reason: PoisonReason, error: str, request: bytes
    ) -> PoisonJob | None:
        """Job dead, asset failed, one open poison job. None when the job is unknown."""
        async with transaction(self._pool) as connection:
            job = await connection.fetchrow(
                "SELECT id, tenant_id, asset_id, state, rerender FROM jobs "
                "WHERE id = $1 FOR UPDATE",
                job_id,
            )
            if job is None:
                return None
            return await poison(connection, job, reason, error, request)

    async def list_poison_jobs(
        self,
        tenant_id: uuid.UUID,
        include_replayed: bool,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[PoisonJob]:
        after_time, after_id = after if after else (None, None)
        found = await self._pool.fetch(
            _LIST_POISON_JOBS, tenant_id, include_replayed, after_time, after_id, limit
        )
        return [rows.poison_job(r) for r in found]

    async def retry_poison(
        self, tenant_id: uuid.UUID, poison_job_id: uuid.UUID
    ) -> tuple[PoisonJob, Job] | None:
        """Replay a poison job: marked replayed, its job back in the outbox with a fresh
        retry budget, its asset pending again. Replaying twice changes nothing more."""
        async with transaction(self._pool) as connection:
            row = await connection.fetchrow(
                f"SELECT {rows.POISON_COLUMNS} FROM poison_jobs "
                "WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
                poison_job_id,
                tenant_id,
            )
            if row is None:
                return None
            if row["replayed_at"] is None:
                row = await connection.fetchrow(
                    "UPDATE poison_jobs SET replayed_at = clock_timestamp() WHERE id = $1 "
                    f"RETURNING {rows.POISON_COLUMNS}",
                    poison_job_id,
                )
                assert row is not None
                await connection.execute(
                    _REPLAY_JOB, row["job_id"], tenant_id, self._defaults.snapshot
                )
                await connection.execute(
                    "UPDATE assets SET status = 'pending', updated_at = clock_timestamp() "
                    "WHERE id = $1 AND tenant_id = $2 AND status = 'failed'",
                    row["asset_id"],
                    tenant_id,
                )
            job = await connection.fetchrow(
                f"SELECT {rows.JOB_COLUMNS} FROM jobs j WHERE j.id = $1 AND j.tenant_id = $2",
                row["job_id"],
                tenant_id,
            )
            assert job is not None
            return rows.poison_job(row), rows.job(job)
