"""Timings the tests do not assert: how long things take that the tests only order.

The tests assert lower bounds and orderings (a retry waits at least its delay, B's
upload finishes before half of A's backlog, a service exits 0 after SIGTERM), never
"took less than N s": on a shared machine that would fail on a slow day and prove
nothing on a fast one. This benchmark reports those durations instead, on the real
stack (devstack: S3 server, own database and queue names, the four services):

- SIGTERM: seconds from the signal until each service's process has exited (a fresh
  idle instance of each; the grace period for in-flight work is
  IMAGEPIPE_SHUTDOWN_GRACE_SECONDS, 10 s by default);
- backoff: an asset whose original is missing from the store, published once; the
  gaps between the starts of its four attempts, beside the delay queues' 2, 4 and 8 s;
- fair share: tenant A uploads a bulk of 1600x1200 photos, then tenant B uploads one;
  from the catalog's records, B's upload -> ready, and how long A's backlog took to
  get half done from the moment B uploaded;
- placeholder: the ThumbHash and dominant colour of each corpus photo's thumbnail (the
  renderer computes both from the smallest preset's pixels), single-threaded.

    .venv/bin/python -m bench.timings [--bulk 300] [--repeat 50]

Last line: `summary: sigterm_s_max=… backoff_gap_2s=… backoff_gap_4s=… backoff_gap_8s=…
fair_backlog=… fair_single_s=… fair_bulk_half_s=… thumbhash_ms=… placeholder_ms=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import itertools
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import asyncpg
import grpc
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.common import CORPUS, corpus_photos, print_summary, tenant_client
from devstack import SERVICES, Stack, StackConfig, unique_jpeg
from imagepipe.client import AsyncClient
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    common_pb2,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from services.renderer.render import render_presets
from services.shared.broker import Topology, render_message
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.placeholders import dominant_colour, thumbhash_encode
from services.shared.settings import Settings

BULK_PHOTO = CORPUS / "photo_olympus_ep3_12mp.jpg"
STREAMS = 8


def sigterm_seconds(stack: Stack) -> dict[str, float]:
    """Per service: seconds from SIGTERM until an idle instance's process exited."""
    seconds = {}
    for name in SERVICES:
        extra = stack.start_service(name, instance="bench-sigterm")
        try:
            extra.wait_serving()
            assert extra.process is not None
            started = time.perf_counter()
            extra.signal(signal.SIGTERM)
            extra.process.wait(timeout=120)
            seconds[name] = time.perf_counter() - started
        finally:
            extra.stop()
    return seconds


def backoff_gaps(stack: Stack) -> list[float]:
    """Gaps between the attempt starts of a job whose original is missing."""
    with grpc.insecure_channel(stack.address("catalog")) as channel:
        admin = tenant_admin_pb2_grpc.TenantAdminServiceStub(channel)
        tenant = admin.CreateTenant(
            tenant_admin_pb2.CreateTenantRequest(name=f"bench-backoff-{uuid.uuid4().hex[:8]}"),
            metadata=(("authorization", f"Bearer {stack.admin_key}"),),
            timeout=10,
        ).tenant
        digest = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        registered = catalog_internal_pb2_grpc.CatalogInternalServiceStub(channel).RegisterAsset(
            catalog_internal_pb2.RegisterAssetRequest(
                tenant_id=tenant.tenant_id,
                content_hash=digest,
                perceptual_hash="0f0f0f0f0f0f0f0f",
                content_type="image/png",
                format=common_pb2.IMAGE_FORMAT_PNG,
                width=300,
                height=225,
                size_bytes=1000,
                original_key=f"originals/{tenant.tenant_id}/{digest}",
            ),
            metadata=(("authorization", f"Bearer {stack.internal_token}"),),
            timeout=10,
        )

    async def run() -> list[float]:
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(
                Topology(prefix=stack.prefix, delivery_limit=1).exchange
            )
            await exchange.publish(render_message(registered.render_request), Topology.WORK_KEY)
        database = await asyncpg.connect(stack.database_url)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                state = await database.fetchval(
                    "SELECT state FROM jobs WHERE id = $1::uuid", registered.job.job_id
                )
                if state == "dead":
                    break
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError("the job with a missing original never became poison")
            starts = await database.fetch(
                "SELECT started_at FROM job_attempts WHERE job_id = $1::uuid ORDER BY attempt",
                registered.job.job_id,
            )
        finally:
            await database.close()
        return [
            (b["started_at"] - a["started_at"]).total_seconds()
            for a, b in itertools.pairwise(starts)
        ]

    return asyncio.run(run())


