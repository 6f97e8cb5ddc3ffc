"""Tenant presets (R11) on PostgreSQL and on the running stack.

The first tests drive the stores on a database of their own: the SQL that snapshots a
tenant's presets into its jobs, hides renditions of deleted presets and selects what a
backfill re-renders. The others run the whole stack: two tenants' presets giving
different renditions of the same bytes, an OUTDATED backfill re-rendering exactly the
assets it should while another tenant's uploads keep flowing, and a render request
made before a preset change, redelivered after it, rendering what it asked for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from devstack import Stack, unique_jpeg
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, events_pb2, renderer_pb2
from services.catalog.api import convert
from services.catalog.db import CatalogDatabase, create_pool
from services.catalog.model import BackfillScope, FocalPoint, JobState, NewRendition
from services.shared.broker import RenderPublisher, Topology
from services.shared.presets import Preset
from services.shared.settings import Settings
from tests.faults.support import query
from tests.helpers import Services, Tenant, downsized_jpeg, upload, wait_for_status
from tests.integration.catalog_db import catalog_database, new_asset, new_tenant

LEASE = dt.timedelta(minutes=2)


# The stores on PostgreSQL ---------------------------------------------------------------


async def _complete(
    repo: CatalogDatabase, job_id: uuid.UUID, made: list[tuple[str, str, str]]
) -> None:
    """Run the job's next attempt to completion with (preset, format, version) made."""
    started = await repo.jobs.start_attempt(job_id, "test", LEASE)
    assert started.job is not None and started.attempt > 0
    renditions = [
        NewRendition(
            preset=preset,
            format=image_format,
            object_key=f"renditions/x/{job_id}/{preset}.{uuid.uuid4().hex[:16]}.{image_format}",
            width=10,
            height=10,
            size_bytes=10,
            quality=80,
            psnr_db=None,
            psnr_infinite=None,
            ssim=None,
            hash_distance=None,
            preset_version=version,
        )
        for preset, image_format, version in made
    ]
    assert await repo.jobs.complete_job(job_id, started.attempt, renditions, None, None)


async def test_jobs_snapshot_the_tenants_presets_and_listings_follow_them() -> None:
    async with catalog_database("presets") as repo:
        tenant = await new_tenant(repo)
        defaults = await repo.presets.tenant_presets(tenant)
        assert not defaults.own and [p.name for p in defaults.presets] == ["zoom", "card", "thumb"]
        asset_id, job_id = await _registered(repo, tenant)
        request = await repo.jobs.render_request_row(job_id)
        assert request is not None and request.presets == defaults.presets

        hero = Preset(name="hero", max_width=1600, max_height=900, fit="cover")
        assert await repo.presets.create_preset(tenant, hero, 20) == "done"
        own = await repo.presets.tenant_presets(tenant)
        assert own.own and [p.name for p in own.presets] == ["hero", "zoom", "card", "thumb"]
        # The job keeps what it was made with.
        again = await repo.jobs.render_request_row(job_id)
        assert again is not None and again.presets == defaults.presets

        thumb = next(p for p in own.presets if p.name == "thumb")
        await _complete(repo, job_id, [("thumb", "jpeg", thumb.version), ("card", "jpeg", "")])
        assert {r.preset for r in await repo.assets.list_renditions(tenant, [asset_id])} == {
            "thumb",
            "card",
        }
        assert await repo.presets.delete_preset(tenant, "card") == "done"
        assert [r.preset for r in await repo.assets.list_renditions(tenant, [asset_id])] == [
            "thumb"
        ]
        card = await repo.assets.preset_renditions(tenant, asset_id, "card")
        assert card is not None and card.renditions == ()
        (stale,) = await repo.purge.stale_renditions(tenant)
        assert (stale.asset_id, stale.preset) == (asset_id, "card")
        assert await repo.purge.remove_stale_rendition(tenant, stale)
        assert await repo.purge.stale_renditions(tenant) == []


