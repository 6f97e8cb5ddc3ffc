"""Render jobs: the outbox the relay publishes from, leases, attempts fenced by their
number, and settlement (completion, failure, spares at the delivery limit).

Job state changes are guarded in the WHERE clause (a finished job never runs again);
the states named in lists come from lifecycle.py.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg

from services.catalog.db import rows
from services.catalog.db.poison import poison
from services.catalog.db.pool import Connection, database_methods, sql_list, transaction
from services.catalog.lifecycle import (
    ABANDONED_AFTER,
    CLAIMABLE,
    IN_FLIGHT,
    STUCK_CANDIDATES,
    TERMINAL,
    may_complete,
    may_spare,
)
from services.catalog.model import (
    Attempt,
    AttemptStart,
    Claimed,
    Job,
    JobState,
    NewRendition,
    PoisonReason,
    RenderRequest,
)
from services.catalog.ports import KeysetPosition
from services.shared.logs import get_logger
from services.shared.retry_policy import DEFAULT_POLICY, RetryPolicy

__all__ = ["PgJobStore"]

log = get_logger(__name__)

_TERMINAL = sql_list(TERMINAL)
_JOB_BY_ID = f"SELECT {rows.JOB_COLUMNS} FROM jobs j WHERE j.id = $1"
_REQUESTS_BY_IDS = (
    f"SELECT {rows.RENDER_REQUEST_COLUMNS} FROM jobs j JOIN assets a "
    "ON a.id = j.asset_id AND a.tenant_id = j.tenant_id "
    "WHERE j.id = ANY($1::uuid[]) ORDER BY j.created_at"
)
_LIST_JOBS = f"""
    SELECT {rows.JOB_COLUMNS} FROM jobs j
    WHERE j.tenant_id = $1
      AND ($2::text IS NULL OR j.state = $2)
      AND ($3::uuid IS NULL OR j.asset_id = $3)
      AND ($4::timestamptz IS NULL OR (j.created_at, j.id) < ($4, $5::uuid))
    ORDER BY j.created_at DESC, j.id DESC
    LIMIT $6
"""
# The confirm is recorded whatever happened since: a fast renderer may have finished
# the job before this runs. Only a pending job changes state.
_MARK_PUBLISHED = """
    UPDATE jobs SET published_at = coalesce(published_at, clock_timestamp()),
        state = CASE WHEN state = 'pending' THEN 'queued' ELSE state END,
        lease_owner = CASE WHEN state = 'pending' THEN NULL ELSE lease_owner END,
        lease_expires_at = CASE WHEN state = 'pending' THEN NULL ELSE lease_expires_at END,
        updated_at = clock_timestamp()
    WHERE id = $1
"""
# Fair share: a tenant with `tenant_max_in_flight` jobs already on the broker gets no
# more until one finishes, and tenants take turns (every tenant's oldest job, then
# every tenant's second, ...), so one tenant's backlog of thousands waits here, not in
# the queue ahead of everyone else.
_FAIR_SHARE = f"""
    WITH in_flight AS (
        SELECT tenant_id, count(*) AS n FROM jobs
        WHERE state IN ({sql_list(IN_FLIGHT)})
        GROUP BY tenant_id
    ), ready AS (
        SELECT id, tenant_id, coalesce(not_before, created_at) AS due,
               row_number() OVER (PARTITION BY tenant_id
                                  ORDER BY coalesce(not_before, created_at), id) AS turn
        FROM jobs
        WHERE state = 'pending' AND created_at <= clock_timestamp() - $1::interval
          AND coalesce(not_before, '-infinity') <= clock_timestamp()
          AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
    )
    SELECT r.id FROM ready r LEFT JOIN in_flight f USING (tenant_id)
    WHERE $3 = 0 OR r.turn <= $3 - coalesce(f.n, 0)
    ORDER BY r.turn, r.due
    LIMIT $2
"""
# Stuck jobs already count as in flight: republishing them takes no turn.
_UNPUBLISHED = f"""
    SELECT id FROM jobs
    WHERE (id = ANY($1::uuid[]) AND state = 'pending')
       OR (state = 'running' AND lease_expires_at < clock_timestamp() - $3::interval)
       OR ($4::interval IS NOT NULL AND state IN ({sql_list(STUCK_CANDIDATES)})
           AND updated_at < clock_timestamp() - $4::interval
           AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp()))
    ORDER BY coalesce(not_before, created_at)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
