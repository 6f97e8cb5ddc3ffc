"""Renditions end to end: sizes, orientation, object keys, downloads, idempotency."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import grpc
import pytest

from devstack import Stack
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, events_pb2
from services.shared.broker import Topology, render_message
from tests.helpers import Services, Tenant, upload, wait_for_status

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
MANIFEST: dict[str, dict[str, Any]] = {
    e["file"]: e for e in json.loads((CORPUS / "manifest.json").read_text())
}
BOXES = {"thumb": (100, 100), "card": (400, 400), "zoom": (1200, 1200)}


def _check_geometry(asset: common_pb2.Asset, oriented: tuple[int, int]) -> None:
    width, height = oriented
    assert sorted(r.preset for r in asset.renditions) == ["card", "thumb", "zoom"]
    for rendition in asset.renditions:
        box_w, box_h = BOXES[rendition.preset]
        assert rendition.width <= box_w and rendition.height <= box_h, rendition
        assert rendition.width <= width and rendition.height <= height, "never upscaled"
        assert rendition.width >= 1 and rendition.height >= 1
        # Aspect ratio within one pixel of the original's.
        assert abs(rendition.width * height / width - rendition.height) <= 1, rendition
        assert rendition.format == common_pb2.IMAGE_FORMAT_JPEG
        assert rendition.quality == 85


def test_a_photo_upload_ends_ready_with_its_renditions(services: Services, tenant: Tenant) -> None:
    """How soon is bench/e2e.py's to report (upload -> ready of this photo)."""
    name = "photo_olympus_ep3_12mp.jpg"
    uploaded = upload(services, tenant, (CORPUS / name).read_bytes(), name)
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id, timeout=120)
    assert asset.status == common_pb2.ASSET_STATUS_READY
    _check_geometry(asset, tuple(MANIFEST[name]["oriented_size"]))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_landscape_renditions(
    orientation: int, services: Services, tenant: Tenant
) -> None:
    name = f"orient_Landscape_{orientation}.jpg"
    uploaded = upload(services, tenant, (CORPUS / name).read_bytes(), name)
    assert (uploaded.asset.width, uploaded.asset.height) == (1800, 1200)
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id)
    _check_geometry(asset, (1800, 1200))
    assert all(r.width > r.height for r in asset.renditions)


def test_objects_live_at_the_documented_keys_and_download_identically(
    services: Services, stack: Stack, tenant: Tenant
) -> None:
    uploaded = upload(services, tenant, (CORPUS / "photo_iphone6_gps.jpg").read_bytes())
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id)
    client = stack.s3.client()
    prefix = f"renditions/{tenant.tenant_id}/{asset.asset_id}/"
    keys = sorted(
        o.object_name or ""
        for o in client.list_objects(stack.bucket, prefix=prefix, recursive=True)
    )
    # <preset>.<16 hex digits of the bytes' SHA-256>.<ext>: one object per committed row.
    named = {re.fullmatch(rf"{re.escape(prefix)}(\w+)\.[0-9a-f]{{16}}\.jpg", k) for k in keys}
    assert None not in named
    by_preset = {m.group(1): m.group(0) for m in named if m is not None}
    assert sorted(by_preset) == ["card", "thumb", "zoom"] and len(keys) == 3

    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    for rendition in asset.renditions:
        # The committed row points at an object that exists, with the row's size.
        stat = client.stat_object(stack.bucket, by_preset[rendition.preset])
        assert stat.size == rendition.size_bytes
    for preset in ("thumb", "card", "zoom"):
        stored = client.get_object(stack.bucket, by_preset[preset]).read()
        got = catalog.GetRendition(
            catalog_pb2.GetRenditionRequest(
                asset_id=asset.asset_id, preset=preset, url_ttl_seconds=60
            ),
            metadata=tenant.metadata,
        )
        with urllib.request.urlopen(got.url, timeout=10) as response:
            assert response.read() == stored
        assert got.url_expire_time.seconds - time.time() == pytest.approx(60, abs=5)
        streamed = b"".join(
            m.chunk
            for m in catalog.ReadRendition(
                catalog_pb2.ReadRenditionRequest(asset_id=asset.asset_id, preset=preset),
                metadata=tenant.metadata,
            )
            if m.WhichOneof("part") == "chunk"
        )
        assert streamed == stored
        assert b"Exif" not in stored[:4096] and b"GPS" not in stored[:4096]


