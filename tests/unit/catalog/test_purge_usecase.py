"""Purge planning and execution on the fake stores: a deleted asset's renditions and
original go (an original another asset row still uses stays), objects no row uses
are orphans, a live asset's unreferenced rendition waits for the grace, and a dry
run reports the same and changes nothing."""

from __future__ import annotations

import datetime as dt
import uuid

from services.catalog.model import Asset, PurgeItemKind, PurgeReport
from services.catalog.usecases.purge import run_purge
from services.shared.storage import MemoryObjectStore, tenant_prefixes
from tests.unit.catalog.fakes import (
    FakeCatalog,
    FakeClock,
    new_asset,
    registered,
    rendered,
)

TENANT = uuid.uuid4()
GRACE = dt.timedelta(hours=1)
LONG_AGO = dt.timedelta(days=30)
CUT_OFF_DAYS = 7


def _catalog() -> FakeCatalog:
    # Rows made and deleted a month ago: past any cut-off these tests use.
    return FakeCatalog(clock=FakeClock(dt.datetime.now(dt.UTC) - LONG_AGO))


def _put(store: MemoryObjectStore, key: str, age: dt.timedelta, size: int = 10) -> None:
    # Aged from now, not from import: the suite may run minutes after collection.
    store.objects[key] = (b"x" * size, "image/webp", dt.datetime.now(dt.UTC) - age)


async def _stored(
    catalog: FakeCatalog, store: MemoryObjectStore, content: str, *, presets: int = 2
) -> Asset:
    """A ready asset with `presets` webp renditions, every object in the store."""
    asset = await rendered(
        catalog,
        new_asset(TENANT, content),
        [(f"p{i}", "webp") for i in range(presets)],
    )
    _put(store, asset.original_key, LONG_AGO, asset.size_bytes)
    for rendition in await catalog.assets.list_renditions(TENANT, [asset.id]):
        _put(store, rendition.object_key, LONG_AGO, rendition.size_bytes)
    return asset


async def _purge(
    catalog: FakeCatalog,
    store: MemoryObjectStore,
    *,
    dry_run: bool = False,
    days: int = CUT_OFF_DAYS,
    grace: dt.timedelta = GRACE,
) -> PurgeReport:
    return await run_purge(
        catalog.purge,
        store,
        tenant_id=TENANT,
        dry_run=dry_run,
        older_than_days=days,
        rendition_grace=grace,
    )


def _keys(report: PurgeReport, kind: PurgeItemKind | None = None) -> set[str]:
    return {i.object_key for i in report.items if kind is None or i.kind == kind}


async def test_a_deleted_assets_renditions_and_original_go_with_its_rows() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    gone = await _stored(catalog, store, "gone")
    kept = await _stored(catalog, store, "kept")
    renditions = await catalog.assets.list_renditions(TENANT, [gone.id])
    await catalog.assets.delete_asset(TENANT, gone.id)
    before = set(store.objects)

    report = await _purge(catalog, store)

    assert _keys(report, PurgeItemKind.DELETED_RENDITION) == {r.object_key for r in renditions}
    assert _keys(report, PurgeItemKind.DELETED_ORIGINAL) == {gone.original_key}
    assert _keys(report) == _keys(report, PurgeItemKind.DELETED_RENDITION) | {gone.original_key}
    assert all(item.asset_id == gone.id for item in report.items)
    assert report.bytes_freed == gone.size_bytes + sum(r.size_bytes for r in renditions)
    assert report.asset_rows_removed == 1
    assert set(store.objects) == before - _keys(report)
    # The rows went too: the asset (even counting deleted ones), its job and renditions.
    assert await catalog.assets.get_asset(TENANT, gone.id, include_deleted=True) is None
    assert gone.job_id is not None and await catalog.jobs.get_job(TENANT, gone.job_id) is None
    assert await catalog.assets.list_renditions(TENANT, [gone.id]) == []
    assert await catalog.assets.get_asset(TENANT, kept.id) == kept
    # Nothing is left to purge.
    assert (await _purge(catalog, store)).items == ()


async def test_an_original_another_asset_row_uses_is_kept() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    first = await _stored(catalog, store, "same-bytes")
    first_renditions = await catalog.assets.list_renditions(TENANT, [first.id])
    await catalog.assets.delete_asset(TENANT, first.id)
    # The same bytes uploaded again after the deletion: a new asset on the same original.
    again, _ = await registered(catalog, new_asset(TENANT, "same-bytes"))
    assert again.id != first.id and again.original_key == first.original_key

    report = await _purge(catalog, store)

    assert _keys(report) == {r.object_key for r in first_renditions}
    assert first.original_key in store.objects
    assert report.asset_rows_removed == 1


