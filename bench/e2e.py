"""End to end: upload -> ready latency and sustained throughput, beside the bare render.

Starts the real stack (devstack: S3 server, own database and queue names, the four
services) on this machine, so PostgreSQL, RabbitMQ, the S3 server and every service
share its cores with the renderer. Then:

- single uploads: one 12 MP photo at a time (each copy made unique by a JPEG
  comment, so nothing deduplicates), timed from the first byte sent until
  WatchAsset reports it ready; beside the bare render of the same photo (the
  render function alone, in this process);
- a batch: B copies of the 8-12 MP corpus photos uploaded over 8 streams while
  watched, with the renderer restarted with 1 and then 2 worker processes
  (IMAGEPIPE_RENDER_CONCURRENCY); images/s from the first upload to the last
  ready, beside what the bare render alone would do with as many processes.

    .venv/bin/python -m bench.e2e [--singles 10] [--batch 200]

Last line: `summary: single_p50_ms=… bare_render_ms=… single_budget_ms=…
batch_ips_1=… batch_ips_2=… bare_ips_2=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import CORPUS, LAG_BUCKETS, lag_share, percentile, print_summary, tenant_client
from devstack import Stack, StackConfig, scrape_metric, unique_jpeg
from imagepipe.client import AsyncClient
from imagepipe.v1 import common_pb2
from services.renderer.render import render_presets
from services.shared.imaging.decode import register_decoders
from services.shared.settings import Settings

SINGLE = CORPUS / "photo_olympus_ep3_12mp.jpg"
BATCH = (CORPUS / "photo_iphone6_gps.jpg", CORPUS / "photo_olympus_ep3_12mp.jpg")
STREAMS = 8


def bare_render_ms(path: Path, repeat: int = 7) -> float:
    """Median ms of the render function alone on this photo, single-threaded."""
    register_decoders()
    settings = Settings()
    data = path.read_bytes()
    samples = []
    for index in range(repeat + 1):
        started = time.perf_counter()
        render_presets(data, settings.presets, settings.max_pixels)
        if index:
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def upload_until_ready(client: AsyncClient, data: bytes, name: str) -> float:
    """Seconds from the first byte sent to `ready`."""
    started = time.perf_counter()
    result = await client.upload(io.BytesIO(data), filename=name)
    if result.deduplicated:
        raise RuntimeError("a benchmark upload was deduplicated; the bytes must differ")
    asset = await client.wait_ready(result.asset_id, timeout=600)
    if asset.status != common_pb2.ASSET_STATUS_READY:
        raise RuntimeError(f"{name} ended {common_pb2.AssetStatus.Name(asset.status)}")
    return time.perf_counter() - started


@dataclass
class BatchRun:
    processes: int
    seconds: float
    latencies: list[float]


async def batch(client: AsyncClient, count: int, processes: int) -> BatchRun:
    photos = [p.read_bytes() for p in BATCH]
    tag = secrets.token_hex(4)
    blobs = [unique_jpeg(photos[i % len(photos)], f"batch-{tag}-{i}") for i in range(count)]
    gate = asyncio.Semaphore(STREAMS)  # concurrent upload streams; watches are not limited

    async def one(index: int, data: bytes) -> float:
        started = time.perf_counter()
        async with gate:
            result = await client.upload(io.BytesIO(data), filename=f"batch-{index}.jpg")
        asset = await client.wait_ready(result.asset_id, timeout=900)
        if asset.status != common_pb2.ASSET_STATUS_READY:
            raise RuntimeError(f"batch image {index} ended {asset.status}")
        return time.perf_counter() - started

    started = time.perf_counter()
    latencies = await asyncio.gather(*(one(i, b) for i, b in enumerate(blobs)))
    return BatchRun(processes, time.perf_counter() - started, list(latencies))


def restart_renderer(stack: Stack, processes: int) -> None:
    stack.services["renderer"].stop()
    stack.services["renderer"] = stack.start_service(
        "renderer", IMAGEPIPE_RENDER_CONCURRENCY=str(processes)
    )
    stack.services["renderer"].wait_serving()


def main(singles: int, batch_size: int) -> None:
    console = Console(width=120)
    bare = {path.name: bare_render_ms(path) for path in {SINGLE, *BATCH}}
    runs: list[BatchRun] = []
    with tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as work:
        stack = Stack(StackConfig.from_env(Path(work)))
        with stack.running():

            async def singles_run() -> list[float]:
                async with await tenant_client(stack) as client:
                    data = SINGLE.read_bytes()
                    await upload_until_ready(client, unique_jpeg(data, "warm"), "warm.jpg")
                    tag = secrets.token_hex(4)
                    return [
                        await upload_until_ready(
                            client, unique_jpeg(data, f"{tag}-{i}"), f"single-{i}.jpg"
                        )
                        for i in range(singles)
                    ]

            single = asyncio.run(singles_run())
            for processes in (1, 2):
                restart_renderer(stack, processes)

                async def batch_run(processes: int = processes) -> BatchRun:
                    async with await tenant_client(stack) as client:
                        return await batch(client, batch_size, processes)

                runs.append(asyncio.run(batch_run()))
            lag = scrape_metric(stack.metrics_ports["renderer"], LAG_BUCKETS)

    bare_single = bare[SINGLE.name]
    budget = 1.5 * bare_single + 100
    single_ms = [s * 1000 for s in single]
    p50 = statistics.median(single_ms)
    table = Table(title=f"One 12 MP photo at a time ({SINGLE.name}), {singles} uploads")
    for column in ("p50 ms", "p95 ms", "bare render ms", "budget 1.5x + 100 ms", "p50 / budget"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{p50:.0f}",
        f"{percentile(single_ms, 0.95):.0f}",
        f"{bare_single:.0f}",
        f"{budget:.0f}",
        f"{p50 / budget:.2f}",
    )
    console.print(table)

    mean_bare = statistics.mean(bare[p.name] for p in BATCH)
    runs_table = Table(
        title=f"Batch of {batch_size} 8-12 MP photos, {STREAMS} upload streams, "
        "upload -> ready, whole stack on this machine"
    )
    for column in (
        "renderer processes",
        "images/s",
        "p50 latency s",
        "p95 latency s",
        "bare render images/s",
        "vs bare",
    ):
        runs_table.add_column(column, justify="right")
    for run in runs:
        ips = batch_size / run.seconds
        bare_ips = run.processes * 1000 / mean_bare
        runs_table.add_row(
            str(run.processes),
            f"{ips:.1f}",
            f"{statistics.median(run.latencies):.1f}",
            f"{percentile(run.latencies, 0.95):.1f}",
            f"{bare_ips:.1f}",
            f"{ips / bare_ips:.0%}",
        )
    console.print(runs_table)
    late = lag_share(lag, 0.05)
    console.print(f"renderer event loop: {late:.2%} of timer ticks woke more than 50 ms late")
    print_summary(
        {
            "single_p50_ms": p50,
            "bare_render_ms": bare_single,
            "single_budget_ms": budget,
            "batch_ips_1": batch_size / runs[0].seconds,
            "batch_ips_2": batch_size / runs[1].seconds,
            "bare_ips_2": 2 * 1000 / mean_bare,
            "renderer_loop_lag_over_50ms_pct": late * 100,
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--singles", type=int, default=10)
    parser.add_argument("--batch", type=int, default=200)
    arguments = parser.parse_args()
    main(arguments.singles, arguments.batch)
