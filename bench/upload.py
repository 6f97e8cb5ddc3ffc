"""Upload throughput and memory: ingest beside a raw minio put of the same bytes.

Starts the real stack (devstack: the S3 server, its own database and queue names,
the four services), stops the renderer so only ingest works, then:

- uploads N distinct photos (the corpus photos, each copy made unique by a JPEG
  comment so nothing deduplicates) over S concurrent streams with the client;
- puts the same bytes with the `minio` SDK, S threads, straight into the same
  bucket of the same S3 server: what storing them costs with no pipeline at all.

- validates and hashes the same photos with nothing else running: the reduced decode
  and perceptual hash that R3.2/R3.3 ask of every upload before it is stored, in one
  worker process per core, files already on disk. Every upload does this work, so it
  bounds what ingest can reach on this machine whatever the rest costs.

Each runs twice, interleaved; the fastest round counts. The machine's busy CPU time
per image (all cores, all processes: client, services, S3 server, database, broker)
is printed beside each, because on one machine the raw put is CPU-bound too. Then
memory: 50 MiB
uploads (an uncompressed BMP scan just under the upload cap), 1, 2, 4 and 8 at once,
while ingest's resident set is sampled; the growth per concurrent upload is what a
streaming upload costs in RAM.

    .venv/bin/python -m bench.upload [--count 50] [--streams 8]

Last line: `summary: upload_mb_s=… raw_put_mb_s=… upload_ratio=… images_per_s=…
decode_alone_ratio=… rss_growth_mib_per_upload=… cpu_ms_upload=… cpu_ms_raw_put=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.common import (
    LAG_BUCKETS,
    corpus_photos,
    lag_share,
    machine_busy_seconds,
    print_summary,
    rss_mib,
    tenant_client,
    tree_cpu_seconds,
)
from devstack import Stack, StackConfig, scrape_metric, unique_jpeg
from imagepipe.client import AsyncClient
from services.shared.imaging.decode import inspect_image
from services.shared.sandbox import prepare_worker
from services.shared.settings import Settings

MIB = 1024 * 1024


def distinct_photos(count: int, tag: str) -> list[bytes]:
    photos = [p.read_bytes() for p in corpus_photos()]
    return [unique_jpeg(photos[i % len(photos)], f"{tag}-{i}") for i in range(count)]


def large_bmp(tag: int) -> bytes:
    """An uncompressed 24-bit BMP of about 50 MiB (4096x4266, 17.5 MP), unique per tag."""
    width, height = 4096, 4266
    with Image.open(corpus_photos()[0]) as photo:
        photo.draft("RGB", (width // 2, height // 2))
        image = photo.convert("RGB").resize((width, height))
    image.putpixel((0, 0), (tag % 256, tag // 256 % 256, 7))
    buffer = io.BytesIO()
    image.save(buffer, "BMP")
    return buffer.getvalue()


async def bounded(jobs: list[Callable[[], Awaitable[None]]], streams: int) -> float:
    """Run the jobs `streams` at a time; wall seconds."""
    gate = asyncio.Semaphore(streams)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    started = time.perf_counter()
    await asyncio.gather(*(one(job) for job in jobs))
    return time.perf_counter() - started


async def upload_all(client: AsyncClient, blobs: list[bytes], streams: int) -> float:
    def job(data: bytes, index: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            result = await client.upload(io.BytesIO(data), filename=f"bench-{index}.jpg")
            if result.deduplicated:
                raise RuntimeError("a benchmark upload was deduplicated; the bytes must differ")

        return run

    return await bounded([job(data, i) for i, data in enumerate(blobs)], streams)


def raw_put_all(stack: Stack, blobs: list[bytes], streams: int, tag: str) -> float:
    client = stack.s3.client()

    def put(item: tuple[int, bytes]) -> None:
        index, data = item
        client.put_object(
            stack.bucket, f"bench-raw/{tag}/{index}", io.BytesIO(data), len(data), "image/jpeg"
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(put, enumerate(blobs)))
    return time.perf_counter() - started


def _inspect_file(path: str, max_pixels: int) -> None:
    inspect_image(Path(path), max_pixels)


def decode_alone(blobs: list[bytes], directory: Path) -> tuple[float, float]:
    """(wall, busy CPU) seconds to validate and hash `blobs` as ingest does, one
    worker per core.

    The files are written first, so this is the image work alone: no network, no
    storage, no catalog.
    """
    paths = []
    for index, data in enumerate(blobs):
        path = directory / f"decode-{index}"
        path.write_bytes(data)
        paths.append(str(path))
    context = multiprocessing.get_context("spawn")
    processes = os.cpu_count() or 1
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=prepare_worker, initargs=(0,)
    ) as pool:
        limits = [Settings().max_pixels] * len(paths)  # ingest's pixel cap, read once
        list(pool.map(_inspect_file, paths[: processes * 2], limits))  # start, warm the workers
        busy = machine_busy_seconds()
        started = time.perf_counter()
        list(pool.map(_inspect_file, paths, limits))
        return time.perf_counter() - started, machine_busy_seconds() - busy


async def timed_cpu(work: Awaitable[float]) -> tuple[float, float]:
    """(wall seconds the work reports, busy CPU seconds of the whole machine meanwhile)."""
    before = machine_busy_seconds()
    seconds = await work
    return seconds, machine_busy_seconds() - before


class RssSampler:
    """Samples a process's resident set every 10 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_mib(self._pid))
            self._stop.wait(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def memory_growth(client: AsyncClient, pid: int, concurrent: int, seed: int) -> float:
    """Peak RSS growth of ingest (MiB) while `concurrent` 50 MiB uploads stream in."""
    blobs = await asyncio.to_thread(lambda: [large_bmp(seed + i) for i in range(concurrent)])
    await asyncio.sleep(0.5)
    baseline = rss_mib(pid)
    with RssSampler(pid) as sampler:
        await upload_all(client, blobs, concurrent)
    return max(sampler.samples) - baseline


UPLOAD, RAW_PUT, DECODE_ALONE = "imagepipe upload", "raw minio put", "decode proof alone"


@dataclass
class Measured:
    rounds: dict[str, list[tuple[float, float]]]  # method -> (wall seconds, busy CPU seconds)
    total_bytes: int
    growth: dict[int, float]
    lag: dict[str, float]
    cpu_ms: tuple[float, float]  # per upload: ingest's own process, its decoder workers


async def measure(stack: Stack, count: int, streams: int, work: Path) -> Measured:
    client = await tenant_client(stack)
    ingest = stack.services["ingest"].process
    assert ingest is not None
    async with client:
        # Warm-up: connections, decoder workers, the bucket.
        await upload_all(client, distinct_photos(4, f"warm-{secrets.token_hex(4)}"), streams)
        rounds: dict[str, list[tuple[float, float]]] = {UPLOAD: [], RAW_PUT: [], DECODE_ALONE: []}
        total = 0
        cpu_ms = (0.0, 0.0)
        for round_number in range(2):
            blobs = distinct_photos(count, f"r{round_number}-{secrets.token_hex(4)}")
            total = sum(len(b) for b in blobs)
            rounds[RAW_PUT].append(
                await timed_cpu(
                    asyncio.to_thread(raw_put_all, stack, blobs, streams, f"r{round_number}")
                )
            )
            rounds[DECODE_ALONE].append(await asyncio.to_thread(decode_alone, blobs, work))
            before = tree_cpu_seconds(ingest.pid)
            rounds[UPLOAD].append(await timed_cpu(upload_all(client, blobs, streams)))
            after = tree_cpu_seconds(ingest.pid)
            cpu_ms = (
                (after[0] - before[0]) * 1000 / count,
                (after[1] - before[1]) * 1000 / count,
            )
        # One 50 MiB upload first: one-off allocations (thread pools, buffers) are not
        # what a concurrent upload costs.
        await memory_growth(client, ingest.pid, 1, 1000)
        growth = {n: await memory_growth(client, ingest.pid, n, 10 * n) for n in (1, 2, 4, 8)}
    lag = scrape_metric(stack.metrics_ports["ingest"], LAG_BUCKETS)
    return Measured(rounds, total, growth, lag, cpu_ms)


def main(count: int, streams: int) -> None:
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as work:
        stack = Stack(StackConfig.from_env(Path(work)))
        with stack.running():
            stack.services["renderer"].stop()  # ingest alone; render requests wait queued
            measured = asyncio.run(measure(stack, count, streams, Path(work)))
    total, growth, lag = measured.total_bytes, measured.growth, measured.lag
    best = {label: min(runs) for label, runs in measured.rounds.items()}
    table = Table(
        title=f"{count} photos ({total / MIB:.0f} MiB), {streams} concurrent streams, "
        f"{os.cpu_count()} cores"
    )
    for column in ("method", "seconds", "MB/s", "images/s", "vs raw put", "CPU ms / image"):
        table.add_column(column, justify="right")
    raw = best[RAW_PUT][0]
    for label, (seconds, busy) in best.items():
        table.add_row(
            label,
            f"{seconds:.2f}",
            f"{total / seconds / 1e6:.1f}",
            f"{count / seconds:.1f}",
            f"{raw / seconds:.0%}",
            f"{busy * 1000 / count:.1f}",
        )
    console.print(table)
    console.print(
        "CPU ms / image: busy CPU time of the whole machine per image. The decode proof "
        "alone is the validation every upload needs before it is stored, on every core "
        "with nothing else running: no ingest can pass it on this machine."
    )

    memory = Table(title="ingest resident set while 50 MiB uploads stream in")
    for column in ("concurrent uploads", "peak growth MiB", "per upload MiB"):
        memory.add_column(column, justify="right")
    for concurrent, mib in growth.items():
        memory.add_row(str(concurrent), f"{mib:.1f}", f"{mib / concurrent:.1f}")
    console.print(memory)
    own, decoders = measured.cpu_ms
    console.print(
        f"CPU per upload: ingest {own:.0f} ms, its decoder workers {decoders:.0f} ms "
        f"(validation: every scan decoded, at reduced scale)"
    )
    late = lag_share(lag, 0.05)
    console.print(f"ingest event loop: {late:.2%} of 50 ms timer ticks woke more than 50 ms late")

    ours, ours_busy = best[UPLOAD]
    print_summary(
        {
            "upload_mb_s": total / ours / 1e6,
            "raw_put_mb_s": total / raw / 1e6,
            "upload_ratio": raw / ours,
            "images_per_s": count / ours,
            "decode_alone_ratio": raw / best[DECODE_ALONE][0],
            "rss_growth_mib_per_upload": max(mib / n for n, mib in growth.items()),
            "cpu_ms_upload": ours_busy * 1000 / count,
            "cpu_ms_raw_put": best[RAW_PUT][1] * 1000 / count,
            "loop_lag_over_50ms_pct": late * 100,
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--streams", type=int, default=8)
    arguments = parser.parse_args()
    main(arguments.count, arguments.streams)
