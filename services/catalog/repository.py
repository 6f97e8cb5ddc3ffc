"""All of the catalog's SQL. Nothing else in imagepipe talks to PostgreSQL.

Every statement that touches tenant data filters on tenant_id, even where the id
alone would do, so that a bug elsewhere cannot leak one tenant's rows to another.
Job state changes are guarded in the WHERE clause (a finished job never runs again).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeAlias, TypeVar

import asyncpg

from services.catalog.lifecycle import (
    CLAIMABLE,
    IN_FLIGHT,
    MAX_SPARES,
    STUCK_CANDIDATES,
    TERMINAL,
    crashed_it,
    sql_list,
)
from services.catalog.similarity import probes
from services.shared.deadlines import time_remaining
from services.shared.errors import DeadlineExceeded, ImagepipeError, InvalidArgument, Unavailable
from services.shared.logs import get_logger
from services.shared.retry_policy import DEFAULT_POLICY, RetryPolicy

__all__ = [
    "AssetRegistration",
    "AttemptStart",
    "CatalogRepository",
    "Claimed",
    "ContentLock",
    "NewAsset",
    "RenditionRow",
    "create_pool",
]

log = get_logger(__name__)


def unsigned_hash(value: int) -> int:
    """The signed bigint PostgreSQL stores, back to the uint64 it holds."""
    return value + (1 << 64) if value < 0 else value


_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C")

Record = asyncpg.Record
# A running job whose lease expired this long ago has lost its renderer.
ABANDONED_AFTER = dt.timedelta(seconds=30)
# What a pool hands out; it behaves as a Connection.
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

_TERMINAL = sql_list(TERMINAL)
_IN_FLIGHT = sql_list(IN_FLIGHT)
_ASSET_COLUMNS = """
    a.id, a.tenant_id, a.status, a.content_hash, a.perceptual_hash, a.filename,
    a.declared_content_type, a.content_type, a.format, a.width, a.height, a.size_bytes,
    a.frame_count, a.labels, a.original_key, a.upload_count, a.thumbhash, a.dominant_color,
    a.created_at, a.updated_at, a.deleted_at,
    (SELECT j.id FROM jobs j WHERE j.asset_id = a.id AND j.tenant_id = a.tenant_id
      ORDER BY j.created_at DESC LIMIT 1) AS job_id
"""
_JOB_COLUMNS = """
    j.id, j.tenant_id, j.asset_id, j.state, j.attempts, j.last_error, j.request_id,
    j.created_at, j.updated_at, j.published_at, j.finished_at
"""
_ATTEMPT_COLUMNS = """
    t.job_id, t.attempt, t.worker, t.started_at, t.finished_at, t.error, t.transient,
    t.repeats, t.first_finished_at
"""
# `interrupted`: an earlier delivery was never settled (an attempt opened and never
# finished, a claim before this one that opened none, or a spare at the delivery
# limit): the renderer runs it alone.
_RENDER_REQUEST_COLUMNS = """
    j.id AS job_id, j.tenant_id, j.asset_id, j.request_id, j.created_at,
    a.original_key, a.content_hash, a.format,
    (j.deliveries > 1 OR j.spares > 0 OR EXISTS (SELECT 1 FROM job_attempts t
        WHERE t.job_id = j.id AND t.finished_at IS NULL AND t.started_at >= j.budget_since))
        AS interrupted
"""


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


async def create_pool(dsn: str, size: int) -> asyncpg.Pool:
    """A pool that opens connections on demand, so catalog starts while PG is down."""
    return await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=size,
        init=_init_connection,
        command_timeout=30,
        max_inactive_connection_lifetime=60,
    )


@dataclass(frozen=True)
class NewAsset:
    tenant_id: str
    content_hash: str
    perceptual_hash: int  # signed 64-bit
    filename: str
    declared_content_type: str
    content_type: str
    format: str
    width: int
    height: int
    size_bytes: int
    frame_count: int
    labels: dict[str, str]
    original_key: str
    request_id: str


@dataclass(frozen=True)
class AssetRegistration:
    asset: Record
    created: bool
    job: Record | None
    deferred: bool = False  # the tenant is at its in-flight limit: the relay publishes it


@dataclass(frozen=True)
class Claimed:
    jobs: list[Record]  # leased to the caller (render request columns)
    # Jobs past the delivery limit (render request columns): the caller records
    # each as poison (delivery_limit) instead of running it.
    over_limit: list[Record]


@dataclass(frozen=True)
class AttemptStart:
    job: Record | None
    attempt: int  # 0 when no attempt was opened


class ContentLock:
    """Checks and deletions on one original key, under its content lock."""

    def __init__(self, connection: Connection, tenant_id: uuid.UUID, key: str) -> None:
        self._connection = connection
        self._tenant_id = tenant_id
        self._key = key

    async def users(self, excluding: uuid.UUID | None = None) -> int:
        """Asset rows (live or deleted) whose original is this key."""
        count = await self._connection.fetchval(
            "SELECT count(*) FROM assets WHERE tenant_id = $1 AND original_key = $2 "
            "AND id IS DISTINCT FROM $3",
            self._tenant_id,
            self._key,
            excluding,
        )
        return int(count or 0)

    async def still_deleted(self, asset_id: uuid.UUID) -> bool:
        return bool(
            await self._connection.fetchval(
                "SELECT 1 FROM assets WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL",
                self._tenant_id,
                asset_id,
            )
        )

    async def remove_asset_rows(self, asset_id: uuid.UUID) -> None:
        """Remove a deleted asset and everything hanging off it."""
        # CompleteJob locks the job row too: a render finishing meanwhile waits, then
        # finds no job and is discarded (its objects are orphans for the next purge).
        await self._connection.execute(
            "SELECT id FROM jobs WHERE tenant_id = $1 AND asset_id = $2 FOR UPDATE",
            self._tenant_id,
            asset_id,
        )
        for statement in (
            "DELETE FROM poison_jobs WHERE tenant_id = $1 AND asset_id = $2",
            "DELETE FROM renditions WHERE tenant_id = $1 AND asset_id = $2",
            "DELETE FROM jobs WHERE tenant_id = $1 AND asset_id = $2",
            "DELETE FROM assets WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL",
        ):
            await self._connection.execute(statement, self._tenant_id, asset_id)


@dataclass(frozen=True)
class RenditionRow:
    preset: str
    format: str
    object_key: str
    width: int
    height: int
    size_bytes: int
    quality: int
    psnr_db: float | None
    psnr_infinite: bool | None
    ssim: float | None
    hash_distance: int | None
    min_ssim: float = 0.0  # the SSIM target the quality was chosen for; 0: fixed quality


async def _lock_content(connection: Connection, tenant_id: uuid.UUID, key: str) -> None:
    """A transaction-scoped lock on one original object of a tenant."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{tenant_id}:{key}"
    )


