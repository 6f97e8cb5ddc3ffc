"""Purge's choice of orphans on fakes: a live asset's unreferenced rendition goes once
it is older than the grace (and the cut-off), never sooner, and never one a row uses."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, cast

from services.catalog.ports import PurgeStore
from services.catalog.usecases.purge import STALE_RENDITION_GRACE, run_purge
from services.renderer.jobs import LEASE_SECONDS
from services.shared.storage import MemoryObjectStore

TENANT = uuid.uuid4()
LIVE = uuid.uuid4()
GONE = uuid.uuid4()  # an asset with no row at all


class FakeRepo:
    def __init__(self, referenced: set[str], live: set[uuid.UUID]) -> None:
        self.referenced, self.live = referenced, live

    async def deleted_assets(self, tenant_id: uuid.UUID, before: dt.datetime) -> list[Any]:
        return []

    async def referenced_keys(self, tenant_id: uuid.UUID, keys: Collection[str]) -> set[str]:
        return self.referenced & set(keys)

    async def live_assets(
        self, tenant_id: uuid.UUID, asset_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        return self.live & set(asset_ids)

    @asynccontextmanager
    async def locked_content(self, tenant_id: uuid.UUID, key: str) -> AsyncIterator[Any]:
        raise AssertionError("no original is in play here")
        yield  # pragma: no cover

    async def stale_renditions(self, tenant_id: uuid.UUID) -> list[Any]:
        return []  # every preset is current here


def _key(asset: uuid.UUID, name: str) -> str:
    return f"renditions/{TENANT}/{asset}/{name}"


def _put(store: MemoryObjectStore, key: str, age: dt.timedelta) -> None:
    # Aged from now, not from import: the suite may run minutes after collection.
    store.objects[key] = (b"x", "image/webp", dt.datetime.now(dt.UTC) - age)


async def _purge(
    store: MemoryObjectStore, repo: FakeRepo, days: int, grace: dt.timedelta
) -> set[str]:
    response = await run_purge(
        cast(PurgeStore, repo),
        store,
        tenant_id=TENANT,
        dry_run=False,
        older_than_days=days,
        rendition_grace=grace,
    )
    return {item.object_key for item in response.items}


async def test_a_live_assets_stale_rendition_goes_after_the_grace() -> None:
    store = MemoryObjectStore()
    used = _key(LIVE, "thumb.aaaaaaaaaaaaaaaa.webp")
    stale = _key(LIVE, "thumb.bbbbbbbbbbbbbbbb.webp")
    fresh = _key(LIVE, "medium.cccccccccccccccc.webp")
    _put(store, used, dt.timedelta(days=3))
    _put(store, stale, dt.timedelta(minutes=31))
    _put(store, fresh, dt.timedelta(minutes=29))
    repo = FakeRepo({used}, {LIVE})

    purged = await _purge(store, repo, days=0, grace=dt.timedelta(minutes=30))

    assert purged == {stale}
    assert set(store.objects) == {used, fresh}


async def test_the_cut_off_still_holds_for_a_live_assets_stale_rendition() -> None:
    store = MemoryObjectStore()
    stale = _key(LIVE, "thumb.bbbbbbbbbbbbbbbb.webp")
    _put(store, stale, dt.timedelta(days=2))
    repo = FakeRepo(set(), {LIVE})

    assert await _purge(store, repo, days=3, grace=dt.timedelta(minutes=30)) == set()
    assert await _purge(store, repo, days=1, grace=dt.timedelta(minutes=30)) == {stale}


async def test_a_rendition_written_again_since_the_listing_is_kept() -> None:
    store = MemoryObjectStore()
    stale = _key(LIVE, "thumb.bbbbbbbbbbbbbbbb.webp")
    _put(store, stale, dt.timedelta(hours=5))
    original_list = store.list

    async def list_then_rewrite(prefix: str) -> Any:
        listed = await original_list(prefix)
        _put(store, stale, dt.timedelta(0))  # an attempt writes the same bytes again
        return listed

    store.list = list_then_rewrite  # type: ignore[method-assign]
    assert (
        await _purge(store, FakeRepo(set(), {LIVE}), days=0, grace=dt.timedelta(hours=1)) == set()
    )
    assert stale in store.objects


async def test_a_dead_assets_renditions_need_only_the_cut_off() -> None:
    store = MemoryObjectStore()
    orphan = _key(GONE, "thumb.bbbbbbbbbbbbbbbb.webp")
    _put(store, orphan, dt.timedelta(minutes=1))

    assert await _purge(store, FakeRepo(set(), {LIVE}), days=0, grace=dt.timedelta(hours=1)) == {
        orphan
    }


def test_the_grace_is_far_past_an_attempts_lease() -> None:
    assert dt.timedelta(seconds=10 * LEASE_SECONDS) <= STALE_RENDITION_GRACE


async def test_a_stat_in_whole_seconds_still_finds_the_listed_object_unchanged() -> None:
    """S3 lists modification times in milliseconds but a HEAD answers them in whole
    seconds (an HTTP date): the same object must compare unchanged, else no live or
    failed asset's unreferenced rendition is ever reclaimed."""
    store = MemoryObjectStore()
    stale = _key(LIVE, "thumb.cccccccccccccccc.webp")
    store.objects[stale] = (
        b"x",
        "image/webp",
        (dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)).replace(microsecond=464000),
    )
    exact_stat = store.stat

    async def stat_in_seconds(key: str) -> Any:
        info = await exact_stat(key)
        return replace(info, modified=info.modified.replace(microsecond=0))

    store.stat = stat_in_seconds  # type: ignore[method-assign]
    assert await _purge(store, FakeRepo(set(), {LIVE}), days=0, grace=dt.timedelta(hours=1)) == {
        stale
    }
