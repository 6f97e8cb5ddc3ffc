"""Every tenant RPC of the catalog with 1 M and 10 M assets in one tenant, beside a
tenant of 100 assets.

A catalog process of its own (free ports, its own database and S3 directory, no
broker) serves three tenants:
- small: 100 assets registered, rendered (3 renditions each), one deleted and one made
  poison through the catalog's own code (CatalogDatabase);
- large: seeded in SQL with generate_series and triggers off, then counted by
  tenant_usage_rebuild() (the migration's backfill): per asset one job and 3
  renditions (none for the 2 % pending or processing), 1 % deleted (a day ago: not
  yet purgeable), 1 % failed with an open poison job, 10 % uploaded twice. No attempt
  rows and no objects in S3;
- writes: where the write path is timed.

Each RPC is called once to warm up, then `--repeat` times (Purge and the recount 3
times); the table shows medians. ListAssets' 1000th page is reached by walking the
pages before it (the small tenant's is its last page). "recount" is the query
GetTenantMetrics ran before the usage counters (tenant_usage_recount), for reference.

The write path's cost of the counters: register, publish, start and complete (3
renditions) one upload after another, through CatalogDatabase, in rounds with the
usage triggers enabled and disabled in turn, at the start and again at the largest
size.

    .venv/bin/python -m bench.catalog_scale [--sizes 1000000,10000000] [--repeat 20]

10 M assets need about 30 GB of disk and over an hour on 2 cores; `--sizes 1000000`
alone takes a few minutes. The database is dropped at the end, also on failure or
Ctrl-C. Last line: `summary: metrics_ms_1m=… metrics_ms_10m=… list_ms_10m=…
similar_ms_10m=… purge_dry_ms_10m=…` and then the write path's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
from rich.console import Console
from rich.table import Table

from bench.common import print_summary
from devstack import Stack, StackConfig, drop_database
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    events_pb2,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from services.catalog.db import CatalogDatabase, create_pool
from services.catalog.db.migrate import apply_migrations, ensure_database
from services.catalog.model import NewAsset, NewRendition, PoisonReason
from services.shared.imaging.hashing import format_hash

SMALL = 100
CHUNK = 500_000  # seeded rows per statement (and transaction)
DEEP_PAGE = 1000
# name, format, width, height, bytes
PRESETS: tuple[tuple[str, str, int, int, int], ...] = (
    ("thumb", "webp", 100, 75, 3_000),
    ("card", "jpeg", 400, 300, 30_000),
    ("zoom", "avif", 1200, 900, 90_000),
)
USAGE_TRIGGERS = {
    "assets": ("assets_usage_insert_delete", "assets_usage_update"),
    "renditions": ("renditions_usage_insert_delete", "renditions_usage_update"),
    "jobs": ("jobs_usage_insert_delete", "jobs_usage_update"),
    "poison_jobs": ("poison_jobs_usage_insert_delete", "poison_jobs_usage_update"),
}
WRITE_ROUNDS = 15  # per setting, alternating
WRITE_UPLOADS = 10  # per round
T = 120.0  # seconds: the deadline of a timed call (Purge gets 600)

# Row g of the large tenant: its status, by g % 100 (the rest are ready).
_STATUS = """CASE g % 100 WHEN 0 THEN 'deleted' WHEN 1 THEN 'failed' WHEN 2 THEN 'pending'
                  WHEN 3 THEN 'processing' ELSE 'ready' END"""
_ASSET_ID = "md5($1::uuid::text || ':a:' || g)::uuid"
_JOB_ID = "md5($1::uuid::text || ':j:' || g)::uuid"
# Oldest first, one second apart, the newest now; $4 is the target size.
_CREATED = "now() - ($4::bigint - g) * interval '1 second'"
SEED_ASSETS = f"""
    INSERT INTO assets (id, tenant_id, status, content_hash, perceptual_hash, filename,
        content_type, format, width, height, size_bytes, original_key, upload_count,
        rendition_count, created_at, updated_at, deleted_at)
    SELECT {_ASSET_ID}, $1::uuid, s.status, s.hash,
           ('x' || substr(md5(g || ':p'), 1, 16))::bit(64)::bigint,
           'seed.jpg', 'image/jpeg', 'jpeg', 1600, 1200, 20000 + g % 500000,
           'originals/' || $1::uuid::text || '/' || s.hash,
           CASE WHEN g % 10 = 7 THEN 2 ELSE 1 END,
           CASE WHEN s.status IN ('pending', 'processing') THEN 0 ELSE 3 END,
           s.created, s.created,
           CASE WHEN s.status = 'deleted' THEN now() - interval '1 day' END
    FROM generate_series($2::bigint, $3::bigint - 1) g
    CROSS JOIN LATERAL (SELECT {_STATUS} AS status, md5(g::text) || md5(g || 'x') AS hash,
                               {_CREATED} AS created) s