# Errors that mean "the connection is gone", not "the statement is wrong": a backend
# terminated (pg_terminate_backend, a restart), a closed socket, a server starting up.
# InternalClientError is how asyncpg reports a connection the server killed in the
# middle of an operation (MagicStack/asyncpg#784); the pool discards such connections.
# Not a TimeoutError (an OSError too): a statement that ran out of time is not retried.
_DISCONNECTED = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    ConnectionError,
    OSError,
)

# Methods whose whole effect may be repeated even when the first run committed: reads,
# and writes that converge (guarded state changes, upserts, a registration keyed on its
# request id). Any other method runs again only when its connection failed before
# COMMIT was sent, the one case where nothing can have been written: resolve_duplicate
# counts an upload, start_attempt opens an attempt, a claim takes leases, create_* inserts.
_IDEMPOTENT = frozenset(
    {
        "ping",
        "list_tenants",
        "tenant_exists",
        "list_api_keys",
        "revoke_api_key",
        "get_api_key",
        "register_asset",
        "get_asset",
        "list_renditions",
        "list_assets",
        "near_duplicates",
        "get_job",
        "list_attempts",
        "render_request_row",
        "mark_job_published",
        "failed_attempts",
        "complete_job",
        "fail_attempt",
        "record_poison",
        "delete_asset",
        "list_jobs",
        "tenant_metrics",
        "deleted_assets",
        "referenced_keys",
        "list_poison_jobs",
        "retry_poison",
    }
)


class _Uncommitted(Exception):
    """The connection failed before COMMIT was sent: the transaction had no effect."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _is_bad_input(error: BaseException) -> bool:
    """A value the database cannot take, which no retry changes.

    asyncpg's client-side DataError (an argument it cannot encode: an integer or a
    timestamp out of range) is an InterfaceError and a ValueError; PostgreSQL's own
    class 22 (a value it refuses, e.g. NUL in text) is asyncpg.DataError.
    """
    return isinstance(error, asyncpg.DataError) or (
        isinstance(error, asyncpg.InterfaceError) and isinstance(error, ValueError)
    )


def _timed_out(error: BaseException) -> bool:
    """asyncpg's command timeout, or PostgreSQL cancelling the statement (57014)."""
    return isinstance(error, (TimeoutError, asyncpg.QueryCanceledError))


def _lost_connection(error: BaseException) -> bool:
    return isinstance(error, _DISCONNECTED) and not _timed_out(error) and not _is_bad_input(error)


def _unavailable(error: BaseException) -> Unavailable:
    return Unavailable(
        f"the database is unavailable ({type(error).__name__})", reason="DATABASE_UNAVAILABLE"
    )


def _database_call(
    method: Callable[_P, Awaitable[_R]], *, retry: bool, idempotent: bool
) -> Callable[_P, Awaitable[_R]]:
    """Turn database failures into domain errors, running once more where that is safe.

    A lost connection: one more run on a fresh connection when `retry` and either the
    method is idempotent or the failure came before COMMIT; otherwise, or if that fails
    too, Unavailable. Bad input: InvalidArgument. A statement timeout: Unavailable,
    not retried. Both runs stay within the deadline of the RPC being served; past it,
    DeadlineExceeded (the caller has given up: working on is wasted).
    """

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        budget = asyncio.timeout(time_remaining())
        try:
            async with budget:
                try:
                    return await method(*args, **kwargs)
                except (_Uncommitted, *_DISCONNECTED) as first:
                    safe = idempotent or isinstance(first, _Uncommitted)
                    cause = first.cause if isinstance(first, _Uncommitted) else first
                    if not (retry and safe and _lost_connection(cause)):
                        raise
                    log.warning(
                        "database connection lost (%s); retrying once", type(cause).__name__
                    )
                return await method(*args, **kwargs)
        except _Uncommitted as error:
            raise _translated(error.cause) from error.cause
        except TimeoutError as error:
            if budget.expired():
                raise DeadlineExceeded(
                    "the caller's deadline passed while waiting for the database"
                ) from None
            raise Unavailable(
                "the database did not answer in time", reason="DATABASE_TIMEOUT"
            ) from error
        except (*_DISCONNECTED, asyncpg.DataError) as error:
            raise _translated(error) from error

    return wrapper


def _translated(error: BaseException) -> ImagepipeError:
    if _timed_out(error):
        return Unavailable("the database did not answer in time", reason="DATABASE_TIMEOUT")
    if _is_bad_input(error):
        return InvalidArgument(
            f"a value was refused by the database: {error}", reason="INVALID_VALUE"
        )
    return _unavailable(error)