"""
# Tenants take turns, as in _FAIR_SHARE: each tenant's oldest runnable job first, then
# each one's second, ... so a tenant's backfill never holds back another's uploads while
# renderers work without the broker. Candidates are a few claims' worth, so renderers
# claiming at once still find rows the others have not locked.
_RENDERABLE = f"""
    WITH runnable AS (
        SELECT id, created_at,
               row_number() OVER (PARTITION BY tenant_id ORDER BY created_at, id) AS turn
        FROM jobs
        WHERE state IN ({sql_list(CLAIMABLE)})
          AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
          AND coalesce(not_before, '-infinity') <= clock_timestamp()
          -- a retrying job's next attempt waits in a delay queue the broker
          -- cannot deliver now: it is due once the longest backoff has passed
          AND (state <> 'retrying' OR updated_at < clock_timestamp() - $2::interval)
    ), candidates AS (
        SELECT id, turn, created_at FROM runnable ORDER BY turn, created_at LIMIT $1 * 4
    )
    SELECT j.id, j.deliveries > $3 AS over_limit
    FROM jobs j JOIN candidates c ON c.id = j.id
    ORDER BY c.turn, c.created_at
    LIMIT $1
    FOR UPDATE OF j SKIP LOCKED
"""
_INTERRUPTED = f"""
    SELECT j.spares, (SELECT count(*) FROM job_attempts t WHERE t.job_id = j.id
        AND t.finished_at IS NULL AND t.started_at >= j.budget_since) AS interrupted
    FROM jobs j WHERE j.id = $1 AND j.state NOT IN ({_TERMINAL}) FOR UPDATE
"""
_FAILED_ATTEMPTS = f"""
    SELECT {rows.ATTEMPT_COLUMNS}
    FROM job_attempts t JOIN jobs j ON j.id = t.job_id
    WHERE t.job_id = ANY($1::uuid[]) AND t.outcome = 'failed'
      AND t.started_at >= j.budget_since
    ORDER BY t.job_id, t.attempt
"""
_START = f"""
    UPDATE jobs j SET state = 'running', attempts = attempts + 1,
        updated_at = clock_timestamp(), lease_owner = $2,
        lease_expires_at = clock_timestamp() + $3::interval, not_before = NULL
    WHERE j.id = $1 AND j.state NOT IN ({_TERMINAL})
    RETURNING {rows.JOB_COLUMNS}
"""
_UPSERT_RENDITION = """
    INSERT INTO renditions (asset_id, tenant_id, preset, format, object_key, width,
        height, size_bytes, quality, psnr_db, psnr_infinite, ssim, hash_distance,
        job_id, min_ssim, content_sha256, preset_version)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
    ON CONFLICT (asset_id, preset, format) DO UPDATE SET
        object_key = EXCLUDED.object_key, width = EXCLUDED.width,
        height = EXCLUDED.height, size_bytes = EXCLUDED.size_bytes,
        quality = EXCLUDED.quality, psnr_db = EXCLUDED.psnr_db,
        psnr_infinite = EXCLUDED.psnr_infinite, ssim = EXCLUDED.ssim,
        hash_distance = EXCLUDED.hash_distance, job_id = EXCLUDED.job_id,
        min_ssim = EXCLUDED.min_ssim, content_sha256 = EXCLUDED.content_sha256,
        preset_version = EXCLUDED.preset_version, updated_at = clock_timestamp()
"""
# A preset this completion made, in formats it no longer has: its other formats' rows
# go (their objects are orphans for Purge), so a re-render after a change of formats
# serves only what the preset now makes. Presets it did not make are left alone.
_SUPERSEDED = """
    DELETE FROM renditions
    WHERE asset_id = $1 AND tenant_id = $2 AND preset = ANY($3::text[])
      AND NOT (preset || '/' || format = ANY($4::text[]))
"""
_DONE = f"""
    UPDATE jobs j SET state = 'done', last_error = '', lease_owner = NULL,
        lease_expires_at = NULL, updated_at = clock_timestamp(),
        finished_at = coalesce(finished_at, clock_timestamp())
    WHERE j.id = $1 RETURNING {rows.JOB_COLUMNS}
"""
# The transient failure right before this attempt, if that is the job's last attempt.
_PREVIOUS_TRANSIENT = """
    SELECT attempt, repeats, finished_at, first_finished_at FROM job_attempts
    WHERE job_id = $1 AND attempt < $2 AND outcome = 'failed' AND transient
      AND attempt = (SELECT max(attempt) FROM job_attempts WHERE job_id = $1 AND attempt < $2)