async def test_an_original_two_deleted_assets_share_goes_with_the_last_of_them() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    first = await _stored(catalog, store, "same-bytes", presets=0)
    await catalog.assets.delete_asset(TENANT, first.id)
    second, _ = await registered(catalog, new_asset(TENANT, "same-bytes"))
    await catalog.assets.delete_asset(TENANT, second.id)

    report = await _purge(catalog, store)

    assert _keys(report, PurgeItemKind.DELETED_ORIGINAL) == {first.original_key}
    assert [i.asset_id for i in report.items] == [second.id], "the later deletion takes it"
    assert report.asset_rows_removed == 2
    assert first.original_key not in store.objects


async def test_a_recent_deletion_waits_for_the_cut_off() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    asset = await _stored(catalog, store, "recent")
    catalog.clock.at = dt.datetime.now(dt.UTC) - dt.timedelta(days=CUT_OFF_DAYS - 1)
    await catalog.assets.delete_asset(TENANT, asset.id)
    before = set(store.objects)

    report = await _purge(catalog, store)

    assert report.items == () and report.asset_rows_removed == 0
    assert set(store.objects) == before
    assert await catalog.assets.get_asset(TENANT, asset.id, include_deleted=True) is not None


async def test_a_deleted_assets_rows_go_even_when_its_objects_are_already_gone() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    asset = await _stored(catalog, store, "vanished")
    await catalog.assets.delete_asset(TENANT, asset.id)
    store.objects.clear()

    report = await _purge(catalog, store)

    assert report.items == ()
    assert report.asset_rows_removed == 1
    assert await catalog.assets.get_asset(TENANT, asset.id, include_deleted=True) is None


async def test_objects_no_row_uses_are_orphans() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    live = await _stored(catalog, store, "live")
    originals, renditions = tenant_prefixes(str(TENANT))
    lost_upload = f"{originals}never-registered"
    no_asset = f"{renditions}{uuid.uuid4()}/thumb.0123456789abcdef.webp"
    not_a_rendition_key = f"{renditions}stray-file"
    for key in (lost_upload, no_asset, not_a_rendition_key):
        _put(store, key, LONG_AGO)
    young = f"{originals}uploaded-yesterday"
    _put(store, young, dt.timedelta(days=1))
    other_tenant = f"originals/{uuid.uuid4()}/someone-elses"
    _put(store, other_tenant, LONG_AGO)

    report = await _purge(catalog, store)

    assert _keys(report) == {lost_upload, no_asset, not_a_rendition_key}
    assert _keys(report, PurgeItemKind.ORPHAN_OBJECT) == _keys(report)
    assert all(item.asset_id is None for item in report.items)
    assert {young, other_tenant, live.original_key} <= set(store.objects)
    for rendition in await catalog.assets.list_renditions(TENANT, [live.id]):
        assert rendition.object_key in store.objects


async def test_a_live_assets_unreferenced_rendition_waits_for_the_grace() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    live = await _stored(catalog, store, "live")
    prefix = f"{tenant_prefixes(str(TENANT))[1]}{live.id}/"
    stale = f"{prefix}p0.aaaaaaaaaaaaaaaa.webp"
    fresh = f"{prefix}p0.bbbbbbbbbbbbbbbb.webp"
    _put(store, stale, GRACE + dt.timedelta(minutes=1))
    _put(store, fresh, GRACE - dt.timedelta(minutes=1))

    report = await _purge(catalog, store, days=0)

    assert _keys(report) == {stale}
    assert fresh in store.objects
    # The cut-off holds too: a stale rendition younger than it stays.
    _put(store, stale, dt.timedelta(days=2))
    assert _keys(await _purge(catalog, store, days=3)) == set()
    assert _keys(await _purge(catalog, store, days=1)) == {stale}


async def test_a_deleted_assets_stray_rendition_needs_only_the_cut_off() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    asset = await _stored(catalog, store, "deleted", presets=0)
    await catalog.assets.delete_asset(TENANT, asset.id)
    stray = f"{tenant_prefixes(str(TENANT))[1]}{asset.id}/p0.cccccccccccccccc.webp"
    _put(store, stray, dt.timedelta(minutes=1))

    assert _keys(await _purge(catalog, store, days=0)) == {asset.original_key, stray}


async def test_a_dry_run_reports_what_a_run_removes_and_changes_nothing() -> None:
    catalog, store = _catalog(), MemoryObjectStore()
    gone = await _stored(catalog, store, "gone")
    await _stored(catalog, store, "kept")
    await catalog.assets.delete_asset(TENANT, gone.id)
    _put(store, f"{tenant_prefixes(str(TENANT))[0]}orphan", LONG_AGO)
    objects = dict(store.objects)
    assets, jobs = dict(catalog.db.assets), dict(catalog.db.jobs)
    renditions = dict(catalog.db.renditions)

    planned = await _purge(catalog, store, dry_run=True)

    assert planned.dry_run and planned.asset_rows_removed == 0
    assert store.objects == objects
    assert (catalog.db.assets, catalog.db.jobs, catalog.db.renditions) == (
        assets,
        jobs,
        renditions,
    )
    done = await _purge(catalog, store)
    assert not done.dry_run
    assert done.items == planned.items
    assert done.asset_rows_removed == 1
    assert set(store.objects) == set(objects) - _keys(planned)
