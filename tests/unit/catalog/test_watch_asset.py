"""The WatchAsset loop on the fake store and watch: the asset now, then once per
change of its status (re-read after every wake-up, so a wake-up without a change
streams nothing), until ready, failed or deleted."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing

import pytest

from services.catalog.model import AssetStatus, AssetWithRenditions, PoisonReason
from services.catalog.usecases.jobs import watch_asset
from services.shared.errors import NotFound
from tests.unit.catalog.fakes import FakeCatalog, new_asset, new_rendition, registered

TENANT = uuid.uuid4()
LEASE = dt.timedelta(minutes=2)


def _watch(
    catalog: FakeCatalog, asset_id: uuid.UUID, tenant: uuid.UUID = TENANT
) -> AsyncGenerator[AssetWithRenditions, None]:
    return watch_asset(catalog.assets, catalog.watch, tenant_id=tenant, asset_id=asset_id)


async def test_each_status_change_is_streamed_until_ready() -> None:
    catalog = FakeCatalog()
    asset, job = await registered(catalog, new_asset(TENANT))
    seen: list[AssetWithRenditions] = []
    async with aclosing(_watch(catalog, asset.id)) as stream:
        seen.append(await anext(stream))
        started = await catalog.jobs.start_attempt(job.id, "renderer", LEASE)
        seen.append(await anext(stream))
        made = [new_rendition(TENANT, asset.id, "thumb", "webp")]
        await catalog.jobs.complete_job(job.id, started.attempt, made, "thumbhash", None)
        seen.append(await anext(stream))
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

    assert [s.asset.status for s in seen] == [
        AssetStatus.PENDING,
        AssetStatus.PROCESSING,
        AssetStatus.READY,
    ]
    assert [r.preset for r in seen[-1].renditions] == ["thumb"]
    assert seen[-1].asset.thumbhash == "thumbhash"
    assert catalog.watch.watching == 0, "the subscription ends with the stream"


async def test_a_wake_up_without_a_change_streams_nothing_and_the_next_change_does() -> None:
    catalog = FakeCatalog()
    asset, job = await registered(catalog, new_asset(TENANT))
    async with aclosing(_watch(catalog, asset.id)) as stream:
        assert (await anext(stream)).asset.status == AssetStatus.PENDING
        following = asyncio.ensure_future(anext(stream))
        catalog.watch.wake_all()  # e.g. the LISTEN connection was lost and is back
        # The watch read the asset again (still pending) before this change: streaming
        # that read would hand out pending a second time.
        await catalog.db.until_queried("get_asset", 2)
        await catalog.jobs.start_attempt(job.id, "renderer", LEASE)
        assert (await following).asset.status == AssetStatus.PROCESSING
        assert catalog.db.queries["get_asset"] == 3


async def test_changes_made_before_the_wake_up_is_handled_stream_the_asset_as_it_is() -> None:
    catalog = FakeCatalog()
    asset, job = await registered(catalog, new_asset(TENANT))
    async with aclosing(_watch(catalog, asset.id)) as stream:
        assert (await anext(stream)).asset.status == AssetStatus.PENDING
        started = await catalog.jobs.start_attempt(job.id, "renderer", LEASE)
        await catalog.jobs.complete_job(job.id, started.attempt, [], None, None)
        # Two changes, one wake-up: the loop reads the asset again and sees the last.
        assert (await anext(stream)).asset.status == AssetStatus.READY
        with pytest.raises(StopAsyncIteration):
            await anext(stream)


@pytest.mark.parametrize("ending", ["failed", "deleted"])
async def test_a_watch_ends_at_failed_and_at_deleted(ending: str) -> None:
    catalog = FakeCatalog()
    asset, job = await registered(catalog, new_asset(TENANT))
    async with aclosing(_watch(catalog, asset.id)) as stream:
        await anext(stream)
        if ending == "failed":
            await catalog.poison.record_poison(
                job.id, PoisonReason.RETRIES_EXHAUSTED, "given up", b""
            )
        else:
            await catalog.assets.delete_asset(TENANT, asset.id)
        assert (await anext(stream)).asset.status == AssetStatus(ending)
        with pytest.raises(StopAsyncIteration):
            await anext(stream)


async def test_an_asset_already_final_is_streamed_once() -> None:
    catalog = FakeCatalog()
    asset, _ = await registered(catalog, new_asset(TENANT))
    await catalog.assets.delete_asset(TENANT, asset.id)
    stream = _watch(catalog, asset.id)
    assert [s.asset.status async for s in stream] == [AssetStatus.DELETED]
    assert catalog.watch.watching == 0


@pytest.mark.parametrize("whose", ["unknown", "other tenant"])
async def test_an_asset_the_tenant_does_not_have_is_not_found(whose: str) -> None:
    catalog = FakeCatalog()
    asset, _ = await registered(catalog, new_asset(uuid.uuid4()))
    asset_id = asset.id if whose == "other tenant" else uuid.uuid4()
    stream = _watch(catalog, asset_id)
    with pytest.raises(NotFound) as refused:
        await anext(stream)
    assert refused.value.reason == "ASSET_NOT_FOUND"
    assert catalog.watch.watching == 0


async def test_closing_a_watch_early_ends_its_subscription() -> None:
    catalog = FakeCatalog()
    asset, _ = await registered(catalog, new_asset(TENANT))
    async with aclosing(_watch(catalog, asset.id)) as stream:
        await anext(stream)
        assert catalog.watch.watching == 1
    assert catalog.watch.watching == 0