"""
SEED_JOBS = f"""
    INSERT INTO jobs (id, tenant_id, asset_id, state, attempts, request_id, created_at,
        updated_at, published_at, finished_at)
    SELECT {_JOB_ID}, $1::uuid, {_ASSET_ID},
           CASE g % 100 WHEN 1 THEN 'dead' WHEN 2 THEN 'queued' WHEN 3 THEN 'running'
                        ELSE 'done' END,
           CASE WHEN g % 100 = 2 THEN 0 ELSE 1 END, 'seed', {_CREATED}, {_CREATED},
           {_CREATED}, CASE WHEN g % 100 IN (2, 3) THEN NULL ELSE {_CREATED} END
    FROM generate_series($2::bigint, $3::bigint - 1) g
"""
SEED_RENDITIONS = f"""
    INSERT INTO renditions (asset_id, tenant_id, preset, format, object_key, width, height,
        size_bytes, quality, job_id, created_at, updated_at)
    SELECT {_ASSET_ID}, $1::uuid, p.preset, p.format,
           concat_ws('/', 'renditions', $1::uuid::text, {_ASSET_ID})
               || '/' || p.preset || '.' || p.format,
           p.width, p.height, p.size + g % 1000, 80, {_JOB_ID}, {_CREATED}, {_CREATED}
    FROM generate_series($2::bigint, $3::bigint - 1) g
    CROSS JOIN (VALUES {", ".join(f"('{n}', '{f}', {w}, {h}, {s})" for n, f, w, h, s in PRESETS)})
        p (preset, format, width, height, size)
    WHERE g % 100 NOT IN (2, 3)
"""
SEED_POISON = f"""
    INSERT INTO poison_jobs (id, tenant_id, job_id, asset_id, reason, error, request, created_at)
    SELECT md5($1::uuid::text || ':x:' || g)::uuid, $1::uuid, {_JOB_ID}, {_ASSET_ID},
           'retries_exhausted', 'seeded', $5::bytea, {_CREATED}
    FROM generate_series($2::bigint, $3::bigint - 1) g
    WHERE g % 100 = 1
"""


# Indexes not backing a constraint: dropped for a bulk load and built again after it,
# which is many times faster than maintaining them row by row.
SECONDARY_INDEXES = """
    SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i
    WHERE i.indrelid = ANY ('{assets,renditions,jobs,poison_jobs}'::regclass[])
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""