def downsized(path: Path, size: tuple[int, int]) -> bytes:
    with Image.open(path) as image:
        image.draft("RGB", size)
        small = image.convert("RGB").resize(size)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def fair_share(stack: Stack, bulk: int) -> tuple[int, float, float]:
    """(A's backlog when B uploaded, B's upload -> ready s, A's backlog half done s)."""
    photo = downsized(BULK_PHOTO, (1600, 1200))
    tag = uuid.uuid4().hex[:8]
    async with await tenant_client(stack) as alice, await tenant_client(stack) as bob:
        gate = asyncio.Semaphore(STREAMS)

        async def one(client: AsyncClient, index: int) -> str:
            async with gate:
                result = await client.upload(
                    io.BytesIO(unique_jpeg(photo, f"{tag}-{index}")), filename=f"{index}.jpg"
                )
            return result.asset_id

        bulk_ids = await asyncio.gather(*(one(alice, i) for i in range(bulk)))
        single = await one(bob, -1)
        if (await bob.wait_ready(single, timeout=900)).status != common_pb2.ASSET_STATUS_READY:
            raise RuntimeError("B's upload did not end ready")
        for asset_id in bulk_ids:
            await alice.wait_ready(asset_id, timeout=900)
    database = await asyncpg.connect(stack.database_url)
    try:
        b = await database.fetchrow(
            "SELECT created_at, finished_at FROM jobs WHERE asset_id = $1::uuid", single
        )
        if b is None:
            raise RuntimeError("B's job is missing")
        finished = await database.fetch(
            "SELECT finished_at FROM jobs WHERE asset_id = ANY($1::uuid[]) "
            "AND finished_at > $2 ORDER BY finished_at",
            bulk_ids,
            b["created_at"],
        )
    finally:
        await database.close()
    backlog = len(finished)
    half = finished[backlog // 2]["finished_at"] if backlog else b["created_at"]
    return (
        backlog,
        (b["finished_at"] - b["created_at"]).total_seconds(),
        (half - b["created_at"]).total_seconds(),
    )


def placeholder_ms(repeat: int) -> dict[str, tuple[float, float]]:
    """Per photo: median ms of the ThumbHash and of the dominant colour, computed from
    its smallest rendition as the renderer does."""
    register_decoders()
    settings = Settings()
    smallest = min(settings.presets, key=lambda p: p.max_width * p.max_height)
    timings = {}
    for path in corpus_photos():
        rendition = next(
            r
            for r in render_presets(
                path.read_bytes(), settings.presets, settings.max_pixels
            ).renditions
            if r.preset == smallest.name
        )
        with Image.open(io.BytesIO(rendition.data)) as image:
            thumb = image.convert("RGB")
        hashing, colour = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            thumbhash_encode(thumb)
            between = time.perf_counter()
            dominant_colour(thumb)
            hashing.append((between - started) * 1000)
            colour.append((time.perf_counter() - between) * 1000)
        timings[path.name] = (statistics.median(hashing), statistics.median(colour))
    return timings


def main(bulk: int, repeat: int) -> None:
    console = Console(width=140)
    placeholders = placeholder_ms(repeat)
    with tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as work:
        stack = Stack(StackConfig.from_env(Path(work)))
        with stack.running():
            stops = sigterm_seconds(stack)
            gaps = backoff_gaps(stack)
            backlog, single_s, half_s = asyncio.run(fair_share(stack, bulk))

    table = Table(title="SIGTERM -> exit, idle instance")
    table.add_column("service")
    table.add_column("seconds", justify="right")
    for name, seconds in stops.items():
        table.add_row(name, f"{seconds:.2f}")
    console.print(table)

    table = Table(title="Retries of a missing original: gaps between attempt starts")
    for column in ("retry", "delay queue s", "gap s", "over the delay s"):
        table.add_column(column, justify="right")
    for number, (delay, gap) in enumerate(zip((2, 4, 8), gaps, strict=True), start=1):
        table.add_row(str(number), str(delay), f"{gap:.2f}", f"{gap - delay:.2f}")
    console.print(table)

    table = Table(title=f"Fair share: A uploads {bulk} photos, then B uploads one")
    for column in ("A's backlog at B's upload", "B upload -> ready s", "A's backlog half done s"):
        table.add_column(column, justify="right")
    table.add_row(str(backlog), f"{single_s:.1f}", f"{half_s:.1f}")
    console.print(table)

    table = Table(title=f"Placeholder from the thumb, ms (median of {repeat})")
    for column in ("photo", "ThumbHash", "dominant colour", "both"):
        table.add_column(column, justify="right")
    for name, (hashing, colour) in placeholders.items():
        table.add_row(name, f"{hashing:.2f}", f"{colour:.2f}", f"{hashing + colour:.2f}")
    console.print(table)

    print_summary(
        {
            "sigterm_s_max": max(stops.values()),
            "backoff_gap_2s": gaps[0],
            "backoff_gap_4s": gaps[1],
            "backoff_gap_8s": gaps[2],
            "fair_backlog": backlog,
            "fair_single_s": single_s,
            "fair_bulk_half_s": half_s,
            "thumbhash_ms": statistics.median(h for h, _ in placeholders.values()),
            "placeholder_ms": statistics.median(h + c for h, c in placeholders.values()),
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bulk", type=int, default=300, help="tenant A's uploads")
    parser.add_argument("--repeat", type=int, default=50, help="timed placeholder runs")
    arguments = parser.parse_args()
    main(arguments.bulk, arguments.repeat)