"""
_CLOSE_FAILED = """
    UPDATE job_attempts SET finished_at = coalesce(finished_at, clock_timestamp()),
        outcome = 'failed', error = $3, transient = $4, repeats = $5, first_finished_at = $6
    WHERE job_id = $1 AND attempt = $2
"""
# Back to the outbox (`retry_after`: not before then) or retrying (a delay queue holds
# its message); the failure settles its deliveries.
_RETRY = f"""
    UPDATE jobs SET
        state = CASE WHEN $3::interval IS NULL THEN 'retrying' ELSE 'pending' END,
        not_before = clock_timestamp() + $3::interval,
        last_error = $2, lease_owner = NULL, lease_expires_at = NULL,
        deliveries = 0, updated_at = clock_timestamp()
    WHERE id = $1 AND state NOT IN ({_TERMINAL}) AND attempts = $4
    RETURNING id, tenant_id, asset_id, state, rerender
"""
_PERMANENT_FAILURES = """
    SELECT count(*) FROM job_attempts t JOIN jobs j ON j.id = t.job_id
    WHERE t.job_id = $1 AND t.outcome = 'failed' AND NOT t.transient
      AND t.started_at >= j.budget_since
"""


async def _job(connection: Connection, job_id: uuid.UUID) -> Job | None:
    row = await connection.fetchrow(_JOB_BY_ID, job_id)
    return None if row is None else rows.job(row)


async def _request_rows(connection: Connection, job_ids: list[uuid.UUID]) -> list[RenderRequest]:
    if not job_ids:
        return []
    return [rows.render_request(r) for r in await connection.fetch(_REQUESTS_BY_IDS, job_ids)]


async def _lease(
    connection: Connection, job_ids: list[uuid.UUID], lease: dt.timedelta, owner: str
) -> list[RenderRequest]:
    if not job_ids:
        return []
    await connection.execute(
        "UPDATE jobs SET lease_owner = $2, lease_expires_at = clock_timestamp() + $3::interval "
        "WHERE id = ANY($1::uuid[])",
        job_ids,
        owner,
        lease,
    )
    return await _request_rows(connection, job_ids)


@database_methods
class PgJobStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        tenant_max_in_flight: int = 0,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self._pool = pool
        self._policy = policy
        # Render jobs one tenant may have on the broker at once (0: no limit).
        self._tenant_max_in_flight = tenant_max_in_flight

    async def get_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
        row = await self._pool.fetchrow(
            f"SELECT {rows.JOB_COLUMNS} FROM jobs j WHERE j.tenant_id = $1 AND j.id = $2",
            tenant_id,
            job_id,
        )
        return None if row is None else rows.job(row)

    async def list_attempts(
        self, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
    ) -> list[Attempt]:
        found = await self._pool.fetch(
            f"SELECT {rows.ATTEMPT_COLUMNS} FROM job_attempts t JOIN jobs j ON j.id = t.job_id "
            "WHERE j.tenant_id = $1 AND t.job_id = ANY($2::uuid[]) ORDER BY t.job_id, t.attempt",
            tenant_id,
            list(job_ids),
        )
        return [rows.attempt(r) for r in found]

    async def list_jobs(
        self,
        tenant_id: uuid.UUID,
        state: JobState | None,
        asset_id: uuid.UUID | None,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[Job]:
        after_time, after_id = after if after else (None, None)
        found = await self._pool.fetch(
            _LIST_JOBS, tenant_id, state, asset_id, after_time, after_id, limit
        )
        return [rows.job(r) for r in found]

    async def render_request_row(self, job_id: uuid.UUID) -> RenderRequest | None:
        async with self._pool.acquire() as connection:
            found = await _request_rows(connection, [job_id])
        return found[0] if found else None

    async def mark_job_published(self, job_id: uuid.UUID) -> Job | None:
        """Record the broker's confirm; pending -> queued, other states stay."""
        async with transaction(self._pool) as connection:
            await connection.execute(_MARK_PUBLISHED, job_id)
            return await _job(connection, job_id)

    async def claim_unpublished(
        self,
        *,
        limit: int,
        lease: dt.timedelta,
        min_age: dt.timedelta,
        owner: str,
        stuck_after: dt.timedelta | None = None,
    ) -> list[RenderRequest]:
        """Lease jobs for a relay to publish (one relay per job at a time).

        Pending jobs the broker never confirmed (once their not-before time has come),
        and jobs whose attempt was abandoned: running, with a lease that expired
        ABANDONED_AFTER ago, so no renderer holds them any more. With `stuck_after`
        also queued or retrying jobs that made no progress for that long: their
        message is presumed lost (a purged or re-declared work queue, a lost broker
        volume, a retry whose delay-queue publish never happened). Publishing one
        again is harmless: a finished job is skipped, and attempts are fenced.
        """
        async with transaction(self._pool) as connection:
            candidates = await connection.fetch(
                _FAIR_SHARE, min_age, limit, self._tenant_max_in_flight
            )
            found = await connection.fetch(
                _UNPUBLISHED, [r["id"] for r in candidates], limit, ABANDONED_AFTER, stuck_after
            )
            job_ids = [r["id"] for r in found]
            # An abandoned attempt goes back to the outbox, like a job never published.
            await connection.execute(
                "UPDATE jobs SET state = 'pending', updated_at = clock_timestamp() "
                "WHERE id = ANY($1::uuid[]) AND state = 'running'",
                job_ids,
            )
            return await _lease(connection, job_ids, lease, owner)

    async def claim_for_render(
        self, *, limit: int, lease: dt.timedelta, owner: str, delivery_limit: int
    ) -> Claimed:
        """Lease runnable jobs for a renderer working without the broker.

        Each claim counts as a delivery until an attempt of the job is settled (its
        failure recorded), as the work queue counts redeliveries: a job whose original
        kills its renderer is claimed again after every lease expiry, and after
        `delivery_limit` such claims it is over the limit and not claimed again.
        """
        async with transaction(self._pool) as connection:
            found = await connection.fetch(
                _RENDERABLE, limit, self._policy.longest_backoff, delivery_limit
            )
            over = [r["id"] for r in found if r["over_limit"]]
            claimed = [r["id"] for r in found if not r["over_limit"]]
            if claimed:
                await connection.execute(
                    "UPDATE jobs SET deliveries = deliveries + 1 WHERE id = ANY($1::uuid[])",
                    claimed,
                )
            return Claimed(
                jobs=await _lease(connection, claimed, lease, owner),
                over_limit=await _request_rows(connection, over),
            )

    async def spare_bystander(self, job_id: uuid.UUID, delivery_limit: int) -> bool:
        """A job at the delivery limit that lifecycle.may_spare spares: count a spare
        and its deliveries afresh, True (the caller then delivers it again, as a job
        to run alone). False when it is poison after all, or is finished or unknown."""
        async with transaction(self._pool) as connection:
            job = await connection.fetchrow(_INTERRUPTED, job_id)
            if job is None or not may_spare(job["spares"], int(job["interrupted"]), delivery_limit):
                return False
            # The lease stays: should the message published again be lost, the relay
            # still finds an abandoned attempt once it expires.
            await connection.execute(
                "UPDATE jobs SET spares = spares + 1, deliveries = 0, "
                "updated_at = clock_timestamp() WHERE id = $1",
                job_id,
            )
            log.warning(
                "job at the delivery limit spared: %d of its attempts were interrupted, "
                "too few for it to be what killed its renderers; delivering it again",
                job["interrupted"],
                extra={"job_id": str(job_id), "spares": job["spares"] + 1},
            )
            return True

    async def failed_attempts(self, job_ids: Sequence[uuid.UUID]) -> list[Attempt]:
        """Failed attempts of these jobs since their budget was last renewed."""
        return [rows.attempt(r) for r in await self._pool.fetch(_FAILED_ATTEMPTS, list(job_ids))]

    async def start_attempt(
        self, job_id: uuid.UUID, worker: str, lease: dt.timedelta
    ) -> AttemptStart:
        """Open the job's next attempt unless it is finished.

        The attempt number is a fencing token: only the newest attempt may complete
        the job or record its failure, so two attempts that overlap (a redelivery
        while a stale one still runs) never both commit.
        """
        async with transaction(self._pool) as connection:
            row = await connection.fetchrow(_START, job_id, worker, lease)
            if row is None:
                return AttemptStart(await _job(connection, job_id), 0)
            job = rows.job(row)
            await connection.execute(
                "INSERT INTO job_attempts (job_id, attempt, worker) VALUES ($1, $2, $3) "
                "ON CONFLICT (job_id, attempt) DO NOTHING",
                job_id,
                job.attempts,
                worker,
            )
            await connection.execute(
                "UPDATE assets SET status = 'processing', updated_at = clock_timestamp() "
                "WHERE id = $1 AND tenant_id = $2 AND status = 'pending'",
                job.asset_id,
                job.tenant_id,
            )
            return AttemptStart(job, job.attempts)

    async def complete_job(
        self,
        job_id: uuid.UUID,
        attempt: int,
        renditions: Sequence[NewRendition],
        thumbhash: str | None,
        dominant_color: str | None,
    ) -> Job | None:
        """Record renditions, job done, asset ready: all or nothing.

        None when the job is dead or `attempt` is not its newest attempt (stale).
        """
        async with transaction(self._pool) as connection:
            job = await connection.fetchrow(
                "SELECT id, tenant_id, asset_id, state, attempts FROM jobs "
                "WHERE id = $1 FOR UPDATE",
                job_id,
            )
            if job is None or not may_complete(JobState(job["state"]), job["attempts"], attempt):
                return None
            asset_id, tenant_id = job["asset_id"], job["tenant_id"]
            for r in renditions:
                await connection.execute(
                    _UPSERT_RENDITION,
                    *(asset_id, tenant_id, r.preset, r.format, r.object_key, r.width, r.height),
                    *(r.size_bytes, r.quality, r.psnr_db, r.psnr_infinite, r.ssim),
                    *(r.hash_distance, job_id, r.min_ssim, r.content_sha256, r.preset_version),
                )
            await connection.execute(
                _SUPERSEDED,
                asset_id,
                tenant_id,
                list({r.preset for r in renditions}),
                [f"{r.preset}/{r.format}" for r in renditions],
            )
            await connection.execute(
                "UPDATE job_attempts SET finished_at = coalesce(finished_at, clock_timestamp()), "
                "outcome = 'succeeded', error = '' WHERE job_id = $1 AND attempt = $2",
                job_id,
                attempt,
            )
            await connection.execute(
                "UPDATE assets SET status = 'ready', thumbhash = coalesce($3, thumbhash), "
                "dominant_color = coalesce($4, dominant_color), updated_at = clock_timestamp() "
                "WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
                asset_id,
                tenant_id,
                thumbhash,
                dominant_color,
            )
            done = await connection.fetchrow(_DONE, job_id)
            return None if done is None else rows.job(done)

    async def fail_attempt(
        self,
        job_id: uuid.UUID,
        attempt: int,
        error: str,
        *,
        transient: bool,
        retry_after: dt.timedelta | None,
        poison_request: bytes = b"",
    ) -> Job | None:
        """Close a failed attempt. With `retry_after` the job goes back to the outbox.

        The failure settles the job's deliveries. A transient failure right after
        another is folded into that one's row (a count and the first end time), so
        a long outage leaves one row, not one per retry. A failure that spends the
        retry budget makes the job poison here, in the same transaction, with
        `poison_request` as its replayable request: the job is given up whether or
        not the renderer's own give-up call reaches the catalog afterwards.
        """
        async with transaction(self._pool) as connection:
            await self._close_failed(connection, job_id, attempt, error, transient=transient)
            job = await connection.fetchrow(_RETRY, job_id, error, retry_after, attempt)
            if job is not None and not transient:
                failures = await connection.fetchval(_PERMANENT_FAILURES, job_id)
                if self._policy.spent(int(failures or 0)):
                    reason = PoisonReason.RETRIES_EXHAUSTED
                    await poison(connection, job, reason, error, poison_request)
            return await _job(connection, job_id)

    @staticmethod
    async def _close_failed(
        connection: Connection, job_id: uuid.UUID, attempt: int, error: str, *, transient: bool
    ) -> None:
        """The attempt's row closed as failed; a transient failure right after another
        takes over that one's row (its count and first end time)."""
        previous = await connection.fetchrow(_PREVIOUS_TRANSIENT, job_id, attempt)
        folded = previous if transient else None
        await connection.execute(
            _CLOSE_FAILED,
            job_id,
            attempt,
            error,
            transient,
            folded["repeats"] + 1 if folded is not None else 1,
            (folded["first_finished_at"] or folded["finished_at"]) if folded is not None else None,
        )
        if folded is not None:
            await connection.execute(
                "DELETE FROM job_attempts WHERE job_id = $1 AND attempt = $2",
                job_id,
                folded["attempt"],
            )
