"""Tenant usage counters (migration tenant_usage) against a full recount.

The counters behind GetTenantMetrics are written by row triggers; tenant_usage() must
answer exactly what tenant_usage_recount() (the full scan it replaces) answers, for
every tenant, before and after the deltas are folded. Driven through the catalog's own
code paths, concurrently: registrations and duplicate uploads of the same bytes, job
starts, failures, retries, completions (and a stale completion writing renditions
again), poison and replay, deletes racing completions, purges racing re-uploads of the
same bytes, the relay's claims; while that runs, a reader compares the two in single
snapshots and the deltas are folded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg

from devstack import DEFAULT_PG, drop_database
from services.catalog.db import CatalogDatabase, create_pool
from services.catalog.db.migrate import apply_migrations, ensure_database, load_migrations
from services.catalog.db.pool import transaction
from services.catalog.db.usage_compactor import UsageCompactor
from services.catalog.model import NewAsset, NewRendition, PoisonReason
from services.catalog.usecases.purge import run_purge
from services.shared.storage import MemoryObjectStore
from tests.integration.catalog_db import catalog_database, new_asset, new_tenant

LEASE = dt.timedelta(seconds=60)
FORMATS = ("webp", "avif", "jpeg")
PRESETS = ("thumb", "card", "zoom")


async def _tenants(connection: Any) -> list[uuid.UUID]:
    return [r["id"] for r in await connection.fetch("SELECT id FROM tenants ORDER BY id")]


async def _usage(connection: Any, tenant: uuid.UUID, function: str = "tenant_usage") -> Any:
    """The row of tenant_usage (or tenant_usage_recount) for one tenant, as a dict."""
    row = await connection.fetchrow(f"SELECT * FROM {function}($1)", tenant)
    assert row is not None
    return dict(row)


async def _disagreements(connection: Any) -> list[str]:
    """Every counter, of every tenant, that differs from the recount (as `tenant field:
    counters != recount`), in the snapshot of the connection's current statement."""
    found = []
    for tenant in await _tenants(connection):
        usage = await _usage(connection, tenant)
        recount = await _usage(connection, tenant, "tenant_usage_recount")
        assert list(usage) == list(recount)
        found += [
            f"{tenant} {name}: {usage[name]!r} != {value!r}"
            for name, value in recount.items()
            if usage[name] != value
        ]
    return found


async def _assert_exact_before_and_after_folding(repo: CatalogDatabase) -> int:
    """The counters equal the recount with the deltas as they are, then folded; returns
    how many deltas were folded."""
    async with transaction(repo.pool) as connection:
        assert await _disagreements(connection) == []
    folded = await UsageCompactor(repo.pool, batch=1000).compact()
    async with transaction(repo.pool) as connection:
        assert await connection.fetchval("SELECT count(*) FROM tenant_usage_deltas") == 0
        assert await _disagreements(connection) == []
    return folded


def _renditions(asset_id: uuid.UUID, tenant: uuid.UUID, rng: random.Random) -> list[NewRendition]:
    chosen = rng.sample(PRESETS, rng.randint(1, len(PRESETS)))
    return [
        NewRendition(
            preset=preset,
            format=rng.choice(FORMATS),
            object_key=f"renditions/{tenant}/{asset_id}/{preset}",
            width=10,
            height=10,
            size_bytes=rng.randint(1, 50_000),
            quality=80,
            psnr_db=None,
            psnr_infinite=None,
            ssim=None,
            hash_distance=None,
        )
        for preset in chosen
    ]


