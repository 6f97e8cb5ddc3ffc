"""The catalog's stores against the real database with faults injected between it
and its connections: what it retries, what it must not, and how failures are reported.

"Commit applied, answer lost" cannot be produced reliably with pg_terminate_backend,
so a thin wrapper around the real pool loses the connection right after a real COMMIT.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from devstack import Stack
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    common_pb2,
    ingest_pb2_grpc,
)
from services.catalog.db import CatalogDatabase, create_pool
from services.catalog.model import NewAsset
from services.shared.deadlines import reset_deadline, set_deadline
from services.shared.errors import DeadlineExceeded, InvalidArgument, Unavailable
from tests.faults.support import make_images
from tests.helpers import Services, Tenant, upload_messages
from tests.integration.catalog_db import new_asset, new_tenant


def _lost() -> asyncpg.ConnectionDoesNotExistError:
    return asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")


class Faults:
    """Armed faults, each taken by the first operation it applies to."""

    def __init__(self) -> None:
        self.armed: list[str] = []
        self.statements = 0

    def take(self, fault: str) -> bool:
        if fault in self.armed:
            self.armed.remove(fault)
            return True
        return False


class _Transaction:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        result = await self._inner.__aexit__(*exc)
        if exc[0] is None and self._faults.take("after_commit"):
            raise _lost()  # committed, but the answer never arrives
        return result


class _Connection:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def transaction(self) -> _Transaction:
        return _Transaction(self._inner.transaction(), self._faults)

    async def _statement(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._faults.statements += 1
        if self._faults.take("before_statement"):
            raise _lost()
        if self._faults.take("statement_timeout"):
            raise TimeoutError  # asyncpg's command_timeout
        if self._faults.take("statement_cancelled"):
            raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")
        if self._faults.take("hang"):
            await asyncio.Event().wait()
        return await getattr(self._inner, name)(*args, **kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._statement("execute", *args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._statement("fetch", *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._statement("fetchrow", *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._statement("fetchval", *args, **kwargs)


class FaultyPool:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.faults = Faults()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Connection]:
        async with self.pool.acquire() as connection:
            yield _Connection(connection, self.faults)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        async with self.acquire() as connection:
            return await connection.fetch(*args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchrow(*args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchval(*args, **kwargs)


@asynccontextmanager
async def _repository(stack: Stack) -> AsyncIterator[tuple[CatalogDatabase, FaultyPool]]:
    pool = await create_pool(stack.database_url, 2)
    try:
        faulty = FaultyPool(pool)
        yield CatalogDatabase(faulty), faulty  # type: ignore[arg-type]
    finally:
        await pool.close()


async def test_a_registration_whose_commit_answer_is_lost_still_answers_created(
    stack: Stack,
) -> None:
    async with _repository(stack) as (repo, pool):
        tenant_id = await new_tenant(repo, "retries")
        new = new_asset(tenant_id, request_id=f"req-{uuid.uuid4().hex}")
        pool.faults.armed.append("after_commit")
        first = await repo.assets.register_asset(new)
        assert not pool.faults.armed, "the fault was not reached"
        assert first.created and first.job is not None, "a brand-new upload taken for a duplicate"
        assert first.asset.upload_count == 1

        # The caller repeats it too (gRPC retries RegisterAsset on UNAVAILABLE).
        again = await repo.assets.register_asset(new)
        assert again.created and again.job is not None
        assert (again.asset.id, again.job.id) == (first.asset.id, first.job.id)
        assert again.asset.upload_count == 1
        jobs = await pool.pool.fetchval(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND asset_id = $2",
            tenant_id,
            first.asset.id,
        )
        assert jobs == 1

        # Another upload of the same bytes (another request id) is still a duplicate.
        other = await repo.assets.register_asset(
            NewAsset(**{**new.__dict__, "request_id": f"req-{uuid.uuid4().hex}"})
        )
        assert not other.created and other.asset.id == first.asset.id


async def test_counting_a_duplicate_is_never_repeated_after_its_commit(stack: Stack) -> None:
    async with _repository(stack) as (repo, pool):
        tenant_id = await new_tenant(repo, "retries")
        new = new_asset(tenant_id, request_id="r1")
        registered = await repo.assets.register_asset(new)
        pool.faults.armed.append("after_commit")
        with pytest.raises(Unavailable) as raised:
            await repo.assets.resolve_duplicate(tenant_id, new.content_hash)
        assert raised.value.reason == "DATABASE_UNAVAILABLE"
        count = await pool.pool.fetchval(
            "SELECT upload_count FROM assets WHERE id = $1", registered.asset.id
        )
        assert count == 2, "the upload was counted twice"


async def test_a_connection_lost_before_commit_is_retried_even_when_not_idempotent(
    stack: Stack,
) -> None:
    async with _repository(stack) as (repo, pool):
        tenant_id = await new_tenant(repo, "retries")
        new = new_asset(tenant_id, request_id="r1")
        await repo.assets.register_asset(new)
        pool.faults.armed.append("before_statement")
        row = await repo.assets.resolve_duplicate(tenant_id, new.content_hash)
        assert row is not None and row.upload_count == 2


@pytest.mark.parametrize("fault", ["statement_timeout", "statement_cancelled"])
async def test_a_statement_timeout_is_not_retried(stack: Stack, fault: str) -> None:
    async with _repository(stack) as (repo, pool):
        pool.faults.armed.append(fault)
        before = pool.faults.statements
        with pytest.raises(Unavailable) as raised:
            await repo.ping()
        assert raised.value.reason == "DATABASE_TIMEOUT"
        assert pool.faults.statements - before == 1


async def test_the_callers_deadline_bounds_the_database_call(stack: Stack) -> None:
    async with _repository(stack) as (repo, pool):
        pool.faults.armed.append("hang")
        token = set_deadline(0.2)
        try:
            with pytest.raises(DeadlineExceeded):
                await asyncio.wait_for(repo.ping(), 30)
        finally:
            reset_deadline(token)
        assert "hang" not in pool.faults.armed


@pytest.mark.parametrize("bad", ["nul", "huge"])
async def test_bad_input_is_invalid_argument_not_a_lost_connection(stack: Stack, bad: str) -> None:
    async with _repository(stack) as (repo, pool):
        before = pool.faults.statements
        call = (
            repo.tenants.get_api_key("nul\x00in text")  # PostgreSQL refuses it (class 22)
            if bad == "nul"
            else repo.tenants.list_tenants("", 2**70)  # asyncpg cannot encode it
        )
        with pytest.raises(InvalidArgument) as raised:
            await call
        assert raised.value.reason == "INVALID_VALUE"
        assert pool.faults.statements - before == 1, "bad input was retried"


async def test_a_connection_lost_under_the_content_lock_is_unavailable(stack: Stack) -> None:
    async with _repository(stack) as (repo, pool):
        tenant_id = await new_tenant(repo, "retries")
        key = f"originals/{tenant_id}/x"
        async with repo.purge.locked_content(tenant_id, key) as content:
            pool.faults.armed.append("before_statement")
            with pytest.raises(Unavailable) as raised:
                await content.users()
        assert raised.value.reason == "DATABASE_UNAVAILABLE"

        async def take_the_lock() -> None:
            async with repo.purge.locked_content(tenant_id, key):
                pass

        # Taking the lock itself on a dead connection is Unavailable too.
        pool.faults.armed.append("before_statement")
        with pytest.raises(Unavailable):
            await take_the_lock()


def test_register_asset_repeated_through_the_api_answers_created_both_times(
    services: Services, tenant: Tenant
) -> None:
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    digest = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    request = catalog_internal_pb2.RegisterAssetRequest(
        tenant_id=tenant.tenant_id,
        content_hash=digest,
        perceptual_hash="00000000000000ff",
        content_type="image/png",
        format=common_pb2.IMAGE_FORMAT_PNG,
        width=1,
        height=1,
        size_bytes=1,
        original_key=f"originals/{tenant.tenant_id}/{digest}",
        request_id=f"req-{uuid.uuid4().hex}",
    )
    answers = [
        internal.RegisterAsset(request, metadata=services.internal_metadata, timeout=10)
        for _ in range(2)
    ]
    assert [a.created for a in answers] == [True, True]
    assert answers[0].asset.asset_id == answers[1].asset.asset_id
    assert answers[0].job.job_id == answers[1].job.job_id
    assert answers[1].render_request.job_id == answers[0].job.job_id


def test_an_upload_retried_with_its_request_id_answers_as_the_first_did(
    services: Services, tenant: Tenant
) -> None:
    """The client repeats an upload whose answer it lost (same x-request-id)."""
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    data = make_images(1, seed=uuid.uuid4().int % 2**32)[0]
    metadata = (*tenant.metadata, ("x-request-id", f"req-{uuid.uuid4().hex}"))
    first, again = (
        stub.Upload(upload_messages(data), metadata=metadata, timeout=60) for _ in range(2)
    )
    assert not first.deduplicated
    assert not again.deduplicated, "the retry took its own upload for a duplicate"
    assert again.asset.asset_id == first.asset.asset_id
    # Another request with the same bytes is a duplicate, counted once more.
    other = stub.Upload(upload_messages(data), metadata=tenant.metadata, timeout=60)
    assert other.deduplicated and other.asset.asset_id == first.asset.asset_id
    assert other.asset.upload_count == 2