async def _registered(repo: CatalogDatabase, tenant: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    registration = await repo.assets.register_asset(new_asset(tenant))
    assert registration.job is not None
    return registration.asset.id, registration.job.id


async def test_a_tenants_preset_changes_are_copy_on_write_and_bounded() -> None:
    async with catalog_database("presets") as repo:
        tenant, other = await new_tenant(repo), await new_tenant(repo)
        assert await repo.presets.delete_preset(tenant, "nope") == "not_found"
        assert not (await repo.presets.tenant_presets(tenant)).own, "a refusal copies nothing"
        assert await repo.presets.delete_preset(tenant, "zoom") == "done"
        assert [p.name for p in (await repo.presets.tenant_presets(tenant)).presets] == [
            "card",
            "thumb",
        ]
        assert await repo.presets.delete_preset(tenant, "card") == "done"
        assert await repo.presets.delete_preset(tenant, "thumb") == "last"
        small = Preset(name="thumb", max_width=50, max_height=50)
        assert await repo.presets.replace_preset(tenant, small) == "done"
        (only,) = (await repo.presets.tenant_presets(tenant)).presets
        assert only == small
        assert await repo.presets.create_preset(tenant, small, 20) == "exists"
        for n in range(19):
            extra = Preset(name=f"p{n}", max_width=10, max_height=10)
            assert await repo.presets.create_preset(tenant, extra, 20) == "done"
        last = Preset(name="p99", max_width=10, max_height=10)
        assert await repo.presets.create_preset(tenant, last, 20) == "too_many"
        assert not (await repo.presets.tenant_presets(other)).own


async def test_backfills_select_ready_assets_by_scope_once_each() -> None:
    async with catalog_database("presets") as repo:
        tenant = await new_tenant(repo)
        versions = {p.name: p.version for p in (await repo.presets.tenant_presets(tenant)).presets}
        current, outdated, partial = [await _registered(repo, tenant) for _ in range(3)]
        everything = [(name, "jpeg", version) for name, version in versions.items()]
        await _complete(repo, current[1], everything)
        await _complete(repo, outdated[1], [(n, f, "0123456789abcdef") for n, f, _ in everything])
        await _complete(repo, partial[1], everything[:1])
        pending, _ = await _registered(repo, tenant)  # not ready: never selected

        missing = await repo.backfills.start_backfill(tenant, BackfillScope.MISSING, "", [])
        assert (missing.total, missing.unfinished, missing.finished) == (1, 1, False)
        # The asset now has an unfinished job: a second backfill leaves it out.
        again = await repo.backfills.start_backfill(tenant, BackfillScope.ALL, "", [])
        assert again.total == 2
        jobs = await repo.jobs.list_jobs(tenant, JobState.PENDING, None, None, 100)
        by_asset = {j.asset_id for j in jobs if j.asset_id != pending}
        assert by_asset == {current[0], outdated[0], partial[0]}

        for job in jobs:
            if job.asset_id != pending:
                await _complete(repo, job.id, everything)
        finished = await repo.backfills.get_backfill(tenant, again.id)
        assert finished is not None and (finished.done, finished.failed) == (2, 0)
        assert finished.finished and finished.finished_at is not None
        outdated_now = await repo.backfills.start_backfill(tenant, BackfillScope.OUTDATED, "", [])
        assert outdated_now.total == 0 and outdated_now.finished


async def test_a_focal_point_rerenders_and_a_failed_rerender_leaves_the_asset_ready() -> None:
    async with catalog_database("presets") as repo:
        tenant = await new_tenant(repo)
        asset_id, job_id = await _registered(repo, tenant)
        await _complete(repo, job_id, [("thumb", "jpeg", "")])
        point = FocalPoint(0.25, 0.75)
        changed = await repo.backfills.set_focal_point(tenant, asset_id, point, rerender=True)
        assert changed is not None and changed.job is not None
        assert changed.asset.focal_point == point
        request = await repo.jobs.render_request_row(changed.job.id)
        assert request is not None and request.focal_point == point
        started = await repo.jobs.start_attempt(changed.job.id, "test", LEASE)
        await repo.jobs.fail_attempt(
            changed.job.id, started.attempt, "boom", transient=False, retry_after=None
        )
        await repo.poison.record_poison(changed.job.id, "retries_exhausted", "boom", b"")  # type: ignore[arg-type]
        asset = await repo.assets.get_asset(tenant, asset_id)
        assert asset is not None and asset.status == "ready"
        assert [r.preset for r in await repo.assets.list_renditions(tenant, [asset_id])] == [
            "thumb"
        ]
        cleared = await repo.backfills.set_focal_point(tenant, asset_id, None, rerender=False)
        assert cleared is not None and cleared.asset.focal_point is None and cleared.job is None


# The running stack ----------------------------------------------------------------------

BACKFILLED = 24


def _stub(services: Services) -> catalog_pb2_grpc.CatalogServiceStub:
    return catalog_pb2_grpc.CatalogServiceStub(services.catalog)


def _resize_preset(services: Services, tenant: Tenant, name: str, side: int) -> renderer_pb2.Preset:
    return (
        _stub(services)
        .UpdatePreset(
            catalog_pb2.UpdatePresetRequest(
                preset=renderer_pb2.Preset(name=name, max_width=side, max_height=side),
                update_mask=FieldMask(paths=["max_width", "max_height"]),
            ),
            metadata=tenant.metadata,
        )
        .preset
    )


def _preset(services: Services, tenant: Tenant, name: str) -> renderer_pb2.Preset:
    listed = _stub(services).ListTenantPresets(
        catalog_pb2.ListTenantPresetsRequest(), metadata=tenant.metadata
    )
    (preset,) = [p for p in listed.presets if p.name == name]
    return preset


def _rendition(asset: common_pb2.Asset, preset: str) -> common_pb2.Rendition:
    (found,) = [r for r in asset.renditions if r.preset == preset]
    return found


def _finished(services: Services, tenant: Tenant, backfill_id: str) -> catalog_pb2.Backfill:
    deadline = time.monotonic() + 300
    while True:
        backfill = (
            _stub(services)
            .GetBackfill(
                catalog_pb2.GetBackfillRequest(backfill_id=backfill_id), metadata=tenant.metadata
            )
            .backfill
        )
        if backfill.state == catalog_pb2.BACKFILL_STATE_FINISHED:
            return backfill
        assert time.monotonic() < deadline, backfill
        time.sleep(0.2)


def _ready(services: Services, tenant: Tenant, data: bytes) -> common_pb2.Asset:
    asset = wait_for_status(services, tenant, upload(services, tenant, data).asset.asset_id, 120)
    assert asset.status == common_pb2.ASSET_STATUS_READY
    return asset


def test_two_tenants_presets_render_the_same_bytes_differently(
    services: Services, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    photo = downsized_jpeg(corpus / "photo_olympus_ep3_12mp.jpg", (640, 480))
    small, large = make_tenant("small"), make_tenant("large")
    _resize_preset(services, small, "thumb", 50)
    _resize_preset(services, large, "thumb", 80)
    made = {
        tenant.tenant_id: _rendition(_ready(services, tenant, photo), "thumb")
        for tenant in (small, large)
    }
    assert (made[small.tenant_id].width, made[small.tenant_id].height) == (50, 38)
    assert (made[large.tenant_id].width, made[large.tenant_id].height) == (80, 60)
    for tenant in (small, large):
        version = _preset(services, tenant, "thumb").version
        assert made[tenant.tenant_id].preset_version == version


@pytest.mark.timeout(600)
def test_an_outdated_backfill_rerenders_what_it_should_once_beside_other_uploads(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    photo = downsized_jpeg(corpus / "photo_olympus_ep3_12mp.jpg", (480, 360))
    owner, neighbour = make_tenant("backfill"), make_tenant("neighbour")
    with ThreadPoolExecutor(4) as pool:
        before = list(
            pool.map(
                lambda i: _ready(services, owner, unique_jpeg(photo, f"old-{i}")),
                range(BACKFILLED),
            )
        )
    card = _resize_preset(services, owner, "card", 320)
    after = _ready(services, owner, unique_jpeg(photo, "new"))
    assert _rendition(after, "card").preset_version == card.version

    started_at = time.monotonic()
    backfill = (
        _stub(services)
        .StartBackfill(
            catalog_pb2.StartBackfillRequest(scope=catalog_pb2.BACKFILL_SCOPE_OUTDATED),
            metadata=owner.metadata,
        )
        .backfill
    )
    assert backfill.total == BACKFILLED
    uploaded_at = time.monotonic()
    others = [_ready(services, neighbour, unique_jpeg(photo, f"other-{i}")) for i in range(3)]
    neighbour_seconds = time.monotonic() - uploaded_at
    finished = _finished(services, owner, backfill.backfill_id)
    print(
        f"\nbackfill of {BACKFILLED} assets: {time.monotonic() - started_at:.1f} s; "
        f"another tenant's 3 uploads meanwhile ready in {neighbour_seconds:.1f} s"
    )
    assert (finished.done, finished.failed) == (BACKFILLED, 0)
    assert all(o.status == common_pb2.ASSET_STATUS_READY for o in others)

    jobs = {
        str(r["asset_id"]): r["jobs"]
        for r in query(
            stack,
            "SELECT asset_id, count(*) AS jobs FROM jobs WHERE tenant_id = $1::uuid "
            "GROUP BY asset_id",
            owner.tenant_id,
        )
    }
    assert jobs == {a.asset_id: 2 for a in before} | {after.asset_id: 1}
    for asset in before:
        shown = _stub(services).GetAsset(
            catalog_pb2.GetAssetRequest(asset_id=asset.asset_id), metadata=owner.metadata
        )
        assert shown.asset.status == common_pb2.ASSET_STATUS_READY
        assert _rendition(shown.asset, "card").preset_version == card.version
        assert _rendition(shown.asset, "card").width == 320
    again = _stub(services).StartBackfill(
        catalog_pb2.StartBackfillRequest(scope=catalog_pb2.BACKFILL_SCOPE_OUTDATED),
        metadata=owner.metadata,
    )
    assert again.backfill.total == 0


async def _request_of(stack: Stack, job_id: uuid.UUID) -> events_pb2.RenderRequest:
    """The render request the catalog builds from the job's row (what the relay sends)."""
    pool = await create_pool(stack.database_url, 1)
    try:
        found = await CatalogDatabase(pool).jobs.render_request_row(job_id)
    finally:
        await pool.close()
    assert found is not None
    return convert.render_request_message(found)


async def _publish(stack: Stack, request: events_pb2.RenderRequest) -> None:
    """Deliver it once more, as the broker redelivers a message."""
    settings = Settings.model_validate(
        {k.removeprefix("IMAGEPIPE_").lower(): v for k, v in stack.env().items()
         if k.startswith("IMAGEPIPE_")}
    )  # fmt: skip
    publisher = RenderPublisher(settings, Topology.from_settings(settings))
    await publisher.start()
    try:
        deadline = time.monotonic() + 30
        while not publisher.connected:
            assert time.monotonic() < deadline, "RabbitMQ unreachable"
            await asyncio.sleep(0.1)
        await publisher.publish(request)
    finally:
        await publisher.close()


@pytest.mark.timeout(300)
def test_a_request_made_before_a_preset_change_renders_what_it_asked(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    tenant = make_tenant("redeliver")
    photo = downsized_jpeg(corpus / "photo_olympus_ep3_12mp.jpg", (800, 600))
    asset = _ready(services, tenant, photo)
    asked = _preset(services, tenant, "card")
    # With the renderer stopped, the re-render's message waits on the work queue.
    stack.services["renderer"].stop()
    try:
        backfill = (
            _stub(services)
            .StartBackfill(
                catalog_pb2.StartBackfillRequest(
                    scope=catalog_pb2.BACKFILL_SCOPE_ASSET_IDS, asset_ids=[asset.asset_id]
                ),
                metadata=tenant.metadata,
            )
            .backfill
        )
        ((job_id,),) = query(
            stack, "SELECT id FROM jobs WHERE backfill_id = $1::uuid", backfill.backfill_id
        )
        request = asyncio.run(_request_of(stack, job_id))
        assert [p.version for p in request.presets if p.name == "card"] == [asked.version]
        changed = _resize_preset(services, tenant, "card", 200)
        assert changed.version != asked.version
        asyncio.run(_publish(stack, request))
    finally:
        stack.services["renderer"] = stack.start_service("renderer")
        stack.services["renderer"].wait_serving()
    assert _finished(services, tenant, backfill.backfill_id).done == 1
    shown = _stub(services).GetAsset(
        catalog_pb2.GetAssetRequest(asset_id=asset.asset_id), metadata=tenant.metadata
    )
    card = _rendition(shown.asset, "card")
    assert (card.width, card.height, card.preset_version) == (400, 300, asked.version)


async def test_renderers_without_the_broker_claim_tenants_in_turn() -> None:
    """A backfill's thousands of jobs ahead of another tenant's upload: a renderer
    polling the catalog (broker down) still takes the upload within its first claim."""
    async with catalog_database("claims") as repo:
        busy, other = await new_tenant(repo), await new_tenant(repo)
        backlog = [(await _registered(repo, busy))[1] for _ in range(30)]
        _, upload_job = await _registered(repo, other)
        claimed = await repo.jobs.claim_for_render(
            limit=4, lease=dt.timedelta(seconds=60), owner="test", delivery_limit=5
        )
    ids = [job.job_id for job in claimed.jobs]
    assert len(ids) == 4 and upload_job in ids, (ids, upload_job)
    assert set(ids) - {upload_job} <= set(backlog[:3])  # the backlog in its own order
