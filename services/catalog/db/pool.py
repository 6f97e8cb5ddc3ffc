"""The connection pool, transactions, and the one policy every store follows on a
database failure: what is run again, and what each failure becomes.

A lost connection: one more run on a fresh connection when the method's whole
effect may be repeated (IDEMPOTENT) or the connection failed before COMMIT was sent
(nothing can have been written). Bad input: InvalidArgument. A statement timeout:
Unavailable, not retried. Both runs stay within the deadline of the RPC being
served; past it, DeadlineExceeded (the caller has given up: working on is wasted).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeAlias, TypeVar

import asyncpg

from services.catalog.lifecycle import STATES
from services.shared.deadlines import time_remaining
from services.shared.errors import DeadlineExceeded, ImagepipeError, InvalidArgument, Unavailable
from services.shared.logs import get_logger

__all__ = [
    "DISCONNECTED",
    "IDEMPOTENT",
    "Connection",
    "Uncommitted",
    "create_pool",
    "database_methods",
    "sql_list",
    "transaction",
    "translated",
]

log = get_logger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C")

# What a pool hands out; it behaves as a Connection.
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"


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


def sql_list(states: Iterable[str]) -> str:
    """`'a', 'b'` for an SQL IN list. The states are lifecycle's constants, never
    input; literals (not parameters) let the planner use the partial indexes whose
    WHERE clauses name the same states. In lifecycle order, so the text is stable."""
    chosen = set(states)
    assert chosen <= set(STATES)
    return ", ".join(f"'{s}'" for s in STATES if s in chosen)


# Errors that mean "the connection is gone", not "the statement is wrong": a backend
# terminated (pg_terminate_backend, a restart), a closed socket, a server starting up.
# InternalClientError is how asyncpg reports a connection the server killed in the
# middle of an operation (MagicStack/asyncpg#784); the pool discards such connections.
# Not a TimeoutError (an OSError too): a statement that ran out of time is not retried.
DISCONNECTED = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    ConnectionError,
    OSError,
)

# Store methods whose whole effect may be repeated even when the first run committed:
# reads, and writes that converge (guarded state changes, upserts, a registration keyed
# on its request id). Any other method runs again only when its connection failed
# before COMMIT was sent, the one case where nothing can have been written:
# resolve_duplicate counts an upload, start_attempt opens an attempt, a claim takes
# leases, create_* inserts.
IDEMPOTENT = frozenset(
    {
        "ping",
        "list_tenants",
        "tenant_exists",
        "list_api_keys",
        "revoke_api_key",
        "get_api_key",
        "list_signing_keys",
        "revoke_signing_key",
        "active_signing_key",
        "tenant_settings",
        "update_tenant_settings",
        "preset_renditions",
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
        "live_assets",
        "list_poison_jobs",
        "retry_poison",
        "tenant_presets",
        "replace_preset",
        "get_backfill",
        "stale_renditions",
        "remove_stale_rendition",
    }
)


class Uncommitted(Exception):
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
    return isinstance(error, DISCONNECTED) and not _timed_out(error) and not _is_bad_input(error)


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A connection in a transaction; tells a failure before COMMIT from one during it.

    A connection lost before COMMIT was sent rolled the transaction back: that is
    Uncommitted, safe to run again. Lost during COMMIT, the outcome is unknown.
    """
    committing = False
    try:
        async with pool.acquire() as connection, connection.transaction():
            yield connection
            committing = True
    except DISCONNECTED as error:
        if committing or not _lost_connection(error):
            raise
        raise Uncommitted(error) from error


def translated(error: BaseException) -> ImagepipeError:
    """The domain error a database failure is reported as."""
    if isinstance(error, Uncommitted):
        error = error.cause
    if _timed_out(error):
        return Unavailable("the database did not answer in time", reason="DATABASE_TIMEOUT")
    if _is_bad_input(error):
        return InvalidArgument(
            f"a value was refused by the database: {error}", reason="INVALID_VALUE"
        )
    return Unavailable(
        f"the database is unavailable ({type(error).__name__})", reason="DATABASE_UNAVAILABLE"
    )


def _database_call(
    method: Callable[_P, Awaitable[_R]], *, retry: bool, idempotent: bool
) -> Callable[_P, Awaitable[_R]]:
    """Turn database failures into domain errors, running once more where that is safe
    (see the module's docstring)."""

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        budget = asyncio.timeout(time_remaining())
        try:
            async with budget:
                try:
                    return await method(*args, **kwargs)
                except (Uncommitted, *DISCONNECTED) as first:
                    safe = idempotent or isinstance(first, Uncommitted)
                    cause = first.cause if isinstance(first, Uncommitted) else first
                    if not (retry and safe and _lost_connection(cause)):
                        raise
                    log.warning(
                        "database connection lost (%s); retrying once", type(cause).__name__
                    )
                return await method(*args, **kwargs)
        except Uncommitted as error:
            raise translated(error) from error.cause
        except TimeoutError as error:
            if budget.expired():
                raise DeadlineExceeded(
                    "the caller's deadline passed while waiting for the database"
                ) from None
            raise translated(error) from error
        except (*DISCONNECTED, asyncpg.DataError) as error:
            raise translated(error) from error

    return wrapper


def database_methods(cls: type[_C], *, retry: bool = True) -> type[_C]:
    """Wrap every public coroutine method of `cls` in the policy; `retry=False` for
    methods run inside a transaction their caller holds (a statement of it cannot be
    repeated alone, so a lost connection is reported, never retried)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            wrapped = _database_call(member, retry=retry, idempotent=name in IDEMPOTENT)
            setattr(cls, name, wrapped)
    return cls
