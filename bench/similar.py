"""FindSimilar at scale: multi-index hashing against a sequential scan, same run.

Loads 100k, then 1M random 64-bit perceptual hashes for one tenant into a throwaway
database (migrated like production), then times the catalog's own near-duplicate
query (the asset store's near_duplicates: block indexes, then the exact distance)
beside the obvious baseline (the exact distance over every row of the tenant). Half
of the queries are near an existing hash, half are random.

    .venv/bin/python -m bench.similar [--queries 200] [--sizes 100000,1000000]

Last line: `summary: p50_ms_1m=… seqscan_p50_ms_1m=… speedup_1m=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import time
import uuid

import asyncpg
from rich.console import Console
from rich.table import Table

from bench.common import percentile
from devstack import DEFAULT_PG, drop_database
from services.catalog.db import PgAssetStore, create_pool
from services.catalog.db.migrate import apply_migrations, ensure_database
from services.catalog.similarity import signed_hash
from services.shared.settings import Settings

THRESHOLD = Settings().similarity_threshold
BASELINE = """
    SELECT id, perceptual_hash, bit_count((perceptual_hash # $2)::bit(64))::int AS distance
    FROM assets
    WHERE tenant_id = $1 AND deleted_at IS NULL
      AND bit_count((perceptual_hash # $2)::bit(64)) <= $3
    ORDER BY distance, id
    LIMIT $4
"""


async def load(
    connection: asyncpg.Connection, tenant: uuid.UUID, count: int, rng: random.Random
) -> list[int]:
    hashes = [rng.getrandbits(64) for _ in range(count)]
    records = [
        (
            uuid.uuid4(),
            tenant,
            "ready",
            secrets.token_hex(32),
            signed_hash(h),
            "image/jpeg",
            "jpeg",
            640,
            480,
            1000,
            "originals/bench",
        )
        for h in hashes
    ]
    await connection.copy_records_to_table(
        "assets",
        records=records,
        columns=[
            "id",
            "tenant_id",
            "status",
            "content_hash",
            "perceptual_hash",
            "content_type",
            "format",
            "width",
            "height",
            "size_bytes",
            "original_key",
        ],
    )
    # Index-only scans need the visibility map; autovacuum keeps it up to date in a
    # live system, here it is done at once.
    await connection.execute("VACUUM ANALYZE assets")
    return hashes


def queries(existing: list[int], count: int, rng: random.Random) -> list[int]:
    chosen = []
    for i in range(count):
        if i % 2 == 0:
            value = rng.choice(existing)
            for bit in rng.sample(range(64), rng.randint(0, THRESHOLD)):
                value ^= 1 << bit
            chosen.append(value)
        else:
            chosen.append(rng.getrandbits(64))
    return chosen


async def time_queries(
    assets: PgAssetStore, pool: asyncpg.Pool, tenant: uuid.UUID, probes: list[int]
) -> tuple[list[float], list[float], int]:
    ours, baseline, mismatches = [], [], 0
    for value in probes:
        started = time.perf_counter()
        fast = await assets.near_duplicates(tenant, value, THRESHOLD, 20, None)
        ours.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        slow = await pool.fetch(BASELINE, tenant, signed_hash(value), THRESHOLD, 20)
        baseline.append((time.perf_counter() - started) * 1000)
        mismatches += [r.asset_id for r in fast] != [r["id"] for r in slow]
    return ours, baseline, mismatches


async def main(sizes: list[int], query_count: int) -> None:
    console = Console(width=120)
    name = f"bench_similar_{secrets.token_hex(3)}"
    dsn = DEFAULT_PG.rsplit("/", 1)[0] + f"/{name}"
    await ensure_database(dsn)
    rng = random.Random(7)
    rows = []
    try:
        await apply_migrations(dsn)
        pool = await create_pool(dsn, 4)
        assets = PgAssetStore(pool)
        tenant = uuid.uuid4()
        existing: list[int] = []
        # Loading a million rows takes longer than the service's command timeout.
        connection = await asyncpg.connect(dsn, command_timeout=None)
        try:
            await connection.execute("INSERT INTO tenants (id, name) VALUES ($1, 'bench')", tenant)
            for size in sizes:
                started = time.perf_counter()
                existing += await load(connection, tenant, size - len(existing), rng)
                console.print(f"loaded {size:,} hashes in {time.perf_counter() - started:.1f} s")
                probes = queries(existing, query_count, rng)
                # Steady state: both methods see every query once before timing.
                await time_queries(assets, pool, tenant, probes)
                ours, baseline, mismatches = await time_queries(assets, pool, tenant, probes)
                rows.append((size, ours, baseline, mismatches))
        finally:
            await connection.close()
        await pool.close()
    finally:
        await drop_database(DEFAULT_PG, name)

    table = Table(
        title=f"FindSimilar, distance <= {THRESHOLD}, limit 20, {query_count} queries per size"
    )
    for column in (
        "hashes",
        "multi-index p50 ms",
        "p95 ms",
        "seq scan p50 ms",
        "p95 ms",
        "speedup (p50)",
        "same results",
    ):
        table.add_column(column, justify="right")
    summary = {}
    for size, ours, baseline, mismatches in rows:
        p50, p95 = statistics.median(ours), percentile(ours, 0.95)
        b50, b95 = statistics.median(baseline), percentile(baseline, 0.95)
        table.add_row(
            f"{size:,}",
            f"{p50:.2f}",
            f"{p95:.2f}",
            f"{b50:.1f}",
            f"{b95:.1f}",
            f"{b50 / p50:.0f}x",
            "yes" if mismatches == 0 else f"{mismatches} differ",
        )
        label = f"{size // 1_000_000}m" if size >= 1_000_000 else f"{size // 1000}k"
        summary[label] = (p50, b50)
    console.print(table)
    parts = []
    for label, (p50, b50) in summary.items():
        parts.append(f"p50_ms_{label}={p50:.2f} seqscan_p50_ms_{label}={b50:.1f}")
        parts.append(f"speedup_{label}={b50 / p50:.0f}")
    print("summary: " + " ".join(parts))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sizes", default="100000,1000000")
    arguments = parser.parse_args()
    asyncio.run(main([int(s) for s in arguments.sizes.split(",")], arguments.queries))
