"""Catalog operations end to end: metrics, delete, purge, near duplicates, watch, paging."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from PIL import Image

from devstack import Stack
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)
from tests.faults.support import Uploader, make_images, query, wait_settled
from tests.helpers import Services, Tenant, register_directly, upload, wait_for_status

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
THRESHOLD = 8  # IMAGEPIPE_SIMILARITY_THRESHOLD's default


def _catalog(services: Services) -> catalog_pb2_grpc.CatalogServiceStub:
    return catalog_pb2_grpc.CatalogServiceStub(services.catalog)


def _listing(stack: Stack, prefix: str) -> dict[str, int]:
    client = stack.s3.client()
    return {
        o.object_name or "": o.size or 0
        for o in client.list_objects(stack.bucket, prefix=prefix, recursive=True)
    }


def _failed_asset(services: Services, stack: Stack, tenant: Tenant, data: bytes) -> str:
    """An asset whose render was given up on, its original in the store."""
    digest = hashlib.sha256(data).hexdigest()
    key = f"originals/{tenant.tenant_id}/{digest}"
    stack.s3.client().put_object(stack.bucket, key, io.BytesIO(data), len(data))
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    registered = register_directly(
        services,
        tenant,
        content_hash=digest,
        perceptual_hash="0123456789abcdef",
        size_bytes=len(data),
    )
    internal.RecordPoisonJob(
        catalog_internal_pb2.RecordPoisonJobRequest(
            request=registered.render_request,
            error="test",
            reason=catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
        ),
        metadata=services.internal_metadata,
    )
    return registered.asset.asset_id


def test_metrics_agree_with_the_database_and_the_store(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("metrics")
    files = [
        "bmp_hopper_24bit.bmp",
        "png_rgba_dice.png",
        "webp_lossy_denali.webp",
        "jpeg_grayscale_concert.jpg",
    ]
    uploaded = {name: upload(services, tenant, (CORPUS / name).read_bytes()) for name in files}
    duplicates = ["bmp_hopper_24bit.bmp", "bmp_hopper_24bit.bmp", "png_rgba_dice.png"]
    for name in duplicates:
        assert upload(services, tenant, (CORPUS / name).read_bytes()).deduplicated
    duplicate_bytes = sum((CORPUS / name).stat().st_size for name in duplicates)
    _catalog(services).DeleteAsset(
        catalog_pb2.DeleteAssetRequest(
            asset_id=uploaded["jpeg_grayscale_concert.jpg"].asset.asset_id
        ),
        metadata=tenant.metadata,
    )
    _failed_asset(services, stack, tenant, b"not really a png, never rendered" * 10)
    wait_settled(stack, tenant, timeout=60)

    metrics = _catalog(services).GetTenantMetrics(
        catalog_pb2.GetTenantMetricsRequest(), metadata=tenant.metadata
    )
    (counted,) = query(
        stack,
        """
        SELECT
          (SELECT count(*) FROM assets WHERE tenant_id = $1::uuid AND deleted_at IS NULL) AS live,
          (SELECT count(*) FROM renditions r JOIN assets a ON a.id = r.asset_id
            WHERE a.tenant_id = $1::uuid AND a.deleted_at IS NULL) AS renditions,
          (SELECT count(*) FROM poison_jobs WHERE tenant_id = $1::uuid) AS poison
        """,
        tenant.tenant_id,
    )
    statuses = {common_pb2.AssetStatus.Name(s.status): s.count for s in metrics.assets_by_status}
    print(f"\nmetrics: {metrics}")
    assert metrics.asset_count == counted["live"] == 4
    assert statuses == {
        "ASSET_STATUS_READY": 3,
        "ASSET_STATUS_FAILED": 1,
        "ASSET_STATUS_DELETED": 1,
    }
    assert metrics.rendition_count == counted["renditions"] == 9
    assert metrics.poison_job_count == counted["poison"] == 1
    assert metrics.original_bytes == sum(_listing(stack, f"originals/{tenant.tenant_id}/").values())
    assert metrics.rendition_bytes == sum(
        _listing(stack, f"renditions/{tenant.tenant_id}/").values()
    )
    assert metrics.deduplicated_uploads == 3
    assert metrics.logical_bytes - metrics.physical_bytes == duplicate_bytes
    by_format = {
        common_pb2.ImageFormat.Name(f.format): (f.count, f.size_bytes)
        for f in metrics.renditions_by_format
    }
    assert by_format == {"IMAGE_FORMAT_JPEG": (12, metrics.rendition_bytes)}


def test_deleted_assets_vanish_and_their_bytes_can_come_back(
    services: Services, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("delete")
    data = (CORPUS / "gif_static_crash_test.gif").read_bytes()
    first = upload(services, tenant, data)
    wait_for_status(services, tenant, first.asset.asset_id)
    catalog = _catalog(services)
    catalog.DeleteAsset(
        catalog_pb2.DeleteAssetRequest(asset_id=first.asset.asset_id), metadata=tenant.metadata
    )
    catalog.DeleteAsset(
        catalog_pb2.DeleteAssetRequest(asset_id=first.asset.asset_id), metadata=tenant.metadata
    )
    assert (
        catalog.ListAssets(catalog_pb2.ListAssetsRequest(), metadata=tenant.metadata).assets == []
    )
    near = catalog.FindSimilar(
        catalog_pb2.FindSimilarRequest(perceptual_hash=first.asset.perceptual_hash),
        metadata=tenant.metadata,
    )
    assert list(near.assets) == []
    again = upload(services, tenant, data)
    assert not again.deduplicated and again.asset.asset_id != first.asset.asset_id
    assert (
        wait_for_status(services, tenant, again.asset.asset_id).status
        == common_pb2.ASSET_STATUS_READY
    )


def _purge(services: Services, tenant: Tenant, apply: bool, days: int) -> catalog_pb2.PurgeResponse:
    response: catalog_pb2.PurgeResponse = _catalog(services).Purge(
        catalog_pb2.PurgeRequest(dry_run=not apply, older_than_days=days), metadata=tenant.metadata
    )
    return response


def test_purge_frees_exactly_what_nothing_live_uses(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("purge")
    keep = upload(services, tenant, (CORPUS / "bmp_hopper_24bit.bmp").read_bytes())
    drop = upload(services, tenant, (CORPUS / "png_palette_trns.png").read_bytes())
    for response in (keep, drop):
        wait_for_status(services, tenant, response.asset.asset_id)
    _catalog(services).DeleteAsset(
        catalog_pb2.DeleteAssetRequest(asset_id=drop.asset.asset_id), metadata=tenant.metadata
    )
    client = stack.s3.client()
    orphan_original = f"originals/{tenant.tenant_id}/{'ab' * 32}"
    orphan_rendition = f"renditions/{tenant.tenant_id}/{uuid.uuid4()}/card.jpg"
    under_live_asset = f"renditions/{tenant.tenant_id}/{keep.asset.asset_id}/poster.jpg"
    for key, size in ((orphan_original, 1000), (orphan_rendition, 300), (under_live_asset, 50)):
        client.put_object(stack.bucket, key, io.BytesIO(b"x" * size), size)
    prefix = f"/{tenant.tenant_id}/"
    before = {**_listing(stack, "originals" + prefix), **_listing(stack, "renditions" + prefix)}

    # Nothing is older than a day: a real purge with the default cut-off frees nothing.
    assert _purge(services, tenant, apply=True, days=1).object_count == 0
    planned = _purge(services, tenant, apply=False, days=0)
    after_dry_run = {
        **_listing(stack, "originals" + prefix),
        **_listing(stack, "renditions" + prefix),
    }
    assert after_dry_run == before, "a dry run changes nothing"

    dropped_keys = {k for k in before if drop.asset.asset_id in k} | {
        f"originals/{tenant.tenant_id}/{drop.asset.content_hash}"
    }
    expected = dropped_keys | {orphan_original, orphan_rendition}
    assert {i.object_key for i in planned.items} == expected
    done = _purge(services, tenant, apply=True, days=0)
    print(
        f"\npurge: {done.object_count} objects, {done.bytes_freed} bytes, "
        f"{done.asset_rows_removed} asset rows"
    )
    assert {i.object_key for i in done.items} == expected
    assert done.bytes_freed == sum(before[k] for k in expected)
    assert done.asset_rows_removed == 1
    remaining = {**_listing(stack, "originals" + prefix), **_listing(stack, "renditions" + prefix)}
    assert set(remaining) == set(before) - expected
    assert under_live_asset in remaining, "nothing under a live asset is purged"
    assert (
        query(stack, "SELECT count(*) AS n FROM assets WHERE id = $1::uuid", drop.asset.asset_id)[
            0
        ]["n"]
        == 0
    )
    assert (
        wait_for_status(services, tenant, keep.asset.asset_id).status
        == common_pb2.ASSET_STATUS_READY
    )
    assert _purge(services, tenant, apply=True, days=0).object_count == 0


def test_purge_racing_reuploads_of_the_same_bytes_never_loses_the_live_original(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("race")
    data = (CORPUS / "jpeg_progressive_portrait.jpg").read_bytes()
    client = stack.s3.client()
    for _round in range(6):
        first = upload(services, tenant, data)
        _catalog(services).DeleteAsset(
            catalog_pb2.DeleteAssetRequest(asset_id=first.asset.asset_id), metadata=tenant.metadata
        )
        results: list[str] = []

        def reupload(into: list[str] = results) -> None:
            into.append(upload(services, tenant, data).asset.asset_id)

        purger = threading.Thread(target=lambda: _purge(services, tenant, apply=True, days=0))
        uploader = threading.Thread(target=reupload)
        purger.start()
        uploader.start()
        purger.join()
        uploader.join()
        (live,) = results
        key = f"originals/{tenant.tenant_id}/{first.asset.content_hash}"
        assert client.stat_object(stack.bucket, key).size == len(data), (
            "the live asset's original is there"
        )
        assert wait_for_status(services, tenant, live).status == common_pb2.ASSET_STATUS_READY
        _catalog(services).DeleteAsset(
            catalog_pb2.DeleteAssetRequest(asset_id=live), metadata=tenant.metadata
        )


def _variant(name: str, change: Callable[[Image.Image], Image.Image], quality: int) -> bytes:
    with Image.open(CORPUS / name) as image:
        changed = change(image.convert("RGB"))
    buffer = io.BytesIO()
    changed.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_resized_and_cropped_copies_are_near_duplicates_unrelated_photos_are_not(
    services: Services, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("similar")
    base = "photo_iphone6_gps.jpg"
    original = upload(services, tenant, (CORPUS / base).read_bytes())
    others = [
        upload(services, tenant, (CORPUS / name).read_bytes())
        for name in (
            "photo_craft-beer_6000x4000.jpg",
            "photo_olympus_ep3_12mp.jpg",
            "photo_moto_g9_empty_gps.jpg",
        )
    ]
    resized = upload(
        services, tenant, _variant(base, lambda i: i.resize((i.width // 3, i.height // 3)), 60)
    )
    cropped = upload(
        services,
        tenant,
        _variant(
            base,
            lambda i: i.crop(
                (i.width // 50, i.height // 50, i.width * 49 // 50, i.height * 49 // 50)
            ),
            85,
        ),
    )
    near_resized = {a.asset_id: a.distance for a in resized.near_duplicates}
    near_cropped = {a.asset_id: a.distance for a in cropped.near_duplicates}
    print(
        f"\nnear duplicates (threshold {THRESHOLD}): resized {near_resized}, cropped {near_cropped}"
    )
    assert original.asset.asset_id in near_resized and original.asset.asset_id in near_cropped
    found = _catalog(services).FindSimilar(
        catalog_pb2.FindSimilarRequest(asset_id=original.asset.asset_id), metadata=tenant.metadata
    )
    ids = [a.asset_id for a in found.assets]
    assert set(ids) == {resized.asset.asset_id, cropped.asset.asset_id}
    distances = [a.distance for a in found.assets]
    assert distances == sorted(distances) and max(distances) <= THRESHOLD
    assert not {o.asset.asset_id for o in others} & set(ids), "unrelated photos are not near"


def test_watch_streams_changes_until_ready(services: Services, tenant: Tenant) -> None:
    uploaded = upload(services, tenant, (CORPUS / "photo_craft-beer_6000x4000.jpg").read_bytes())
    stream = _catalog(services).WatchAsset(
        catalog_pb2.WatchAssetRequest(asset_id=uploaded.asset.asset_id),
        metadata=tenant.metadata,
        timeout=30,
    )
    statuses = [common_pb2.AssetStatus.Name(m.asset.status) for m in stream]
    print(f"\nwatch: {statuses}")
    assert statuses[-1] == "ASSET_STATUS_READY"
    assert len(set(statuses)) == len(statuses), "each change once"
    assert set(statuses) <= {
        "ASSET_STATUS_PENDING",
        "ASSET_STATUS_PROCESSING",
        "ASSET_STATUS_READY",
    }


def _watchers(stack: Stack) -> float:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.metrics_ports['catalog']}/metrics"
    ) as response:
        text = response.read().decode()
    match = re.search(r"^imagepipe_asset_watchers (\S+)$", text, re.MULTILINE)
    assert match
    return float(match[1])


def test_cancelled_and_expired_watches_free_their_resources(
    services: Services, stack: Stack, tenant: Tenant
) -> None:
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    parked = register_directly(services, tenant)
    # Held back in the outbox for an hour: the asset stays pending.
    internal.FailJobAttempt(
        catalog_internal_pb2.FailJobAttemptRequest(
            job_id=parked.job.job_id, error="parked", retry_after_seconds=3600
        ),
        metadata=services.internal_metadata,
    )
    request = catalog_pb2.WatchAssetRequest(asset_id=parked.asset.asset_id)
    listening_before = _listen_connections(stack)
    for _ in range(10):
        call = _catalog(services).WatchAsset(request, metadata=tenant.metadata)
        first = next(call)
        assert first.asset.status == common_pb2.ASSET_STATUS_PENDING
        call.cancel()
    with pytest.raises(grpc.RpcError) as expired:
        list(_catalog(services).WatchAsset(request, metadata=tenant.metadata, timeout=1))
    assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 5
    while _watchers(stack) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _watchers(stack) == 0
    assert _listen_connections(stack) == listening_before == 1


def _listen_connections(stack: Stack) -> int:
    rows = query(
        stack,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
        stack.name,
    )
    return int(rows[0]["n"])


def test_paging_while_uploads_arrive_sees_every_existing_asset_once(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("paging")
    before = Uploader(services, tenant)
    before.start(make_images(30, seed=21)).join(timeout=120)
    during = Uploader(services, tenant)
    thread = during.start(make_images(30, seed=22), threads=2)
    seen: list[str] = []
    token = ""
    while True:
        page = _catalog(services).ListAssets(
            catalog_pb2.ListAssetsRequest(page_size=7, page_token=token), metadata=tenant.metadata
        )
        seen += [a.asset_id for a in page.assets]
        token = page.next_page_token
        time.sleep(0.05)  # let uploads land between pages
        if not token:
            break
    thread.join(timeout=120)
    assert len(seen) == len(set(seen)), "no duplicates"
    assert set(before.accepted) <= set(seen), "no gaps"
    wait_settled(stack, tenant, timeout=60)
