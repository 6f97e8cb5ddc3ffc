"""Asset metadata in the catalog: GPS kept only by tenants that keep it, and ListAssets'
label and capture-time filters, with page tokens bound to them."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace

import pytest

from services.catalog.model import AssetFilter, AssetMetadata, GpsPosition, TenantSettings
from services.catalog.usecases.assets import get_asset, list_assets, register_asset
from services.catalog.usecases.tenants import create_tenant, update_tenant_settings
from services.shared.errors import InvalidArgument
from tests.unit.catalog.fakes import FakeCatalog, new_asset

PLACE = GpsPosition(40.446972, -3.724753, 639.6)
SHOT = AssetMetadata(
    capture_time=dt.datetime(2015, 4, 10, 18, 12, 23, tzinfo=dt.UTC),
    capture_time_offset="+02:00",
    camera_make="Apple",
    camera_model="iPhone 6",
    f_number=2.2,
    iso=32,
    keywords=("beach", "sunset"),
    gps=PLACE,
)


async def _tenant(catalog: FakeCatalog, *, keep_gps: bool = False) -> uuid.UUID:
    tenant_id = (
        await create_tenant(catalog.tenants, name=uuid.uuid4().hex[:12], pepper="p")
    ).tenant.id
    if keep_gps:
        await update_tenant_settings(
            catalog.tenants,
            tenant_id=tenant_id,
            values=TenantSettings(keep_gps=True),
            paths=["keep_gps"],
        )
    return tenant_id


async def _register(
    catalog: FakeCatalog,
    tenant_id: uuid.UUID,
    metadata: AssetMetadata = SHOT,
    labels: dict[str, str] | None = None,
) -> uuid.UUID:
    registered = await register_asset(
        catalog.assets,
        catalog.jobs,
        new=new_asset(tenant_id, metadata=metadata, labels=labels or {}),
        similarity_threshold=0,
    )
    assert registered.created
    return registered.asset.asset.id


async def _stored(catalog: FakeCatalog, tenant_id: uuid.UUID, asset_id: uuid.UUID) -> AssetMetadata:
    return (await get_asset(catalog.assets, tenant_id=tenant_id, asset_id=asset_id)).asset.metadata


async def test_a_tenant_that_does_not_keep_gps_stores_everything_else() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    stored = await _stored(catalog, tenant_id, await _register(catalog, tenant_id))
    assert stored.gps is None
    assert stored == replace(SHOT, gps=None)


async def test_a_tenant_that_keeps_gps_stores_the_position() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog, keep_gps=True)
    stored = await _stored(catalog, tenant_id, await _register(catalog, tenant_id))
    assert stored == SHOT and stored.gps == PLACE


async def test_the_setting_at_registration_decides_not_the_one_before() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog, keep_gps=True)
    kept = await _register(catalog, tenant_id)
    await update_tenant_settings(
        catalog.tenants, tenant_id=tenant_id, values=TenantSettings(), paths=["keep_gps"]
    )
    dropped = await _register(catalog, tenant_id)
    assert (await _stored(catalog, tenant_id, kept)).gps == PLACE
    assert (await _stored(catalog, tenant_id, dropped)).gps is None


async def test_a_registration_without_a_rule_never_keeps_gps() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog, keep_gps=True)
    registration = await catalog.assets.register_asset(new_asset(tenant_id, metadata=SHOT))
    assert registration.asset.metadata.gps is None


def _at(day: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, 12, tzinfo=dt.UTC)


async def _listed(
    catalog: FakeCatalog, tenant_id: uuid.UUID, where: AssetFilter, page_size: int = 50
) -> list[uuid.UUID]:
    found: list[uuid.UUID] = []
    token = ""
    while True:
        page = await list_assets(
            catalog.assets,
            tenant_id=tenant_id,
            where=where,
            page_size=page_size,
            page_token=token,
        )
        found += [a.asset.id for a in page.items]
        token = page.next_page_token
        if not token:
            return found


async def test_labels_filter_keeps_assets_carrying_every_pair() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    both = await _register(catalog, tenant_id, labels={"shop": "eu", "kind": "shoe"})
    shop = await _register(catalog, tenant_id, labels={"shop": "eu"})
    await _register(catalog, tenant_id, labels={"shop": "us", "kind": "shoe"})
    other = await _tenant(catalog)
    await _register(catalog, other, labels={"shop": "eu", "kind": "shoe"})

    assert await _listed(catalog, tenant_id, AssetFilter(labels=(("shop", "eu"),))) == [
        shop,
        both,
    ]
    pairs = (("kind", "shoe"), ("shop", "eu"))
    assert await _listed(catalog, tenant_id, AssetFilter(labels=pairs)) == [both]
    assert await _listed(catalog, tenant_id, AssetFilter(labels=(("shop", "EU"),))) == []


async def test_capture_range_includes_its_start_excludes_its_end_and_undated_assets() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    by_day = {
        day: await _register(catalog, tenant_id, AssetMetadata(capture_time=_at(day)))
        for day in (1, 2, 3, 4)
    }
    undated = await _register(catalog, tenant_id, AssetMetadata())

    ranged = AssetFilter(captured_from=_at(2), captured_to=_at(4))
    assert await _listed(catalog, tenant_id, ranged) == [by_day[3], by_day[2]]
    assert await _listed(catalog, tenant_id, AssetFilter(captured_from=_at(4))) == [by_day[4]]
    assert await _listed(catalog, tenant_id, AssetFilter(captured_to=_at(2))) == [by_day[1]]
    assert undated in await _listed(catalog, tenant_id, AssetFilter())


async def test_filters_combine_and_page_through_every_match() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    wanted = []
    for day in range(1, 8):
        labels = {"shop": "eu" if day % 2 else "us"}
        asset_id = await _register(
            catalog, tenant_id, AssetMetadata(capture_time=_at(day)), labels=labels
        )
        if day % 2 and day >= 3:
            wanted.append(asset_id)
    where = AssetFilter(labels=(("shop", "eu"),), captured_from=_at(3))
    assert await _listed(catalog, tenant_id, where, page_size=1) == wanted[::-1]


async def test_a_page_token_only_continues_the_listing_with_the_same_filters() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    for _ in range(3):
        await _register(catalog, tenant_id, AssetMetadata(capture_time=_at(5)), labels={"a": "1"})
    where = AssetFilter(labels=(("a", "1"),), captured_from=_at(1))
    first = await list_assets(
        catalog.assets, tenant_id=tenant_id, where=where, page_size=1, page_token=""
    )
    assert first.next_page_token
    others = [
        AssetFilter(),
        AssetFilter(labels=(("a", "1"),)),
        AssetFilter(labels=(("a", "2"),), captured_from=_at(1)),
        AssetFilter(labels=(("a", "1"),), captured_from=_at(2)),
        AssetFilter(labels=(("a", "1"),), captured_from=_at(1), captured_to=_at(9)),
    ]
    for other in others:
        with pytest.raises(InvalidArgument) as refused:
            await list_assets(
                catalog.assets,
                tenant_id=tenant_id,
                where=other,
                page_size=1,
                page_token=first.next_page_token,
            )
        assert refused.value.reason == "INVALID_PAGE_TOKEN"
    again = await list_assets(
        catalog.assets,
        tenant_id=tenant_id,
        where=where,
        page_size=1,
        page_token=first.next_page_token,
    )
    assert len(again.items) == 1 and again.items[0].asset.id != first.items[0].asset.id


async def test_an_empty_or_reversed_capture_range_is_refused() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    for start, end in ((_at(2), _at(2)), (_at(3), _at(2))):
        with pytest.raises(InvalidArgument) as refused:
            await list_assets(
                catalog.assets,
                tenant_id=tenant_id,
                where=AssetFilter(captured_from=start, captured_to=end),
                page_size=1,
                page_token="",
            )
        assert refused.value.reason == "INVALID_FILTER"
