"""Serving renditions: delivery beside the S3 server itself, the same objects, one run.

Starts the real stack (devstack), uploads distinct photos and waits for their renditions,
then loads three targets with wrk (64 connections, 20 s each), every request a `card`
JPEG, the connections walking the same list of objects:

  (a) s3    presigned GET URLs served by the S3 server directly (what a page used before);
  (b) warm  delivery URLs (signed, versioned) on delivery, its hot object cache warm;
  (c) cold  the same URLs on delivery with its object cache off, so every body is read
            from S3 (URLs the minio SDK signs, fetched by aiohttp's client).

Delivery runs (b) and (c) twice: as one process, and as one per core
(IMAGEPIPE_DELIVERY_PROCESSES, workers sharing the port). Every target gets 2 s of load
before its measured run (caches, connection pools). Delivery keeps its lookup cache
throughout (catalog lookups are what the TTL cache is for, in production too). wrk and
every server share this machine's cores; the ratios, measured in one run, are what
carries over. The summary's warm and cold are the one-per-core figures.

    .venv/bin/python -m bench.delivery [--images 16] [--seconds 20] [--connections 64]

Goal: warm >= 1.0x s3, cold >= 0.5x s3. Last line: `summary: s3_rps=... warm_rps=...
cold_rps=... warm_ratio=... cold_ratio=... p99_ms_warm=...`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
from rich.console import Console
from rich.table import Table

from bench.common import corpus_photos, cpu_seconds, print_summary, rss_mib
from bench.wrk import WrkResult, require_wrk, run_wrk
from devstack import ServiceProcess, Stack, StackConfig, unique_jpeg
from imagepipe.client import AsyncClient
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2
from tests.helpers import downsized_jpeg

PRESET = "card"
WARM_UP_SECONDS = 2


async def _upload(stack: Stack, count: int) -> tuple[str, list[str]]:
    """(a new tenant's API key, the ids of `count` ready assets)."""
    photos = [downsized_jpeg(path, (1600, 1067)) for path in corpus_photos()]
    tag = secrets.token_hex(4)
    async with AsyncClient(
        admin_key=stack.admin_key, catalog_addr=stack.address("catalog")
    ) as admin:
        tenant = await admin.create_tenant(f"bench-{tag}")
    async with AsyncClient(
        tenant.secret_key,
        ingest_addr=stack.address("ingest"),
        catalog_addr=stack.address("catalog"),
    ) as client:
        ids = []
        for index in range(count):
            data = unique_jpeg(photos[index % len(photos)], f"delivery-{tag}-{index}")
            result = await client.upload(io.BytesIO(data), filename=f"d{index}.jpg")
            asset = await client.wait_ready(result.asset_id, timeout=600)
            if asset.status != common_pb2.ASSET_STATUS_READY:
                raise RuntimeError(f"upload {index} ended {asset.status}")
            ids.append(result.asset_id)
    return tenant.secret_key, ids


def _urls(stack: Stack, api_key: str, asset_ids: list[str]) -> tuple[list[str], list[str]]:
    """(delivery URLs, presigned S3 URLs) of every asset's card JPEG."""
    metadata = (("authorization", f"Bearer {api_key}"),)
    with grpc.insecure_channel(stack.address("catalog")) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        stub.CreateSigningKey(catalog_pb2.CreateSigningKeyRequest(label="bench"), metadata=metadata)
        delivery, presigned = [], []
        for asset_id in asset_ids:
            delivery.append(
                stub.GetDeliveryUrl(
                    catalog_pb2.GetDeliveryUrlRequest(
                        asset_id=asset_id, preset=PRESET, format=common_pb2.IMAGE_FORMAT_JPEG
                    ),
                    metadata=metadata,
                ).url
            )
            presigned.append(
                stub.GetRendition(
                    catalog_pb2.GetRenditionRequest(
                        asset_id=asset_id,
                        preset=PRESET,
                        accept_formats=[common_pb2.IMAGE_FORMAT_JPEG],
                        url_ttl_seconds=3600,
                    ),
                    metadata=metadata,
                ).url
            )
    return delivery, presigned


def _on_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


def _tree(pid: int) -> list[int]:
    """A process and its descendants (a delivery supervisor's workers, a launcher's
    server)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(p for child in children for p in _tree(int(child)))]


def _rss_of(service: ServiceProcess) -> float:
    assert service.process is not None
    return sum(rss_mib(pid) for pid in _tree(service.process.pid))


@dataclass(frozen=True)
class Cell:
    """One target's wrk result and the CPU its servers spent per request during it."""

    wrk: WrkResult
    delivery_us: float | None  # None: delivery was not in the path
    s3_us: float


def _measure(
    urls: list[str], connections: int, seconds: float, s3_pid: int, delivery_pid: int | None
) -> Cell:
    run_wrk(urls, connections=connections, seconds=WARM_UP_SECONDS)
    pids = {"s3": _tree(s3_pid), "delivery": [] if delivery_pid is None else _tree(delivery_pid)}
    before = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
    result = run_wrk(urls, connections=connections, seconds=seconds)
    spent = {name: sum(map(cpu_seconds, group)) - before[name] for name, group in pids.items()}
    served = max(result.rps * seconds, 1.0)
    return Cell(
        result,
        None if delivery_pid is None else spent["delivery"] / served * 1e6,
        spent["s3"] / served * 1e6,
    )


def _fetch_all(urls: list[str]) -> int:
    """GET every URL once (fills a cache); returns the bytes read."""
    total = 0
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as response:
            total += len(response.read())
    return total


def _report(console: Console, results: dict[str, Cell], rss: dict[str, float]) -> None:
    base = results["s3"].wrk
    table = Table(title=f"{PRESET} JPEGs over wrk, same objects, one run")
    columns = ("target", "req/s", "MB/s", "p50 ms", "p99 ms", "errors", "vs s3")
    for column in (*columns, "delivery CPU µs/req", "S3 CPU µs/req", "RSS MiB"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for name, cell in results.items():
        result = cell.wrk
        table.add_row(
            name,
            f"{result.rps:.0f}",
            f"{result.mb_s:.1f}",
            f"{result.p50_ms:.1f}",
            f"{result.p99_ms:.1f}",
            str(result.errors + result.non_2xx),
            f"{result.rps / base.rps:.2f}x",
            "-" if cell.delivery_us is None else f"{cell.delivery_us:.0f}",
            f"{cell.s3_us:.0f}",
            f"{rss[name]:.0f}" if name in rss else "-",
        )
    console.print(table)


def main(images: int, seconds: float, connections: int) -> None:
    require_wrk()
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as work:
        stack = Stack(StackConfig.from_env(Path(work)))
        with stack.running():
            api_key, asset_ids = asyncio.run(_upload(stack, images))
            delivery_urls, presigned = _urls(stack, api_key, asset_ids)
            cores = os.cpu_count() or 1
            body_bytes = _fetch_all(delivery_urls)
            console.print(
                f"{images} objects, {body_bytes / images / 1024:.1f} KiB each on average; "
                f"{connections} connections, {seconds:g} s per target; {cores} cores"
            )
            assert stack.s3.pid is not None
            s3_pid = stack.s3.pid
            results = {"s3": _measure(presigned, connections, seconds, s3_pid, None)}
            rss = {}
            for processes in sorted({1, cores}):
                for name, cache in (("warm", None), ("cold", "0")):
                    target = f"{name}, {processes} process{'es' if processes > 1 else ''}"
                    env = {"IMAGEPIPE_DELIVERY_PROCESSES": str(processes)}
                    if cache is not None:
                        env["IMAGEPIPE_DELIVERY_CACHE_BYTES"] = cache
                    service = stack.start_service("delivery", instance=f"{name}-{processes}", **env)
                    try:
                        service.wait_serving()
                        urls = [_on_port(url, service.port) for url in delivery_urls]
                        assert service.process is not None
                        results[target] = _measure(
                            urls, connections, seconds, s3_pid, service.process.pid
                        )
                        rss[target] = _rss_of(service)
                    finally:
                        service.stop()
    _report(console, results, rss)
    s3 = results["s3"]
    warm = results[max((n for n in results if n.startswith("warm")), key=_processes)]
    cold = results[max((n for n in results if n.startswith("cold")), key=_processes)]
    print_summary(
        {
            "s3_rps": s3.wrk.rps,
            "warm_rps": warm.wrk.rps,
            "cold_rps": cold.wrk.rps,
            "warm_ratio": warm.wrk.rps / s3.wrk.rps,
            "cold_ratio": cold.wrk.rps / s3.wrk.rps,
            "p99_ms_warm": warm.wrk.p99_ms,
            "warm_1_process_rps": results["warm, 1 process"].wrk.rps,
            "cold_1_process_rps": results["cold, 1 process"].wrk.rps,
            "s3_cpu_us": s3.s3_us,
            "warm_cpu_us": results["warm, 1 process"].delivery_us or 0.0,
            "cold_cpu_us": results["cold, 1 process"].delivery_us or 0.0,
        }
    )


def _processes(target: str) -> int:
    return int(target.split(", ")[1].split(maxsplit=1)[0])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    main(args.images, args.seconds, args.connections)
