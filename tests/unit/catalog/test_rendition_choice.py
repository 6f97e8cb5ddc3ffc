"""Which rendition a client gets: the preset in the first accepted format the asset
has (JPEG first when it accepts anything), and why there is none when there is none."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import pytest

from services.catalog.model import Asset, PoisonReason
from services.catalog.usecases.renditions import DEFAULT_PREFERENCE, choose_rendition
from services.shared.errors import FailedPrecondition, NotFound
from tests.unit.catalog.fakes import FakeCatalog, new_asset, new_rendition, registered, rendered

TENANT = uuid.uuid4()
ALL_FORMATS = [("thumb", "jpeg"), ("thumb", "webp"), ("thumb", "avif"), ("zoom", "webp")]


async def _choose(
    catalog: FakeCatalog, asset: Asset, accept: Sequence[str], preset: str = "thumb"
) -> tuple[str, str]:
    chosen = await choose_rendition(
        catalog.assets, tenant_id=TENANT, asset_id=asset.id, preset=preset, accept=accept
    )
    assert chosen.asset_id == asset.id
    return chosen.preset, chosen.format


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (["avif", "webp"], "avif"),
        (["webp", "avif"], "webp"),
        (["png", "webp", "jpeg"], "webp"),  # a format the asset lacks is skipped
        (["jpeg"], "jpeg"),
    ],
)
async def test_the_first_accepted_format_the_asset_has_wins(
    accept: list[str], expected: str
) -> None:
    catalog = FakeCatalog()
    asset = await rendered(catalog, new_asset(TENANT), ALL_FORMATS)
    assert await _choose(catalog, asset, accept) == ("thumb", expected)


async def test_without_an_accept_list_jpeg_comes_first() -> None:
    catalog = FakeCatalog()
    every = await rendered(catalog, new_asset(TENANT), ALL_FORMATS)
    assert await _choose(catalog, every, []) == ("thumb", "jpeg")
    no_jpeg = await rendered(catalog, new_asset(TENANT), [("thumb", "avif"), ("thumb", "webp")])
    assert await _choose(catalog, no_jpeg, []) == ("thumb", "webp")
    assert DEFAULT_PREFERENCE[0] == "jpeg"


async def test_another_presets_format_is_not_offered() -> None:
    catalog = FakeCatalog()
    asset = await rendered(catalog, new_asset(TENANT), ALL_FORMATS)
    assert await _choose(catalog, asset, ["avif", "webp"], preset="zoom") == ("zoom", "webp")


async def test_no_accepted_format_names_the_available_ones() -> None:
    catalog = FakeCatalog()
    asset, job = await registered(catalog, new_asset(TENANT))
    started = await catalog.jobs.start_attempt(job.id, "renderer", dt.timedelta(minutes=2))
    # Listed largest first: webp before avif, yet named in order.
    made = [
        new_rendition(TENANT, asset.id, "thumb", "avif", width=100, height=100),
        new_rendition(TENANT, asset.id, "thumb", "webp", width=200, height=200),
    ]
    await catalog.jobs.complete_job(job.id, started.attempt, made, None, None)
    with pytest.raises(NotFound) as refused:
        await _choose(catalog, asset, ["png", "jpeg"])
    assert refused.value.reason == "FORMAT_NOT_AVAILABLE"
    assert refused.value.metadata == {"available": "avif,webp"}


async def test_a_ready_asset_without_the_preset_has_no_such_rendition() -> None:
    catalog = FakeCatalog()
    asset = await rendered(catalog, new_asset(TENANT), [("thumb", "jpeg")])
    with pytest.raises(NotFound) as refused:
        await _choose(catalog, asset, [], preset="poster")
    assert refused.value.reason == "RENDITION_NOT_FOUND"


async def test_an_unfinished_asset_is_not_ready_yet() -> None:
    catalog = FakeCatalog()
    pending, job = await registered(catalog, new_asset(TENANT))
    with pytest.raises(FailedPrecondition) as refused:
        await _choose(catalog, pending, ["jpeg"])
    assert refused.value.reason == "ASSET_NOT_READY"
    assert refused.value.metadata == {"status": "pending"}

    await catalog.jobs.start_attempt(job.id, "renderer", dt.timedelta(minutes=2))
    with pytest.raises(FailedPrecondition) as refused:
        await _choose(catalog, pending, ["jpeg"])
    assert refused.value.metadata == {"status": "processing"}


async def test_a_failed_asset_has_no_rendition_rather_than_being_not_ready() -> None:
    catalog = FakeCatalog()
    asset, job = await registered(catalog, new_asset(TENANT))
    await catalog.poison.record_poison(job.id, PoisonReason.RETRIES_EXHAUSTED, "given up", b"")
    with pytest.raises(NotFound) as refused:
        await _choose(catalog, asset, ["jpeg"])
    assert refused.value.reason == "RENDITION_NOT_FOUND"


@pytest.mark.parametrize("whose", ["unknown", "other tenant", "deleted"])
async def test_an_asset_the_tenant_cannot_see_is_not_found(whose: str) -> None:
    catalog = FakeCatalog()
    other = uuid.uuid4() if whose == "other tenant" else TENANT
    asset = await rendered(catalog, new_asset(other), ALL_FORMATS)
    if whose == "deleted":
        await catalog.assets.delete_asset(TENANT, asset.id)
    asset_id = uuid.uuid4() if whose == "unknown" else asset.id
    with pytest.raises(NotFound) as refused:
        await choose_rendition(
            catalog.assets, tenant_id=TENANT, asset_id=asset_id, preset="thumb", accept=[]
        )
    assert refused.value.reason == "ASSET_NOT_FOUND"