def test_unknown_preset_and_unaccepted_format_are_not_found(
    services: Services, tenant: Tenant
) -> None:
    uploaded = upload(services, tenant, (CORPUS / "bmp_hopper_24bit.bmp").read_bytes())
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id)
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    for request in (
        catalog_pb2.GetRenditionRequest(asset_id=asset.asset_id, preset="poster"),
        catalog_pb2.GetRenditionRequest(
            asset_id=asset.asset_id, preset="card", accept_formats=[common_pb2.IMAGE_FORMAT_AVIF]
        ),
    ):
        with pytest.raises(grpc.RpcError) as failed:
            catalog.GetRendition(request, metadata=tenant.metadata)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND


def _rendition_state(stack: Stack, asset_id: str) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            rows = await connection.fetchval(
                "SELECT count(*) FROM renditions WHERE asset_id = $1::uuid", asset_id
            )
            attempts = await connection.fetchval(
                "SELECT count(*) FROM job_attempts t JOIN jobs j ON j.id = t.job_id "
                "WHERE j.asset_id = $1::uuid",
                asset_id,
            )
            return int(rows), int(attempts)
        finally:
            await connection.close()

    return asyncio.run(run())


def _skips(stack: Stack, job_id: str) -> int:
    """How many times any renderer logged that it skipped this finished job."""
    count = 0
    for log_file in stack.log_dir.glob("renderer*.log"):
        for line in log_file.read_text(errors="replace").splitlines():
            if job_id in line and line.startswith("{"):
                entry = json.loads(line)
                count += entry.get("event") == "job already finished; skipping"
    return count


def test_a_message_delivered_twice_leaves_one_set_of_renditions(
    services: Services, stack: Stack, tenant: Tenant
) -> None:
    uploaded = upload(services, tenant, (CORPUS / "tiff_adobe_deflate.tif").read_bytes())
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id)
    request = events_pb2.RenderRequest(
        job_id=asset.job_id,
        tenant_id=tenant.tenant_id,
        asset_id=asset.asset_id,
        original_key=f"originals/{tenant.tenant_id}/{asset.content_hash}",
        content_hash=asset.content_hash,
    )

    async def publish_again() -> None:
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(
                Topology(prefix=stack.prefix, delivery_limit=1).exchange
            )
            await exchange.publish(render_message(request), Topology.WORK_KEY)

    rows_before, attempts_before = _rendition_state(stack, asset.asset_id)
    assert _skips(stack, asset.job_id) == 0
    asyncio.run(publish_again())
    # The renderer says when it consumed the duplicate and skipped it: wait for that,
    # so "skipped" cannot be mistaken for "not consumed yet".
    deadline = time.monotonic() + 60
    while _skips(stack, asset.job_id) == 0:
        assert time.monotonic() < deadline, "the duplicate message was never consumed"
        time.sleep(0.1)
    rows_after, attempts_after = _rendition_state(stack, asset.asset_id)
    assert rows_before == rows_after == 3
    assert attempts_after == attempts_before == 1, "a finished job is acked without work"
    prefix = f"renditions/{tenant.tenant_id}/{asset.asset_id}/"
    objects = list(stack.s3.client().list_objects(stack.bucket, prefix=prefix, recursive=True))
    assert len(objects) == 3
    again = wait_for_status(services, tenant, asset.asset_id)
    assert again.status == common_pb2.ASSET_STATUS_READY
