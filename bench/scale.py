"""Scale-out: renders per second with 1, 2 and 4 renderer processes sharing one queue.

Starts the real stack, stops its renderer, queues a batch of distinct 8-12 MP photos
(so every run drains the same kind of backlog), then starts N renderer processes
(each IMAGEPIPE_RENDER_CONCURRENCY=1: one job at a time, so N processes are N
competing consumers) and measures the steady rate: renders per second between the
asset at the 10th percentile of the ready times and the last one, so the processes'
start-up is left out. The per-tenant in-flight limit is switched off: this measures the renderers,
not the fair-share release of a single tenant's backlog.

    .venv/bin/python -m bench.scale [--batch 60]

Last line: `summary: rps_1=… rps_2=… rps_4=… speedup_2=… speedup_4=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import CORPUS, print_summary, tenant_client
from devstack import ServiceProcess, Stack, StackConfig, unique_jpeg
from imagepipe.client import AsyncClient
from imagepipe.v1 import common_pb2

PHOTOS = (CORPUS / "photo_iphone6_gps.jpg", CORPUS / "photo_olympus_ep3_12mp.jpg")
COUNTS = (1, 2, 4)


async def enqueue(client: AsyncClient, count: int) -> list[str]:
    photos = [p.read_bytes() for p in PHOTOS]
    tag = secrets.token_hex(4)
    gate = asyncio.Semaphore(8)

    async def one(index: int) -> str:
        async with gate:
            data = unique_jpeg(photos[index % len(photos)], f"scale-{tag}-{index}")
            result = await client.upload(io.BytesIO(data), filename=f"scale-{index}.jpg")
        return result.asset_id

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def drain(client: AsyncClient, asset_ids: list[str]) -> list[float]:
    """When each asset became ready (perf_counter seconds), in order."""

    async def one(asset_id: str) -> float:
        asset = await client.wait_ready(asset_id, timeout=900)
        if asset.status != common_pb2.ASSET_STATUS_READY:
            raise RuntimeError(f"asset {asset_id} ended {asset.status}")
        return time.perf_counter()

    return sorted(await asyncio.gather(*(one(a) for a in asset_ids)))


def steady_rate(ready_times: list[float]) -> float:
    """Renders/s once every renderer is up: from the 10th percentile ready to the last."""
    first = max(1, len(ready_times) // 10)
    return (len(ready_times) - 1 - first) / (ready_times[-1] - ready_times[first])


def run_with(stack: Stack, processes: int, batch: int) -> float:
    """Renders per second of `processes` renderers draining a queued batch."""

    def start_renderers() -> list[ServiceProcess]:
        return [
            stack.start_service(
                "renderer", instance=f"scale{processes}-{i}", IMAGEPIPE_RENDER_CONCURRENCY="1"
            )
            for i in range(processes)
        ]

    renderers: list[ServiceProcess] = []

    async def measure() -> list[float]:
        async with await tenant_client(stack) as client:
            asset_ids = await enqueue(client, batch)
            renderers.extend(await asyncio.to_thread(start_renderers))
            return await drain(client, asset_ids)

    try:
        return steady_rate(asyncio.run(measure()))
    finally:
        # Extra instances are not in stack.services: stop them here, whatever happened.
        for renderer in renderers:
            renderer.stop()


def main(batch: int) -> None:
    console = Console(width=120)
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as work:
        config = StackConfig.from_env(Path(work), extra_env={"IMAGEPIPE_TENANT_MAX_IN_FLIGHT": "0"})
        stack = Stack(config)
        with stack.running():
            stack.services["renderer"].stop()
            for processes in COUNTS:
                rates[processes] = run_with(stack, processes, batch)
    table = Table(
        title=f"{batch} queued 8-12 MP photos drained by N renderer processes "
        f"({os.cpu_count()} cores; steady rate after start-up)"
    )
    for column in ("renderer processes", "renders/s", "vs 1 process"):
        table.add_column(column, justify="right")
    for processes, rate in rates.items():
        table.add_row(str(processes), f"{rate:.1f}", f"{rate / rates[1]:.2f}x")
    console.print(table)
    print_summary(
        {
            "rps_1": rates[1],
            "rps_2": rates[2],
            "rps_4": rates[4],
            "speedup_2": rates[2] / rates[1],
            "speedup_4": rates[4] / rates[1],
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=80)
    main(parser.parse_args().batch)