@dataclass
class Figures:
    """Median milliseconds per RPC, per tenant size (a string when it failed)."""

    times: dict[str, dict[int, float | str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, size: int, value: float | str) -> None:
        self.times.setdefault(name, {})[size] = value


@dataclass(frozen=True)
class TenantKey:
    tenant_id: uuid.UUID
    metadata: tuple[tuple[str, str], ...]


class CatalogOnly:
    """A catalog process and an S3 server of their own, on free ports, and a database
    that is dropped on the way out."""

    def __init__(self, work: Path) -> None:
        self.stack = Stack(StackConfig.from_env(work))
        self.url = self.stack.database_url

    @contextlib.contextmanager
    def running(self) -> Iterator[CatalogOnly]:
        stack = self.stack
        try:
            stack.log_dir.mkdir(parents=True, exist_ok=True)
            stack.s3.start()
            stack.s3.client().make_bucket(stack.bucket)
            asyncio.run(ensure_database(self.url))
            asyncio.run(apply_migrations(self.url))
            stack.services["catalog"] = stack.start_service("catalog")
            stack.services["catalog"].wait_serving()
            yield self
        finally:
            stack.stop()
            asyncio.run(drop_database(stack.config.pg_url, stack.name))

    def tenant(self, channel: grpc.Channel, name: str) -> TenantKey:
        stub = tenant_admin_pb2_grpc.TenantAdminServiceStub(channel)
        created = stub.CreateTenant(
            tenant_admin_pb2.CreateTenantRequest(name=name),
            metadata=(("authorization", f"Bearer {self.stack.admin_key}"),),
            timeout=30,
        )
        return TenantKey(
            uuid.UUID(created.tenant.tenant_id),
            (("authorization", f"Bearer {created.secret_key}"),),
        )


def _new_asset(tenant: uuid.UUID, rng: random.Random) -> NewAsset:
    digest = hashlib.sha256(rng.randbytes(16)).hexdigest()
    return NewAsset(
        tenant_id=tenant,
        content_hash=digest,
        perceptual_hash=rng.getrandbits(63),
        filename="photo.jpg",
        declared_content_type="image/jpeg",
        content_type="image/jpeg",
        format="jpeg",
        width=1600,
        height=1200,
        size_bytes=rng.randint(20_000, 500_000),
        frame_count=1,
        labels={},
        original_key=f"originals/{tenant}/{digest}",
        request_id=uuid.uuid4().hex,
    )


async def _upload(
    repo: CatalogDatabase, tenant: uuid.UUID, rng: random.Random, *, render: bool = True
) -> tuple[uuid.UUID, uuid.UUID]:
    """One upload's writes, as ingest and a renderer make them: its asset and job ids.
    Without `render` the job stops at its first attempt."""
    registration = await repo.assets.register_asset(_new_asset(tenant, rng))
    assert registration.job is not None
    job_id: uuid.UUID = registration.job.id
    asset_id: uuid.UUID = registration.asset.id
    await repo.jobs.mark_job_published(job_id)
    started = await repo.jobs.start_attempt(job_id, "bench", dt.timedelta(minutes=2))
    if not render:
        return asset_id, job_id
    renditions = [
        NewRendition(
            preset,
            fmt,
            f"renditions/{tenant}/{asset_id}/{preset}.{fmt}",
            w,
            h,
            size,
            80,
            None,
            None,
            None,
            None,
        )
        for preset, fmt, w, h, size in PRESETS
    ]
    await repo.jobs.complete_job(job_id, started.attempt, renditions, None, None)
    return asset_id, job_id


def _dead_letter(tenant: uuid.UUID, asset_id: uuid.UUID, job_id: uuid.UUID) -> bytes:
    """The RenderRequest a poison job keeps for replay."""
    request = events_pb2.RenderRequest(
        job_id=str(job_id), tenant_id=str(tenant), asset_id=str(asset_id)
    )
    return request.SerializeToString()


async def populate_small(repo: CatalogDatabase, tenant: uuid.UUID) -> None:
    """The 100-asset tenant, through the catalog's own code: rendered, one deleted and
    one made poison."""
    rng = random.Random(100)
    deleted, _ = await _upload(repo, tenant, rng)
    await repo.assets.delete_asset(tenant, deleted)
    asset_id, poisoned = await _upload(repo, tenant, rng, render=False)
    request = _dead_letter(tenant, asset_id, poisoned)
    await repo.poison.record_poison(poisoned, PoisonReason.RETRIES_EXHAUSTED, "bench", request)
    for _ in range(SMALL - 2):
        await _upload(repo, tenant, rng)


async def _set_usage_triggers(connection: asyncpg.Connection, enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    for table, names in USAGE_TRIGGERS.items():
        actions = ", ".join(f"{verb} TRIGGER {name}" for name in names)
        await connection.execute(f"ALTER TABLE {table} {actions}")


def _backend_cpu_ms(pid: int) -> float | None:
    """CPU time PostgreSQL's backend `pid` has used, when it runs on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def write_path_ms(url: str, tenant: uuid.UUID, seed: int) -> dict[str, float]:
    """Median milliseconds of database work per upload, usage triggers on and off, in
    short alternating rounds so that the machine's other load falls on both alike; and
    the CPU time of the database backend per upload (when it runs here: unlike the
    wall time, not lengthened by whatever else the machine is doing)."""
    pool = await create_pool(url, 1)
    connection = await asyncpg.connect(url)
    rng = random.Random(seed)
    samples: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, float] = {True: 0.0, False: 0.0}
    try:
        repo = CatalogDatabase(pool)
        backend = int(await pool.fetchval("SELECT pg_backend_pid()"))
        for _ in range(3):  # warm-up: plans cached, pages in memory
            await _upload(repo, tenant, rng)
        for round_ in range(2 * WRITE_ROUNDS):
            enabled = round_ % 2 == 0
            await _set_usage_triggers(connection, enabled)
            used = _backend_cpu_ms(backend)
            for _ in range(WRITE_UPLOADS):
                began = time.perf_counter()
                await _upload(repo, tenant, rng)
                samples[enabled].append((time.perf_counter() - began) * 1000)
            after = _backend_cpu_ms(backend)
            if used is not None and after is not None:
                cpu[enabled] += (after - used) / (WRITE_ROUNDS * WRITE_UPLOADS)
    finally:
        await _set_usage_triggers(connection, True)
        await connection.close()
        await pool.close()
    return {
        "ms": statistics.median(samples[True]),
        "ms_no_counters": statistics.median(samples[False]),
        "cpu_ms": cpu[True],
        "cpu_ms_no_counters": cpu[False],
    }


async def seed(url: str, tenant: uuid.UUID, start: int, size: int, console: Console) -> float:
    """Rows start..size of the large tenant, then the counters rebuilt; returns the
    seconds the rebuild (the migration's backfill) took."""
    connection = await asyncpg.connect(url, command_timeout=None)
    try:
        indexes = await connection.fetch(SECONDARY_INDEXES)
        for index in indexes:
            await connection.execute(f"DROP INDEX {index['name']}")
        # A bulk load: no triggers, no foreign key checks; counted afterwards.
        await connection.execute("SET session_replication_role = replica")
        for low in range(start, size, CHUNK):
            high = min(size, low + CHUNK)
            began = time.perf_counter()
            for statement in (SEED_ASSETS, SEED_JOBS, SEED_RENDITIONS):
                await connection.execute(statement, tenant, low, high, size)
            # One request for all: replaying a seeded poison job is not measured.
            request = _dead_letter(tenant, tenant, tenant)
            await connection.execute(SEED_POISON, tenant, low, high, size, request)
            console.print(f"  seeded {high:,} assets ({time.perf_counter() - began:.0f} s)")
        await connection.execute("RESET session_replication_role")
        began = time.perf_counter()
        await connection.execute("SET maintenance_work_mem = '512MB'")
        for index in indexes:
            await connection.execute(index["definition"])
        await connection.execute("VACUUM ANALYZE assets, renditions, jobs, poison_jobs")
        console.print(f"  indexed and vacuumed in {time.perf_counter() - began:.0f} s")
        began = time.perf_counter()
        await connection.execute("SELECT tenant_usage_rebuild()")
        rebuilt = time.perf_counter() - began
        await connection.execute("VACUUM ANALYZE assets, tenant_usage_originals")
        return rebuilt
    finally:
        await connection.close()


def _timed(call: Callable[[], object], repeat: int) -> float | str:
    """Median milliseconds of `repeat` calls after one warm-up; the status code when a
    call fails."""
    samples = []
    try:
        call()
        for _ in range(repeat):
            began = time.perf_counter()
            call()
            samples.append((time.perf_counter() - began) * 1000)
    except grpc.RpcError as error:
        return f"{error.code().name} {(error.details() or '')[:60]}"
    return statistics.median(samples)


def _deep_token(stub: catalog_pb2_grpc.CatalogServiceStub, tenant: TenantKey) -> str:
    """The token of page DEEP_PAGE (or of the last page, for a smaller tenant)."""
    token = ""
    for _ in range(DEEP_PAGE - 1):
        page = stub.ListAssets(
            catalog_pb2.ListAssetsRequest(page_token=token), metadata=tenant.metadata, timeout=60
        )
        if not page.next_page_token:
            break  # `token` was the last page's
        token = page.next_page_token
    return token


async def _recount_ms(url: str, tenant: uuid.UUID, repeat: int) -> tuple[float, bool]:
    """Median milliseconds of the full recount, and whether the counters equal it."""
    connection = await asyncpg.connect(url, command_timeout=None)
    try:
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            recount = await connection.fetchrow("SELECT * FROM tenant_usage_recount($1)", tenant)
            samples.append((time.perf_counter() - began) * 1000)
        counted = await connection.fetchrow("SELECT * FROM tenant_usage($1)", tenant)
        return statistics.median(samples), dict(counted or {}) == dict(recount or {})
    finally:
        await connection.close()


def time_rpcs(
    channel: grpc.Channel, url: str, tenant: TenantKey, *, size: int, repeat: int, figures: Figures
) -> None:
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    md = tenant.metadata
    deep = _deep_token(stub, tenant)
    some_hash = asyncio.run(_a_hash(url, tenant.tenant_id))
    calls: dict[str, tuple[Callable[[], object], int]] = {
        "GetTenantMetrics": (
            lambda: stub.GetTenantMetrics(
                catalog_pb2.GetTenantMetricsRequest(), metadata=md, timeout=T
            ),
            repeat,
        ),
        "ListAssets page 1": (
            lambda: stub.ListAssets(catalog_pb2.ListAssetsRequest(), metadata=md, timeout=T),
            repeat,
        ),
        f"ListAssets page {DEEP_PAGE}": (
            lambda: stub.ListAssets(
                catalog_pb2.ListAssetsRequest(page_token=deep), metadata=md, timeout=T
            ),
            repeat,
        ),
        "ListJobs": (
            lambda: stub.ListJobs(catalog_pb2.ListJobsRequest(), metadata=md, timeout=T),
            repeat,
        ),
        "ListPoisonJobs": (
            lambda: stub.ListPoisonJobs(
                catalog_pb2.ListPoisonJobsRequest(), metadata=md, timeout=T
            ),
            repeat,
        ),
        "FindSimilar": (
            lambda: stub.FindSimilar(
                catalog_pb2.FindSimilarRequest(perceptual_hash=some_hash), metadata=md, timeout=T
            ),
            repeat,
        ),
        "Purge (dry run)": (
            lambda: stub.Purge(catalog_pb2.PurgeRequest(dry_run=True), metadata=md, timeout=600),
            min(3, repeat),
        ),
    }
    for name, (call, times) in calls.items():
        figures.add(name, size, _timed(call, times))
    recount, exact = asyncio.run(_recount_ms(url, tenant.tenant_id, min(3, repeat)))
    figures.add("recount (the query before the counters)", size, recount)
    figures.add("counters equal the recount", size, "yes" if exact else "NO")


async def _a_hash(url: str, tenant: uuid.UUID) -> str:
    connection = await asyncpg.connect(url)
    try:
        value = await connection.fetchval(
            "SELECT perceptual_hash FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL "
            "ORDER BY created_at DESC LIMIT 1",
            tenant,
        )
    finally:
        await connection.close()
    return format_hash(int(value) + (1 << 64) if value < 0 else int(value))


async def _sizes_gib(url: str) -> tuple[float, float]:
    """The database's size and the usage tables' (indexes included), GiB."""
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT pg_database_size(current_database()) AS total, "
            "pg_total_relation_size('tenant_usage_originals') "
            "+ pg_total_relation_size('tenant_usage_base') "
            "+ pg_total_relation_size('tenant_usage_deltas') AS usage"
        )
    finally:
        await connection.close()
    assert row is not None
    return int(row["total"]) / 2**30, int(row["usage"]) / 2**30


def _label(size: int) -> str:
    return f"{size // 1_000_000}m" if size >= 1_000_000 else str(size)


def _cell(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def report(
    figures: Figures, sizes: list[int], writes: dict[str, float | int | str], console: Console
) -> None:
    table = Table(title=f"Catalog RPCs, median ms: a tenant of {SMALL} assets beside one of N")
    table.add_column("RPC")
    for size in [SMALL, *sizes]:
        table.add_column(f"{size:,} assets", justify="right")
    table.add_column(f"{_label(sizes[-1])} / {SMALL}", justify="right")
    for name, by_size in figures.times.items():
        small, large = by_size.get(SMALL), by_size.get(sizes[-1])
        ratio = (
            f"{large / small:.1f}x"
            if isinstance(small, float) and isinstance(large, float)
            else "-"
        )
        table.add_row(name, *(_cell(by_size.get(s)) for s in [SMALL, *sizes]), ratio)
    console.print(table)
    for note in figures.notes:
        console.print(note)
    largest = _label(sizes[-1])
    for when, suffix in (("before seeding", ""), (f"at {largest}", f"_at_{largest}")):
        on, off = float(writes[f"write_ms{suffix}"]), float(writes[f"write_ms_no_counters{suffix}"])
        cpu_on = float(writes[f"write_cpu_ms{suffix}"])
        cpu_off = float(writes[f"write_cpu_ms_no_counters{suffix}"])
        console.print(
            f"write path per upload {when} (register, publish, start, complete with 3 "
            f"renditions): {on:.2f} ms with the usage triggers, {off:.2f} ms without "
            f"(+{on - off:.2f} ms); PostgreSQL CPU {cpu_on:.2f} ms against {cpu_off:.2f} ms"
        )
    summary: dict[str, float | int | str] = {}
    for key, name, size in (
        ("metrics_ms_1m", "GetTenantMetrics", 1_000_000),
        ("metrics_ms_10m", "GetTenantMetrics", 10_000_000),
        ("list_ms_10m", "ListAssets page 1", 10_000_000),
        ("similar_ms_10m", "FindSimilar", 10_000_000),
        ("purge_dry_ms_10m", "Purge (dry run)", 10_000_000),
    ):
        value = figures.times.get(name, {}).get(size)
        summary[key] = value if isinstance(value, float) else "n/a"
    print_summary(summary | writes)


def main(sizes: list[int], repeat: int) -> None:
    console = Console(width=140)
    figures = Figures()
    with (
        tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as work,
        CatalogOnly(Path(work)).running() as catalog,
        grpc.insecure_channel(catalog.stack.address("catalog")) as channel,
    ):
        console.print(
            f"database {catalog.stack.name}, catalog on {catalog.stack.address('catalog')}"
        )
        small, large, writer = (catalog.tenant(channel, n) for n in ("small", "large", "writes"))

        async def populate() -> None:
            pool = await create_pool(catalog.url, 2)
            try:
                await populate_small(CatalogDatabase(pool), small.tenant_id)
            finally:
                await pool.close()

        asyncio.run(populate())
        time_rpcs(channel, catalog.url, small, size=SMALL, repeat=repeat, figures=figures)
        timed = asyncio.run(write_path_ms(catalog.url, writer.tenant_id, seed=1))
        seeded = 0
        for size in sizes:
            console.print(f"seeding {size:,} assets")
            rebuilt = asyncio.run(seed(catalog.url, large.tenant_id, seeded, size, console))
            seeded = size
            total, usage = asyncio.run(_sizes_gib(catalog.url))
            figures.notes.append(
                f"{size:,} assets: database {total:.1f} GiB, of which the usage tables "
                f"{usage:.2f} GiB; tenant_usage_rebuild() (the migration's backfill) "
                f"{rebuilt:.0f} s"
            )
            time_rpcs(channel, catalog.url, large, size=size, repeat=repeat, figures=figures)
        at_scale = asyncio.run(write_path_ms(catalog.url, writer.tenant_id, seed=2))
    largest = _label(sizes[-1])
    writes: dict[str, float | int | str] = {f"write_{k}": v for k, v in timed.items()}
    writes |= {f"write_{k}_at_{largest}": v for k, v in at_scale.items()}
    report(figures, sizes, writes, console)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=20)
    arguments = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the catalog is stopped and the database dropped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    main([int(size) for size in arguments.sizes.split(",")], arguments.repeat)