def _database_methods(cls: type[_C], *, retry: bool = True) -> type[_C]:
    """Wrap every public coroutine method of `cls` (see _database_call)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            wrapped = _database_call(member, retry=retry, idempotent=name in _IDEMPOTENT)
            setattr(cls, name, wrapped)
    return cls


# A ContentLock runs inside its holder's transaction: a statement cannot be repeated
# alone, so a lost connection is reported (Unavailable), never retried.
_database_methods(ContentLock, retry=False)


@_database_methods
class CatalogRepository:
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

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        """A connection in a transaction; tells a failure before COMMIT from one during it.

        A connection lost before COMMIT was sent rolled the transaction back: that is
        _Uncommitted, safe to run again. Lost during COMMIT, the outcome is unknown.
        """
        committing = False
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                yield connection
                committing = True
        except _DISCONNECTED as error:
            if committing or not _lost_connection(error):
                raise
            raise _Uncommitted(error) from error

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    # Tenants and keys -------------------------------------------------------------

    async def create_tenant(
        self, name: str, key_id: str, secret_hash: bytes, label: str
    ) -> tuple[Record, Record] | None:
        """Create a tenant with its first key; None when the name is taken."""
        async with self._transaction() as connection:
            tenant = await connection.fetchrow(
                "INSERT INTO tenants (id, name) VALUES ($1, $2) "
                "ON CONFLICT (name) DO NOTHING RETURNING id, name, created_at",
                uuid.uuid4(),
                name,
            )
            if tenant is None:
                return None
            key = await self._insert_key(connection, tenant["id"], key_id, secret_hash, label)
            return tenant, key

    @staticmethod
    async def _insert_key(
        connection: Connection,
        tenant_id: uuid.UUID,
        key_id: str,
        secret_hash: bytes,
        label: str,
    ) -> Record:
        row = await connection.fetchrow(
            "INSERT INTO api_keys (key_id, tenant_id, secret_hash, label) VALUES ($1, $2, $3, $4) "
            "RETURNING key_id, tenant_id, label, created_at, revoked_at",
            key_id,
            tenant_id,
            secret_hash,
            label,
        )
        assert row is not None
        return row

    async def list_tenants(self, after_name: str, limit: int) -> list[Record]:
        return await self._pool.fetch(
            "SELECT id, name, created_at FROM tenants WHERE name > $1 ORDER BY name LIMIT $2",
            after_name,
            limit,
        )

    async def tenant_exists(self, tenant_id: uuid.UUID) -> bool:
        return bool(await self._pool.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id))

    async def create_api_key(
        self, tenant_id: uuid.UUID, key_id: str, secret_hash: bytes, label: str
    ) -> Record:
        async with self._pool.acquire() as connection:
            return await self._insert_key(connection, tenant_id, key_id, secret_hash, label)

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[Record]:
        return await self._pool.fetch(
            "SELECT key_id, tenant_id, label, created_at, revoked_at FROM api_keys "
            "WHERE tenant_id = $1 ORDER BY created_at, key_id",
            tenant_id,
        )

    async def revoke_api_key(self, key_id: str) -> Record | None:
        return await self._pool.fetchrow(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, clock_timestamp()) "
            "WHERE key_id = $1 RETURNING key_id, tenant_id, label, created_at, revoked_at",
            key_id,
        )

    async def get_api_key(self, key_id: str) -> Record | None:
        return await self._pool.fetchrow(
            "SELECT key_id, tenant_id, secret_hash, revoked_at FROM api_keys WHERE key_id = $1",
            key_id,
        )

    # Assets -------------------------------------------------------------------------

    async def resolve_duplicate(
        self, tenant_id: uuid.UUID, content_hash: str, request_id: str = ""
    ) -> Record | None:
        """The live asset with these bytes, counting this upload against it.

        None also when that asset was registered by this same request: an upload
        retried after its answer was lost is not a duplicate of itself, and its
        RegisterAsset answers `created` as the first did (see register_asset).
        """
        async with self._transaction() as connection:
            if request_id and await connection.fetchval(
                "SELECT 1 FROM assets a "
                "JOIN jobs j ON j.asset_id = a.id AND j.tenant_id = a.tenant_id "
                "WHERE a.tenant_id = $1 AND a.content_hash = $2 AND a.deleted_at IS NULL "
                "AND j.request_id = $3",
                tenant_id,
                content_hash,
                request_id,
            ):
                return None
            asset_id = await connection.fetchval(
                "UPDATE assets SET upload_count = upload_count + 1 "
                "WHERE tenant_id = $1 AND content_hash = $2 AND deleted_at IS NULL RETURNING id",
                tenant_id,
                content_hash,
            )
            if asset_id is None:
                return None
            return await self._asset_row(connection, tenant_id, asset_id)

    async def register_asset(self, new: NewAsset) -> AssetRegistration:
        """Insert the asset and its pending job together; the unique index picks a winner.

        Idempotent on the request id: a registration repeated after its commit's answer
        was lost (a retry here, or the caller's) finds its own row and answers as the
        first run did, `created`, instead of taking itself for a duplicate.
        """
        tenant_id = uuid.UUID(new.tenant_id)
        async with self._transaction() as connection:
            # Serialises with Purge deleting this original (see locked_content), and
            # with a concurrent repeat of this same registration.
            await _lock_content(connection, tenant_id, new.original_key)
            own = await self._registered_by(connection, tenant_id, new)
            if own is not None:
                return AssetRegistration(
                    asset=await self._asset_row(connection, tenant_id, own["asset_id"]),
                    created=True,
                    job=own,
                    deferred=await self._at_in_flight_limit(connection, tenant_id),
                )
            asset_id = await connection.fetchval(
                """
                INSERT INTO assets (id, tenant_id, status, content_hash, perceptual_hash, filename,
                    declared_content_type, content_type, format, width, height, size_bytes,
                    frame_count, labels, original_key)
                VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                ON CONFLICT (tenant_id, content_hash) WHERE deleted_at IS NULL DO NOTHING
                RETURNING id
                """,
                uuid.uuid4(),
                tenant_id,
                new.content_hash,
                new.perceptual_hash,
                new.filename,
                new.declared_content_type,
                new.content_type,
                new.format,
                new.width,
                new.height,
                new.size_bytes,
                new.frame_count,
                new.labels,
                new.original_key,
            )
            if asset_id is None:
                # A concurrent upload of the same bytes won; count this one against it.
                asset_id = await connection.fetchval(
                    "UPDATE assets SET upload_count = upload_count + 1 "
                    "WHERE tenant_id = $1 AND content_hash = $2 AND deleted_at IS NULL "
                    "RETURNING id",
                    tenant_id,
                    new.content_hash,
                )
                asset = await self._asset_row(connection, tenant_id, asset_id)
                return AssetRegistration(asset=asset, created=False, job=None)
            job = await connection.fetchrow(
                f"""
                INSERT INTO jobs AS j (id, tenant_id, asset_id, state, request_id)
                VALUES ($1, $2, $3, 'pending', $4)
                RETURNING {_JOB_COLUMNS}
                """,
                uuid.uuid4(),
                tenant_id,
                asset_id,
                new.request_id,
            )
            asset = await self._asset_row(connection, tenant_id, asset_id)
            deferred = await self._at_in_flight_limit(connection, tenant_id)
            return AssetRegistration(asset=asset, created=True, job=job, deferred=deferred)

    @staticmethod
    async def _registered_by(
        connection: Connection, tenant_id: uuid.UUID, new: NewAsset
    ) -> Record | None:
        """The job a registration with this request id and these bytes already created.

        Found through the one live asset with these bytes (assets_tenant_content), then
        its jobs (jobs_asset): no index on the request id is needed.
        """
        if not new.request_id:
            return None
        return await connection.fetchrow(
            f"""
            SELECT {_JOB_COLUMNS} FROM jobs j
            JOIN assets a ON a.id = j.asset_id AND a.tenant_id = j.tenant_id
            WHERE j.tenant_id = $1 AND j.request_id = $2 AND a.content_hash = $3
              AND a.deleted_at IS NULL
            ORDER BY j.created_at LIMIT 1
            """,
            tenant_id,
            new.request_id,
            new.content_hash,
        )

    async def _at_in_flight_limit(self, connection: Connection, tenant_id: uuid.UUID) -> bool:
        if not self._tenant_max_in_flight:
            return False
        # A soft limit: concurrent uploads may each see room and pass it by a few.
        in_flight = await connection.fetchval(
            f"SELECT count(*) FROM jobs WHERE tenant_id = $1 AND state IN ({_IN_FLIGHT})",
            tenant_id,
        )
        return bool(in_flight >= self._tenant_max_in_flight)

    @staticmethod
    async def _asset_row(
        connection: Connection, tenant_id: uuid.UUID, asset_id: uuid.UUID
    ) -> Record:
        row = await connection.fetchrow(
            f"SELECT {_ASSET_COLUMNS} FROM assets a WHERE a.tenant_id = $1 AND a.id = $2",
            tenant_id,
            asset_id,
        )
        assert row is not None
        return row

    async def get_asset(
        self, tenant_id: uuid.UUID, asset_id: uuid.UUID, *, include_deleted: bool = False
    ) -> Record | None:
        return await self._pool.fetchrow(
            f"SELECT {_ASSET_COLUMNS} FROM assets a WHERE a.tenant_id = $1 AND a.id = $2 "
            "AND ($3 OR a.deleted_at IS NULL)",
            tenant_id,
            asset_id,
            include_deleted,
        )

    async def list_renditions(
        self, tenant_id: uuid.UUID, asset_ids: Sequence[uuid.UUID]
    ) -> list[Record]:
        return await self._pool.fetch(
            """
            SELECT asset_id, preset, format, object_key, width, height, size_bytes, quality,
                   psnr_db, psnr_infinite, ssim, hash_distance, min_ssim, updated_at
            FROM renditions WHERE tenant_id = $1 AND asset_id = ANY($2::uuid[])
            ORDER BY asset_id, width * height DESC, preset, format
            """,
            tenant_id,
            list(asset_ids),
        )

    async def list_assets(
        self,
        tenant_id: uuid.UUID,
        status: str | None,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Record]:
        """Live assets newest first, keyset-paged on (created_at, id)."""
        after_time, after_id = after if after else (None, None)
        return await self._pool.fetch(
            f"""
            SELECT {_ASSET_COLUMNS} FROM assets a
            WHERE a.tenant_id = $1 AND a.deleted_at IS NULL
              AND ($2::text IS NULL OR a.status = $2)
              AND ($3::timestamptz IS NULL OR (a.created_at, a.id) < ($3, $4::uuid))
            ORDER BY a.created_at DESC, a.id DESC
            LIMIT $5
            """,
            tenant_id,
            status,
            after_time,
            after_id,
            limit,
        )

    async def near_duplicates(
        self,
        tenant_id: uuid.UUID,
        perceptual_hash: int,
        max_distance: int,
        limit: int,
        exclude: uuid.UUID | None,
    ) -> list[Record]:
        """Live assets within `max_distance`, closest first, ties by id.

        Multi-index hashing: one index-only probe per hash block (see similarity.py),
        instead of a scan of the tenant's assets.
        """
        block_probes = probes(unsigned_hash(perceptual_hash), max_distance)
        return await self._pool.fetch(
            """
            SELECT id, perceptual_hash, distance FROM (
                SELECT id, perceptual_hash,
                       bit_count((perceptual_hash # $2)::bit(64))::int AS distance
                FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL
                  AND phash_b0 = ANY($6::int[])
                UNION
                SELECT id, perceptual_hash, bit_count((perceptual_hash # $2)::bit(64))::int
                FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL
                  AND phash_b1 = ANY($7::int[])
                UNION
                SELECT id, perceptual_hash, bit_count((perceptual_hash # $2)::bit(64))::int
                FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL
                  AND phash_b2 = ANY($8::int[])
                UNION
                SELECT id, perceptual_hash, bit_count((perceptual_hash # $2)::bit(64))::int
                FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL
                  AND phash_b3 = ANY($9::int[])
            ) candidates
            WHERE distance <= $3 AND id IS DISTINCT FROM $4
            ORDER BY distance, id
            LIMIT $5
            """,
            tenant_id,
            perceptual_hash,
            max_distance,
            exclude,
            limit,
            *block_probes,
        )

    # Jobs ---------------------------------------------------------------------------

    async def get_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Record | None:
        return await self._pool.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.tenant_id = $1 AND j.id = $2",
            tenant_id,
            job_id,
        )

    async def list_attempts(
        self, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
    ) -> list[Record]:
        return await self._pool.fetch(
            f"""
            SELECT {_ATTEMPT_COLUMNS}
            FROM job_attempts t JOIN jobs j ON j.id = t.job_id
            WHERE j.tenant_id = $1 AND t.job_id = ANY($2::uuid[])
            ORDER BY t.job_id, t.attempt
            """,
            tenant_id,
            list(job_ids),
        )

    async def render_request_row(self, job_id: uuid.UUID) -> Record | None:
        return await self._pool.fetchrow(
            f"SELECT {_RENDER_REQUEST_COLUMNS} FROM jobs j JOIN assets a "
            "ON a.id = j.asset_id AND a.tenant_id = j.tenant_id WHERE j.id = $1",
            job_id,
        )

    async def mark_job_published(self, job_id: uuid.UUID) -> Record | None:
        """Record the broker's confirm; pending -> queued, other states stay."""
        async with self._transaction() as connection:
            # The confirm is recorded whatever happened since: a fast renderer may have
            # finished the job before this runs. Only a pending job changes state.
            await connection.execute(
                """
                UPDATE jobs SET published_at = coalesce(published_at, clock_timestamp()),
                    state = CASE WHEN state = 'pending' THEN 'queued' ELSE state END,
                    lease_owner = CASE WHEN state = 'pending' THEN NULL ELSE lease_owner END,
                    lease_expires_at = CASE WHEN state = 'pending' THEN NULL
                                            ELSE lease_expires_at END,
                    updated_at = clock_timestamp()
                WHERE id = $1
                """,
                job_id,
            )
            return await connection.fetchrow(
                f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.id = $1", job_id
            )

    async def claim_unpublished(
        self,
        *,
        limit: int,
        lease: dt.timedelta,
        min_age: dt.timedelta,
        owner: str,
        stuck_after: dt.timedelta | None = None,
    ) -> list[Record]:
        """Lease jobs for a relay to publish (one relay per job at a time).

        Pending jobs the broker never confirmed (once their not-before time has come),
        and jobs whose attempt was abandoned: running, with a lease that expired
        ABANDONED_AFTER ago, so no renderer holds them any more. With `stuck_after`
        also queued or retrying jobs that made no progress for that long: their
        message is presumed lost (a purged or re-declared work queue, a lost broker
        volume, a retry whose delay-queue publish never happened). Publishing one
        again is harmless: a finished job is skipped, and attempts are fenced.
        """
        async with self._transaction() as connection:
            # Fair share: a tenant with `tenant_max_in_flight` jobs already on the broker
            # gets no more until one finishes, and tenants take turns (every tenant's
            # oldest job, then every tenant's second, ...), so one tenant's backlog of
            # thousands waits here, not in the queue ahead of everyone else.
            candidates = await connection.fetch(
                f"""
                WITH in_flight AS (
                    SELECT tenant_id, count(*) AS n FROM jobs
                    WHERE state IN ({_IN_FLIGHT})
                    GROUP BY tenant_id
                ), ready AS (
                    SELECT id, tenant_id, coalesce(not_before, created_at) AS due,
                           row_number() OVER (PARTITION BY tenant_id
                                              ORDER BY coalesce(not_before, created_at), id)
                               AS turn
                    FROM jobs
                    WHERE state = 'pending' AND created_at <= clock_timestamp() - $1::interval
                      AND coalesce(not_before, '-infinity') <= clock_timestamp()
                      AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
                )
                SELECT r.id FROM ready r LEFT JOIN in_flight f USING (tenant_id)
                WHERE $3 = 0 OR r.turn <= $3 - coalesce(f.n, 0)
                ORDER BY r.turn, r.due
                LIMIT $2
                """,
                min_age,
                limit,
                self._tenant_max_in_flight,
            )
            # Stuck jobs already count as in flight: republishing them takes no turn.
            ids = await connection.fetch(
                f"""
                SELECT id FROM jobs
                WHERE (id = ANY($1::uuid[]) AND state = 'pending')
                   OR (state = 'running' AND lease_expires_at < clock_timestamp() - $3::interval)
                   OR ($4::interval IS NOT NULL AND state IN ({sql_list(STUCK_CANDIDATES)})
                       AND updated_at < clock_timestamp() - $4::interval
                       AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp()))
                ORDER BY coalesce(not_before, created_at)
                LIMIT $2
                FOR UPDATE SKIP LOCKED
                """,
                [r["id"] for r in candidates],
                limit,
                ABANDONED_AFTER,
                stuck_after,
            )
            job_ids = [r["id"] for r in ids]
            # An abandoned attempt goes back to the outbox, like a job never published.
            await connection.execute(
                "UPDATE jobs SET state = 'pending', updated_at = clock_timestamp() "
                "WHERE id = ANY($1::uuid[]) AND state = 'running'",
                job_ids,
            )
            return await self._lease(connection, job_ids, lease, owner)

    async def claim_for_render(
        self, *, limit: int, lease: dt.timedelta, owner: str, delivery_limit: int
    ) -> Claimed:
        """Lease runnable jobs for a renderer working without the broker.

        Each claim counts as a delivery until an attempt of the job is settled (its
        failure recorded), as the work queue counts redeliveries: a job whose original
        kills its renderer is claimed again after every lease expiry, and after
        `delivery_limit` such claims it is over the limit and not claimed again.
        """
        async with self._transaction() as connection:
            rows = await connection.fetch(
                f"""
                SELECT id, deliveries > $3 AS over_limit FROM jobs
                WHERE state IN ({sql_list(CLAIMABLE)})
                  AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
                  AND coalesce(not_before, '-infinity') <= clock_timestamp()
                  -- a retrying job's next attempt waits in a delay queue the broker
                  -- cannot deliver now: it is due once the longest backoff has passed
                  AND (state <> 'retrying' OR updated_at < clock_timestamp() - $2::interval)
                ORDER BY created_at
                LIMIT $1
                FOR UPDATE SKIP LOCKED
                """,
                limit,
                self._policy.longest_backoff,
                delivery_limit,
            )
            over = [r["id"] for r in rows if r["over_limit"]]
            claimed = [r["id"] for r in rows if not r["over_limit"]]
            if claimed:
                await connection.execute(
                    "UPDATE jobs SET deliveries = deliveries + 1 WHERE id = ANY($1::uuid[])",
                    claimed,
                )
            return Claimed(
                jobs=await self._lease(connection, claimed, lease, owner),
                over_limit=await self._request_rows(connection, over),
            )

    async def spare_bystander(self, job_id: uuid.UUID, delivery_limit: int) -> bool:
        """A job at the delivery limit that did not crash its renderers (lifecycle's
        crashed_it): count a spare and its deliveries afresh, True (the caller then
        delivers it again, as a job to run alone). False when it is poison after all:
        it crashed them, or was spared MAX_SPARES times, or is finished or unknown."""
        async with self._transaction() as connection:
            job = await connection.fetchrow(
                f"""
                SELECT j.spares, (SELECT count(*) FROM job_attempts t WHERE t.job_id = j.id
                    AND t.finished_at IS NULL AND t.started_at >= j.budget_since)
                    AS interrupted
                FROM jobs j WHERE j.id = $1 AND j.state NOT IN ({_TERMINAL}) FOR UPDATE
                """,
                job_id,
            )
            if (
                job is None
                or job["spares"] >= MAX_SPARES
                or crashed_it(int(job["interrupted"]), delivery_limit)
            ):
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

    async def failed_attempts(self, job_ids: Sequence[uuid.UUID]) -> list[Record]:
        """Failed attempts of these jobs since their budget was last renewed."""
        return await self._pool.fetch(
            f"""
            SELECT {_ATTEMPT_COLUMNS}
            FROM job_attempts t JOIN jobs j ON j.id = t.job_id
            WHERE t.job_id = ANY($1::uuid[]) AND t.outcome = 'failed'
              AND t.started_at >= j.budget_since
            ORDER BY t.job_id, t.attempt
            """,
            list(job_ids),
        )

    @staticmethod
    async def _lease(
        connection: Connection,
        job_ids: list[uuid.UUID],
        lease: dt.timedelta,
        owner: str,
    ) -> list[Record]:
        if not job_ids:
            return []
        await connection.execute(
            "UPDATE jobs SET lease_owner = $2, lease_expires_at = clock_timestamp() + $3::interval "
            "WHERE id = ANY($1::uuid[])",
            job_ids,
            owner,
            lease,
        )
        return await CatalogRepository._request_rows(connection, job_ids)

    @staticmethod
    async def _request_rows(connection: Connection, job_ids: list[uuid.UUID]) -> list[Record]:
        if not job_ids:
            return []
        return await connection.fetch(
            f"SELECT {_RENDER_REQUEST_COLUMNS} FROM jobs j JOIN assets a "
            "ON a.id = j.asset_id AND a.tenant_id = j.tenant_id "
            "WHERE j.id = ANY($1::uuid[]) ORDER BY j.created_at",
            job_ids,
        )

    async def start_attempt(
        self, job_id: uuid.UUID, worker: str, lease: dt.timedelta
    ) -> AttemptStart:
        """Open the job's next attempt unless it is finished.

        The attempt number is a fencing token: only the newest attempt may complete
        the job or record its failure, so two attempts that overlap (a redelivery
        while a stale one still runs) never both commit.
        """
        async with self._transaction() as connection:
            job = await connection.fetchrow(
                f"""
                UPDATE jobs j SET state = 'running', attempts = attempts + 1,
                    updated_at = clock_timestamp(), lease_owner = $2,
                    lease_expires_at = clock_timestamp() + $3::interval, not_before = NULL
                WHERE j.id = $1 AND j.state NOT IN ({_TERMINAL})
                RETURNING {_JOB_COLUMNS}
                """,
                job_id,
                worker,
                lease,
            )
            if job is None:
                current = await connection.fetchrow(
                    f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.id = $1", job_id
                )
                return AttemptStart(current, 0)
            await connection.execute(
                "INSERT INTO job_attempts (job_id, attempt, worker) VALUES ($1, $2, $3) "
                "ON CONFLICT (job_id, attempt) DO NOTHING",
                job_id,
                job["attempts"],
                worker,
            )
            await connection.execute(
                "UPDATE assets SET status = 'processing', updated_at = clock_timestamp() "
                "WHERE id = $1 AND tenant_id = $2 AND status = 'pending'",
                job["asset_id"],
                job["tenant_id"],
            )
            return AttemptStart(job, job["attempts"])

    async def complete_job(
        self,
        job_id: uuid.UUID,
        attempt: int,
        renditions: Sequence[RenditionRow],
        thumbhash: str | None,
        dominant_color: str | None,
    ) -> Record | None:
        """Record renditions, job done, asset ready: all or nothing.

        None when the job is dead or `attempt` is not its newest attempt (stale).
        """
        async with self._transaction() as connection:
            job = await connection.fetchrow(
                "SELECT id, tenant_id, asset_id, state, attempts FROM jobs "
                "WHERE id = $1 FOR UPDATE",
                job_id,
            )
            if job is None or job["state"] == "dead" or job["attempts"] != attempt:
                return None
            for r in renditions:
                await connection.execute(
                    """
                    INSERT INTO renditions (asset_id, tenant_id, preset, format, object_key, width,
                        height, size_bytes, quality, psnr_db, psnr_infinite, ssim, hash_distance,
                        job_id, min_ssim)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                    ON CONFLICT (asset_id, preset, format) DO UPDATE SET
                        object_key = EXCLUDED.object_key, width = EXCLUDED.width,
                        height = EXCLUDED.height, size_bytes = EXCLUDED.size_bytes,
                        quality = EXCLUDED.quality, psnr_db = EXCLUDED.psnr_db,
                        psnr_infinite = EXCLUDED.psnr_infinite, ssim = EXCLUDED.ssim,
                        hash_distance = EXCLUDED.hash_distance, job_id = EXCLUDED.job_id,
                        min_ssim = EXCLUDED.min_ssim, updated_at = clock_timestamp()
                    """,
                    job["asset_id"],
                    job["tenant_id"],
                    r.preset,
                    r.format,
                    r.object_key,
                    r.width,
                    r.height,
                    r.size_bytes,
                    r.quality,
                    r.psnr_db,
                    r.psnr_infinite,
                    r.ssim,
                    r.hash_distance,
                    job_id,
                    r.min_ssim,
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
                job["asset_id"],
                job["tenant_id"],
                thumbhash,
                dominant_color,
            )
            return await connection.fetchrow(
                f"""
                UPDATE jobs j SET state = 'done', last_error = '', lease_owner = NULL,
                    lease_expires_at = NULL, updated_at = clock_timestamp(),
                    finished_at = coalesce(finished_at, clock_timestamp())
                WHERE j.id = $1 RETURNING {_JOB_COLUMNS}
                """,
                job_id,
            )

    async def fail_attempt(
        self,
        job_id: uuid.UUID,
        attempt: int,
        error: str,
        *,
        transient: bool,
        retry_after: dt.timedelta | None,
        poison_request: bytes = b"",
    ) -> Record | None:
        """Close a failed attempt. With `retry_after` the job goes back to the outbox.

        The failure settles the job's deliveries. A transient failure right after
        another is folded into that one's row (a count and the first end time), so
        a long outage leaves one row, not one per retry. A failure that spends the
        retry budget makes the job poison here, in the same transaction, with
        `poison_request` as its replayable request: the job is given up whether or
        not the renderer's own give-up call reaches the catalog afterwards.
        """
        async with self._transaction() as connection:
            previous = await connection.fetchrow(
                "SELECT attempt, repeats, finished_at, first_finished_at FROM job_attempts "
                "WHERE job_id = $1 AND attempt < $2 AND outcome = 'failed' AND transient "
                "AND attempt = (SELECT max(attempt) FROM job_attempts "
                "               WHERE job_id = $1 AND attempt < $2)",
                job_id,
                attempt,
            )
            folded = transient and previous is not None
            await connection.execute(
                "UPDATE job_attempts SET finished_at = coalesce(finished_at, clock_timestamp()), "
                "outcome = 'failed', error = $3, transient = $4, repeats = $5, "
                "first_finished_at = $6 WHERE job_id = $1 AND attempt = $2",
                job_id,
                attempt,
                error,
                transient,
                previous["repeats"] + 1 if folded and previous else 1,
                (previous["first_finished_at"] or previous["finished_at"])
                if folded and previous
                else None,
            )
            if folded and previous:
                await connection.execute(
                    "DELETE FROM job_attempts WHERE job_id = $1 AND attempt = $2",
                    job_id,
                    previous["attempt"],
                )
            job = await connection.fetchrow(
                f"""
                UPDATE jobs SET
                    state = CASE WHEN $3::interval IS NULL THEN 'retrying' ELSE 'pending' END,
                    not_before = clock_timestamp() + $3::interval,
                    last_error = $2, lease_owner = NULL, lease_expires_at = NULL,
                    deliveries = 0, updated_at = clock_timestamp()
                WHERE id = $1 AND state NOT IN ({_TERMINAL}) AND attempts = $4
                RETURNING id, tenant_id, asset_id, state
                """,
                job_id,
                error,
                retry_after,
                attempt,
            )
            if job is not None and not transient:
                failures = await connection.fetchval(
                    "SELECT count(*) FROM job_attempts t JOIN jobs j ON j.id = t.job_id "
                    "WHERE t.job_id = $1 AND t.outcome = 'failed' AND NOT t.transient "
                    "AND t.started_at >= j.budget_since",
                    job_id,
                )
                if self._policy.spent(int(failures or 0)):
                    await self._poison(connection, job, "retries_exhausted", error, poison_request)
            return await connection.fetchrow(
                f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.id = $1", job_id
            )

    async def record_poison(
        self, job_id: uuid.UUID, reason: str, error: str, request: bytes
    ) -> Record | None:
        """Job dead, asset failed, one open poison job. None when the job is unknown."""
        async with self._transaction() as connection:
            job = await connection.fetchrow(
                "SELECT id, tenant_id, asset_id, state FROM jobs WHERE id = $1 FOR UPDATE", job_id
            )
            if job is None:
                return None
            return await self._poison(connection, job, reason, error, request)

    @staticmethod
    async def _poison(
        connection: Connection, job: Record, reason: str, error: str, request: bytes
    ) -> Record | None:
        """Under the job's row lock: the open poison job, recorded once."""
        job_id = job["id"]
        existing = await connection.fetchrow(
            "SELECT * FROM poison_jobs WHERE job_id = $1 AND replayed_at IS NULL", job_id
        )
        if existing is not None:
            return existing
        if job["state"] == "done":
            # A late dead letter of a job another delivery completed: nothing to record.
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
            "WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
            job["asset_id"],
            job["tenant_id"],
        )
        return await connection.fetchrow(
            "INSERT INTO poison_jobs (id, tenant_id, job_id, asset_id, reason, error, request) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            uuid.uuid4(),
            job["tenant_id"],
            job_id,
            job["asset_id"],
            reason,
            error,
            request,
        )

    async def delete_asset(self, tenant_id: uuid.UUID, asset_id: uuid.UUID) -> Record | None:
        """Soft delete (idempotent). None when the tenant has no such asset."""
        async with self._transaction() as connection:
            await connection.execute(
                "UPDATE assets SET status = 'deleted', deleted_at = clock_timestamp(), "
                "updated_at = clock_timestamp() "
                "WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
                tenant_id,
                asset_id,
            )
            return await connection.fetchrow(
                f"SELECT {_ASSET_COLUMNS} FROM assets a WHERE a.tenant_id = $1 AND a.id = $2",
                tenant_id,
                asset_id,
            )

    async def list_jobs(
        self,
        tenant_id: uuid.UUID,
        state: str | None,
        asset_id: uuid.UUID | None,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Record]:
        after_time, after_id = after if after else (None, None)
        return await self._pool.fetch(
            f"""
            SELECT {_JOB_COLUMNS} FROM jobs j
            WHERE j.tenant_id = $1
              AND ($2::text IS NULL OR j.state = $2)
              AND ($3::uuid IS NULL OR j.asset_id = $3)
              AND ($4::timestamptz IS NULL OR (j.created_at, j.id) < ($4, $5::uuid))
            ORDER BY j.created_at DESC, j.id DESC
            LIMIT $6
            """,
            tenant_id,
            state,
            asset_id,
            after_time,
            after_id,
            limit,
        )

    async def tenant_metrics(self, tenant_id: uuid.UUID) -> Record:
        row = await self._pool.fetchrow("SELECT * FROM tenant_usage($1)", tenant_id)
        assert row is not None
        return row

    async def deleted_assets(self, tenant_id: uuid.UUID, before: dt.datetime) -> list[Record]:
        """Deleted assets whose deletion is older than `before`, with their renditions."""
        return await self._pool.fetch(
            """
            SELECT a.id, a.original_key, a.size_bytes, a.deleted_at,
                   coalesce(jsonb_agg(jsonb_build_array(r.object_key, r.size_bytes))
                            FILTER (WHERE r.object_key IS NOT NULL), '[]'::jsonb) AS renditions
            FROM assets a LEFT JOIN renditions r ON r.asset_id = a.id AND r.tenant_id = a.tenant_id
            WHERE a.tenant_id = $1 AND a.deleted_at IS NOT NULL AND a.deleted_at < $2
            GROUP BY a.id
            ORDER BY a.deleted_at, a.id
            """,
            tenant_id,
            before,
        )

    async def referenced_keys(self, tenant_id: uuid.UUID) -> tuple[set[str], set[uuid.UUID]]:
        """Every object key a row of the tenant uses, and the ids of its live assets."""
        async with self._pool.acquire() as connection:
            originals = await connection.fetch(
                "SELECT original_key FROM assets WHERE tenant_id = $1", tenant_id
            )
            renditions = await connection.fetch(
                "SELECT object_key FROM renditions WHERE tenant_id = $1", tenant_id
            )
            live = await connection.fetch(
                "SELECT id FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL", tenant_id
            )
        keys = {r["original_key"] for r in originals} | {r["object_key"] for r in renditions}
        return keys, {r["id"] for r in live}

    @asynccontextmanager
    async def locked_content(
        self, tenant_id: uuid.UUID, original_key: str
    ) -> AsyncIterator[ContentLock]:
        """A transaction holding the lock RegisterAsset takes for the same original.

        While it is held no upload can register an asset on this key, so what the
        holder checks about the key's users stays true until it commits.
        """
        try:
            async with self._transaction() as connection:
                await _lock_content(connection, tenant_id, original_key)
                yield ContentLock(connection, tenant_id, original_key)
        except _Uncommitted as error:
            raise _translated(error.cause) from error.cause
        except (*_DISCONNECTED, asyncpg.DataError) as error:
            raise _translated(error) from error

    async def list_poison_jobs(
        self,
        tenant_id: uuid.UUID,
        include_replayed: bool,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Record]:
        after_time, after_id = after if after else (None, None)
        return await self._pool.fetch(
            """
            SELECT * FROM poison_jobs
            WHERE tenant_id = $1 AND ($2 OR replayed_at IS NULL)
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
            ORDER BY created_at DESC, id DESC
            LIMIT $5
            """,
            tenant_id,
            include_replayed,
            after_time,
            after_id,
            limit,
        )

    async def retry_poison(
        self, tenant_id: uuid.UUID, poison_job_id: uuid.UUID
    ) -> tuple[Record, Record] | None:
        """Replay a poison job: marked replayed, its job back in the outbox with a fresh
        retry budget, its asset pending again. Replaying twice changes nothing more."""
        async with self._transaction() as connection:
            poison = await connection.fetchrow(
                "SELECT * FROM poison_jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
                poison_job_id,
                tenant_id,
            )
            if poison is None:
                return None
            if poison["replayed_at"] is None:
                poison = await connection.fetchrow(
                    "UPDATE poison_jobs SET replayed_at = clock_timestamp() WHERE id = $1 "
                    "RETURNING *",
                    poison_job_id,
                )
                assert poison is not None
                await connection.execute(
                    "UPDATE jobs SET state = 'pending', not_before = NULL, last_error = '', "
                    "lease_owner = NULL, lease_expires_at = NULL, finished_at = NULL, "
                    "deliveries = 0, spares = 0, budget_since = clock_timestamp(), "
                    "updated_at = clock_timestamp() "
                    "WHERE id = $1 AND tenant_id = $2 AND state = 'dead'",
                    poison["job_id"],
                    tenant_id,
                )
                await connection.execute(
                    "UPDATE assets SET status = 'pending', updated_at = clock_timestamp() "
                    "WHERE id = $1 AND tenant_id = $2 AND status = 'failed'",
                    poison["asset_id"],
                    tenant_id,
                )
            job = await connection.fetchrow(
                f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.id = $1 AND j.tenant_id = $2",
                poison["job_id"],
                tenant_id,
            )
            assert job is not None
            return poison, job
