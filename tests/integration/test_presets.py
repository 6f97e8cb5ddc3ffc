"""Tenant presets (R11) on PostgreSQL and on the running stack.

The first tests drive the stores on a database of their own: the SQL that snapshots a
tenant's presets into its jobs, hides renditions of deleted presets and selects what a
backfill re-renders. The others run the whole stack: two tenants' presets giving
different renditions of the same bytes, an OUTDATED backfill re-rendering exactly the
assets it should while another tenant's uploads keep flowing, and a render request
made before a preset change, redelivered after it, rendering what it asked for.
"""

from __future__ import annotations

import datetime as dt
import uuid

from services.catalog.db import CatalogDatabase
from services.catalog.model import BackfillScope, FocalPoint, JobState, NewRendition
from services.shared.presets import Preset
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