class Workload:
    """Random lifecycles on one database, run concurrently with each other."""

    def __init__(self, repo: CatalogDatabase, seed: int) -> None:
        self.repo = repo
        self.rng = random.Random(seed)
        self.store = MemoryObjectStore()  # no objects: Purge removes rows only
        self.done = False

    async def _render(self, job_id: uuid.UUID, asset_id: uuid.UUID, tenant: uuid.UUID) -> None:
        started = await self.repo.jobs.start_attempt(job_id, "worker", LEASE)
        if not started.attempt:
            return  # finished meanwhile (completed, poisoned, or purged)
        if self.rng.random() < 0.3:
            await self.repo.jobs.fail_attempt(
                job_id,
                started.attempt,
                "flaky",
                transient=self.rng.random() < 0.5,
                retry_after=dt.timedelta(0),
            )
            started = await self.repo.jobs.start_attempt(job_id, "worker", LEASE)
            if not started.attempt:
                return
        renditions = _renditions(asset_id, tenant, self.rng)
        await self.repo.jobs.complete_job(job_id, started.attempt, renditions, None, None)
        if self.rng.random() < 0.2:
            # A stale delivery completing again: the renditions are written again.
            again = [replace(r, size_bytes=r.size_bytes + 7) for r in renditions]
            await self.repo.jobs.complete_job(job_id, started.attempt, again, None, None)

    async def _poison_and_replay(
        self, job_id: uuid.UUID, asset_id: uuid.UUID, tenant: uuid.UUID
    ) -> None:
        started = await self.repo.jobs.start_attempt(job_id, "worker", LEASE)
        if not started.attempt:
            return
        await self.repo.jobs.fail_attempt(
            job_id, started.attempt, "bad", transient=False, retry_after=None
        )
        poison = await self.repo.poison.record_poison(
            job_id, PoisonReason.RETRIES_EXHAUSTED, "bad", b"request"
        )
        if poison is not None and self.rng.random() < 0.6:
            await self.repo.poison.retry_poison(tenant, poison.id)
            await self._render(job_id, asset_id, tenant)

    async def _upload(self, new: NewAsset, copies: int) -> tuple[uuid.UUID, uuid.UUID] | None:
        """Register `copies` uploads of the same bytes at once: one creates the asset, the
        others count as duplicates. The created asset and job, None if none was created."""
        results = await asyncio.gather(
            *(
                self.repo.assets.register_asset(replace(new, request_id=uuid.uuid4().hex))
                for _ in range(copies)
            )
        )
        if self.rng.random() < 0.3:
            await self.repo.assets.resolve_duplicate(new.tenant_id, new.content_hash)
        for result in results:
            if result.created and result.job is not None:
                return result.asset.id, result.job.id
        return None

    async def lifecycle(self, tenant: uuid.UUID) -> None:
        new = replace(new_asset(tenant), size_bytes=self.rng.randint(1, 10_000_000))
        for _ in range(self.rng.randint(1, 3)):  # the same bytes again after a delete
            registered = await self._upload(new, self.rng.randint(1, 3))
            if registered is None:
                return
            asset_id, job_id = registered
            work = (
                self._poison_and_replay(job_id, asset_id, tenant)
                if self.rng.random() < 0.25
                else self._render(job_id, asset_id, tenant)
            )
            if self.rng.random() < 0.4:
                # The delete races the render: a rendition may commit after it.
                await asyncio.gather(work, self.repo.assets.delete_asset(tenant, asset_id))
            else:
                await work
                if self.rng.random() < 0.3:
                    await self.repo.assets.delete_asset(tenant, asset_id)

    async def purges(self, tenants: list[uuid.UUID]) -> None:
        while not self.done:
            for tenant in tenants:
                await run_purge(
                    self.repo.purge, self.store, tenant_id=tenant, dry_run=False, older_than_days=0
                )
            await asyncio.sleep(0.05)

    async def relay(self) -> None:
        while not self.done:
            claimed = await self.repo.jobs.claim_unpublished(
                limit=20, lease=LEASE, min_age=dt.timedelta(0), owner="relay"
            )
            for row in claimed:
                await self.repo.jobs.mark_job_published(row.job_id)
            await asyncio.sleep(0.02)

    async def fold(self) -> None:
        while not self.done:
            await self.repo.pool.fetchval("SELECT tenant_usage_compact(200)")
            await asyncio.sleep(0.03)

    async def compare_in_snapshots(self) -> list[str]:
        """Counters and recount read in one snapshot agree at every moment, not only
        once the writers are done."""
        seen: list[str] = []
        while not self.done:
            async with (
                self.repo.pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                seen += await _disagreements(connection)
            await asyncio.sleep(0.05)
        return seen


async def test_counters_equal_a_full_recount_under_concurrent_writes() -> None:
    async with catalog_database("usage") as repo:
        tenants = [await new_tenant(repo, "usage") for _ in range(3)]
        workload = Workload(repo, seed=20261207)
        background = [
            asyncio.create_task(workload.purges(tenants)),
            asyncio.create_task(workload.relay()),
            asyncio.create_task(workload.fold()),
        ]
        comparing = asyncio.create_task(workload.compare_in_snapshots())
        try:
            await asyncio.gather(*(workload.lifecycle(tenants[i % 3]) for i in range(60)))
        finally:
            workload.done = True
            await asyncio.gather(*background)
        assert await comparing == []
        # Deleted assets old enough are purged, rows and all.
        await asyncio.gather(
            *(
                run_purge(repo.purge, workload.store, tenant_id=t, dry_run=False, older_than_days=0)
                for t in tenants
            )
        )
        await _assert_exact_before_and_after_folding(repo)
        async with transaction(repo.pool) as connection:
            totals = [await _usage(connection, t) for t in tenants]
        # The workload reached every kind of counter.
        assert all(t["asset_count"] > 0 and t["rendition_count"] > 0 for t in totals)
        assert sum(t["deduplicated_uploads"] for t in totals) > 0
        assert sum(t["poison_job_count"] for t in totals) > 0
        assert {s for t in totals for s in t["assets_by_status"]} >= {"ready", "failed"}
        assert {s for t in totals for s in t["jobs_by_state"]} >= {"done", "dead"}


async def test_a_rendition_committed_as_its_asset_is_deleted_is_counted_once() -> None:
    """The race the asset's rendition_count column is for, run many times over: the
    render's transaction and the delete, started together."""
    async with catalog_database("usage_race") as repo:
        tenant = await new_tenant(repo, "race")
        rng = random.Random(5)

        async def one() -> None:
            registration = await repo.assets.register_asset(new_asset(tenant))
            assert registration.job is not None
            assert registration.job is not None
            asset_id, job_id = registration.asset.id, registration.job.id
            started = await repo.jobs.start_attempt(job_id, "worker", LEASE)
            renditions = _renditions(asset_id, tenant, rng)
            await asyncio.gather(
                repo.jobs.complete_job(job_id, started.attempt, renditions, None, None),
                repo.assets.delete_asset(tenant, asset_id),
            )

        await asyncio.gather(*(one() for _ in range(40)))
        async with transaction(repo.pool) as connection:
            usage = await _usage(connection, tenant)
        assert usage["asset_count"] == usage["rendition_count"] == 0
        assert usage["assets_by_status"] == {"deleted": 40}
        await _assert_exact_before_and_after_folding(repo)


async def test_tenant_usage_returns_the_recount_columns_and_types() -> None:
    async with catalog_database("usage_shape") as repo, transaction(repo.pool) as connection:
        shapes = await connection.fetch(
            "SELECT pg_get_function_result(p.oid) AS result FROM pg_proc p "
            "WHERE p.proname IN ('tenant_usage', 'tenant_usage_recount') ORDER BY p.proname"
        )
        assert len(shapes) == 2 and shapes[0]["result"] == shapes[1]["result"]
        nobody = uuid.uuid4()
        assert await _usage(connection, nobody) == await _usage(
            connection, nobody, "tenant_usage_recount"
        )


@asynccontextmanager
async def _database_before_usage() -> AsyncIterator[tuple[str, CatalogDatabase]]:
    """A database with every migration but the usage counters' own, and its repository.

    Later migrations are applied too (the runner applies any it has not recorded, in the
    order given), so today's stores, which write their columns, can fill the tables
    the usage migration then counts.
    """
    admin = os.environ.get("IMAGEPIPE_TEST_PG_URL", DEFAULT_PG)
    name = f"imagepipe_usage_backfill_{uuid.uuid4().hex[:10]}"
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    migrations = load_migrations()
    (usage,) = [m for m in migrations if m.name == "tenant_usage"]
    await ensure_database(url)
    try:
        await apply_migrations(url, [m for m in migrations if m.version != usage.version])
        pool = await create_pool(url, 4)
        try:
            yield url, CatalogDatabase(pool)
        finally:
            await asyncio.wait_for(pool.close(), 30)
    finally:
        await drop_database(admin, name)


async def test_the_migration_counts_existing_rows_and_rebuild_repairs_a_load_without_triggers() -> (
    None
):
    async with _database_before_usage() as (url, repo):
        tenants = [await new_tenant(repo, "old") for _ in range(2)]
        workload = Workload(repo, seed=11)
        await asyncio.gather(*(workload.lifecycle(tenants[i % 2]) for i in range(16)))
        await apply_migrations(url)
        await _assert_exact_before_and_after_folding(repo)
        # What the backfill counted goes on being counted: deletes of assets rendered
        # before the migration take their renditions off.
        async with transaction(repo.pool) as connection:
            live = await connection.fetch(
                "SELECT tenant_id, id FROM assets WHERE deleted_at IS NULL AND rendition_count > 0"
            )
        assert live
        for row in live:
            await repo.assets.delete_asset(row["tenant_id"], row["id"])
        await asyncio.gather(*(workload.lifecycle(tenants[i % 2]) for i in range(8)))
        await _assert_exact_before_and_after_folding(repo)

        # A bulk load with triggers off (as bench/catalog_scale.py seeds): the counters
        # miss it until tenant_usage_rebuild().
        loader = await asyncpg.connect(url)
        try:
            await loader.execute("SET session_replication_role = replica")
            await loader.execute(
                "UPDATE assets SET upload_count = upload_count + 2 WHERE deleted_at IS NULL"
            )
            await loader.execute("DELETE FROM renditions WHERE preset = 'thumb'")
            await loader.execute("RESET session_replication_role")
            assert await _disagreements(loader) != []
            await loader.execute("SELECT tenant_usage_rebuild()")
            assert await _disagreements(loader) == []
        finally:
            await loader.close()
        await _assert_exact_before_and_after_folding(repo)


async def test_the_compactor_folds_deltas_until_stopped() -> None:
    async with catalog_database("usage_fold") as repo:
        tenant = await new_tenant(repo, "fold")
        workload = Workload(repo, seed=3)
        await asyncio.gather(*(workload.lifecycle(tenant) for _ in range(5)))
        async with transaction(repo.pool) as connection:
            written = await connection.fetchval("SELECT count(*) FROM tenant_usage_deltas")
        assert written > 0
        # Batches smaller than the deltas: one pass folds them all, several statements.
        compactor = UsageCompactor(repo.pool, interval=3600, batch=max(1, written // 4))
        running = asyncio.create_task(compactor.run())
        async with transaction(repo.pool) as connection:
            for _ in range(600):
                if await connection.fetchval("SELECT count(*) FROM tenant_usage_deltas") == 0:
                    break
                await asyncio.sleep(0.05)
        await compactor.stop(1.0)
        await asyncio.wait_for(running, 30)
        assert await _assert_exact_before_and_after_folding(repo) == 0
