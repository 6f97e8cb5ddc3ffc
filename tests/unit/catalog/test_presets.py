"""Tenant presets on the fakes: validation with a reason per mistake, copy-on-write
from the defaults, the snapshot a job keeps, what a backfill selects and how its
progress is counted, and what a focal point re-renders."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from services.catalog.model import AssetStatus, BackfillScope, FocalPoint, JobState
from services.catalog.usecases import assets, backfills, presets, purge
from services.shared.errors import (
    AlreadyExists,
    FailedPrecondition,
    ImagepipeError,
    InvalidArgument,
    NotFound,
)
from services.shared.presets import MAX_TENANT_PRESETS, Preset
from services.shared.storage import MemoryObjectStore
from tests.unit.catalog.fakes import FakeCatalog, new_asset, new_rendition, registered, rendered

LEASE = dt.timedelta(minutes=2)


def _catalog() -> tuple[FakeCatalog, uuid.UUID]:
    catalog = FakeCatalog()
    tenant = uuid.uuid4()
    catalog.db.tenants[tenant] = None  # type: ignore[assignment]  # only its presence counts
    return catalog, tenant


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"name": "Card"}, "INVALID_PRESET", "preset.name"),
        ({"max_width": 0}, "INVALID_PRESET_SIZE", "preset.max_width"),
        ({"max_height": 8193}, "INVALID_PRESET_SIZE", "preset.max_height"),
        ({"formats": ["png"]}, "INVALID_PRESET_FORMAT", "preset.formats"),
        ({"formats": [99]}, "INVALID_PRESET_FORMAT", "preset.formats"),
        ({"formats": []}, "INVALID_PRESET_FORMAT", "preset.formats"),
        ({"formats": ["jpeg", "jpeg"]}, "INVALID_PRESET_FORMAT", "preset.formats"),
        ({"quality": 101}, "INVALID_PRESET_QUALITY", "preset.quality"),
        ({"min_ssim": 1.0}, "INVALID_PRESET_QUALITY", "preset.min_ssim"),
        ({"min_ssim": float("nan")}, "INVALID_PRESET_QUALITY", "preset.min_ssim"),
        ({"chroma_subsampling": "4:2:2"}, "INVALID_PRESET_CHROMA", "preset.chroma_subsampling"),
        ({"fit": 7}, "INVALID_PRESET_FIT", "preset.fit"),
        ({"gravity": "north"}, "INVALID_PRESET_GRAVITY", "preset.gravity"),
    ],
)
def test_each_mistake_has_its_reason(fields: dict[str, object], reason: str, field: str) -> None:
    valid: dict[str, object] = {"name": "card", "max_width": 400, "max_height": 300}
    with pytest.raises(InvalidArgument) as refused:
        presets.checked_preset(valid | fields)
    assert refused.value.reason == reason
    assert refused.value.metadata["field"] == field


def test_a_valid_definition_is_the_model() -> None:
    preset = presets.checked_preset(
        {"name": "hero", "max_width": 8192, "max_height": 1, "formats": ["avif", "webp"]}
    )
    assert preset == Preset(name="hero", max_width=8192, max_height=1, formats=["avif", "webp"])


async def test_the_first_change_copies_the_defaults_and_only_that_tenant_owns_them() -> None:
    catalog, tenant = _catalog()
    other = uuid.uuid4()
    catalog.db.tenants[other] = None  # type: ignore[assignment]
    listed = await presets.list_presets(catalog.presets, tenant_id=tenant)
    assert not listed.own and [p.name for p in listed.presets] == ["zoom", "card", "thumb"]

    hero = {"name": "hero", "max_width": 1600, "max_height": 900, "fit": "cover"}
    created = await presets.create_preset(catalog.presets, tenant_id=tenant, fields=hero)
    assert created.fit == "cover" and created.version == Preset(**hero).version  # type: ignore[arg-type]
    mine = await presets.list_presets(catalog.presets, tenant_id=tenant)
    assert mine.own and [p.name for p in mine.presets] == ["hero", "zoom", "card", "thumb"]
    assert not (await presets.list_presets(catalog.presets, tenant_id=other)).own
    with pytest.raises(AlreadyExists) as taken:
        await presets.create_preset(catalog.presets, tenant_id=tenant, fields=hero)
    assert taken.value.reason == "PRESET_EXISTS"


async def test_updates_follow_the_mask_and_change_the_version() -> None:
    catalog, tenant = _catalog()
    before = {p.name: p for p in (await catalog.presets.tenant_presets(tenant)).presets}["card"]
    updated = await presets.update_preset(
        catalog.presets,
        tenant_id=tenant,
        name="card",
        fields={"max_width": 640, "max_height": 1, "quality": 0},
        paths=["max_width"],
    )
    assert (updated.max_width, updated.max_height) == (640, before.max_height)
    assert updated.version != before.version
    with pytest.raises(InvalidArgument) as bad:
        await presets.update_preset(
            catalog.presets, tenant_id=tenant, name="card", fields={"quality": 0}, paths=["quality"]
        )
    assert bad.value.reason == "INVALID_PRESET_QUALITY"
    for paths, reason in (([], "UPDATE_MASK_REQUIRED"), (["name"], "UNKNOWN_PRESET_FIELD")):
        with pytest.raises(InvalidArgument) as refused:
            await presets.update_preset(
                catalog.presets, tenant_id=tenant, name="card", fields={}, paths=paths
            )
        assert refused.value.reason == reason
    with pytest.raises(NotFound) as missing:
        await presets.update_preset(
            catalog.presets, tenant_id=tenant, name="nope", fields={}, paths=["fit"]
        )
    assert missing.value.reason == "PRESET_NOT_FOUND"


async def test_at_most_twenty_and_never_none() -> None:
    catalog, tenant = _catalog()
    for n in range(MAX_TENANT_PRESETS - 3):
        fields = {"name": f"p{n}", "max_width": 10, "max_height": 10}
        await presets.create_preset(catalog.presets, tenant_id=tenant, fields=fields)
    one_more = {"name": "one-more", "max_width": 10, "max_height": 10}
    with pytest.raises(FailedPrecondition) as full:
        await presets.create_preset(catalog.presets, tenant_id=tenant, fields=one_more)
    assert full.value.reason == "TOO_MANY_PRESETS"
    names = [p.name for p in (await catalog.presets.tenant_presets(tenant)).presets]
    for name in names[:-1]:
        await presets.delete_preset(catalog.presets, tenant_id=tenant, name=name)
    with pytest.raises(FailedPrecondition) as last:
        await presets.delete_preset(catalog.presets, tenant_id=tenant, name=names[-1])
    assert last.value.reason == "LAST_PRESET"


async def test_a_job_renders_the_presets_it_was_made_with() -> None:
    catalog, tenant = _catalog()
    _, job = await registered(catalog, new_asset(tenant))
    made_with = (await catalog.presets.tenant_presets(tenant)).presets
    await presets.delete_preset(catalog.presets, tenant_id=tenant, name="zoom")
    request = await catalog.jobs.render_request_row(job.id)
    assert request is not None and request.presets == made_with
    _, later = await registered(catalog, new_asset(tenant))
    newer = await catalog.jobs.render_request_row(later.id)
    assert newer is not None and [p.name for p in newer.presets] == ["card", "thumb"]


async def test_a_deleted_presets_renditions_are_hidden_then_purged() -> None:
    catalog, tenant = _catalog()
    asset = await rendered(catalog, new_asset(tenant), [("card", "jpeg"), ("thumb", "jpeg")])
    store = MemoryObjectStore()
    for row in catalog.db.renditions.values():
        store.objects[row.rendition.object_key] = (
            b"x",
            "image/jpeg",
            dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        )
    await presets.delete_preset(catalog.presets, tenant_id=tenant, name="card")
    shown = await assets.get_asset(catalog.assets, tenant_id=tenant, asset_id=asset.id)
    assert [r.preset for r in shown.renditions] == ["thumb"]
    report = await purge.run_purge(
        catalog.purge, store, tenant_id=tenant, dry_run=False, older_than_days=1
    )
    (item,) = report.items
    assert item.kind == "deleted_rendition" and "/card." in item.object_key
    assert item.object_key not in store.objects
    assert {key[1] for key in catalog.db.renditions} == {"thumb"}


async def _ready(catalog: FakeCatalog, tenant: uuid.UUID, made: dict[str, str]) -> uuid.UUID:
    """A ready asset with one JPEG per preset named, made from these versions."""
    asset, job = await registered(catalog, new_asset(tenant))
    started = await catalog.jobs.start_attempt(job.id, "r", LEASE)
    renditions = [
        new_rendition(tenant, asset.id, name, "jpeg", preset_version=version)
        for name, version in made.items()
    ]
    assert await catalog.jobs.complete_job(job.id, started.attempt, renditions, None, None)
    return asset.id


async def test_backfills_select_by_scope_and_count_their_jobs() -> None:
    catalog, tenant = _catalog()
    versions = {p.name: p.version for p in (await catalog.presets.tenant_presets(tenant)).presets}
    current = await _ready(catalog, tenant, versions)
    stale_card = await _ready(catalog, tenant, versions | {"card": "0" * 16})
    no_thumb = await _ready(catalog, tenant, {k: v for k, v in versions.items() if k != "thumb"})
    await registered(catalog, new_asset(tenant))  # pending: never selected

    async def selected(scope: BackfillScope, preset: str = "") -> set[uuid.UUID]:
        started = await backfills.start_backfill(
            catalog.backfills,
            catalog.presets,
            catalog.purge,
            tenant_id=tenant,
            scope=scope,
            preset=preset,
            asset_ids=[],
        )
        chosen = {r.job.asset_id for r in catalog.db.jobs.values() if r.backfill_id == started.id}
        for row in list(catalog.db.jobs.values()):  # out of the way for the next scope
            if row.backfill_id == started.id:
                catalog.db.set_job(row, state=JobState.DONE)
        assert started.total == len(chosen)
        return chosen

    assert await selected(BackfillScope.OUTDATED) == {stale_card}
    assert await selected(BackfillScope.OUTDATED, "thumb") == set()
    assert await selected(BackfillScope.MISSING) == {no_thumb}
    assert await selected(BackfillScope.MISSING, "card") == set()
    assert await selected(BackfillScope.ALL) == {current, stale_card, no_thumb}


async def test_backfill_progress_and_assets_with_an_unfinished_job() -> None:
    catalog, tenant = _catalog()
    first, second = [await _ready(catalog, tenant, {"thumb": ""}) for _ in range(2)]
    focused = await backfills.set_focal_point(
        catalog.backfills,
        catalog.presets,
        catalog.assets,
        tenant_id=tenant,
        asset_id=second,
        point=FocalPoint(0.5, 0.5),
    )
    assert focused.job is None, "no cover preset: nothing to re-render"
    await presets.create_preset(
        catalog.presets,
        tenant_id=tenant,
        fields={"name": "square", "max_width": 100, "max_height": 100, "fit": "cover"},
    )
    focused = await backfills.set_focal_point(
        catalog.backfills,
        catalog.presets,
        catalog.assets,
        tenant_id=tenant,
        asset_id=second,
        point=FocalPoint(0.5, 0.5),
    )
    assert focused.job is not None and focused.asset.asset.status == AssetStatus.READY
    started = await backfills.start_backfill(
        catalog.backfills,
        catalog.presets,
        catalog.purge,
        tenant_id=tenant,
        scope=BackfillScope.ASSET_IDS,
        preset="",
        asset_ids=[first, second, first],
    )
    assert (started.total, started.finished) == (1, False)  # `second` has its focus job
    (job,) = [r.job for r in catalog.db.jobs.values() if r.backfill_id == started.id]
    attempt = await catalog.jobs.start_attempt(job.id, "r", LEASE)
    await catalog.jobs.fail_attempt(job.id, attempt.attempt, "x", transient=False, retry_after=None)
    await catalog.poison.record_poison(job.id, "retries_exhausted", "x", b"")  # type: ignore[arg-type]
    done = await backfills.get_backfill(catalog.backfills, tenant_id=tenant, backfill_id=started.id)
    assert (done.done, done.failed, done.finished) == (0, 1, True)
    assert done.finished_at is not None
    asset = await catalog.assets.get_asset(tenant, first)
    assert asset is not None and asset.status == AssetStatus.READY, "a failed re-render"


@pytest.mark.parametrize(
    ("scope", "ids", "preset", "reason"),
    [
        (BackfillScope.ASSET_IDS, [], "", "TOO_MANY_ASSET_IDS"),
        (BackfillScope.ASSET_IDS, [uuid.uuid4()] * 1001, "", "TOO_MANY_ASSET_IDS"),
        (BackfillScope.ASSET_IDS, [uuid.uuid4()], "", "ASSET_NOT_FOUND"),
        (BackfillScope.ALL, [uuid.uuid4()], "", "INVALID_BACKFILL_SCOPE"),
        (BackfillScope.ALL, [], "poster", "PRESET_NOT_FOUND"),
    ],
)
async def test_backfill_requests_are_checked(
    scope: BackfillScope, ids: list[uuid.UUID], preset: str, reason: str
) -> None:
    catalog, tenant = _catalog()
    ids = ids if len(ids) <= 1 else [uuid.uuid4() for _ in ids]
    with pytest.raises(ImagepipeError) as refused:
        await backfills.start_backfill(
            catalog.backfills,
            catalog.presets,
            catalog.purge,
            tenant_id=tenant,
            scope=scope,
            preset=preset,
            asset_ids=ids,
        )
    assert refused.value.reason == reason


@pytest.mark.parametrize(("x", "y"), [(-0.1, 0.5), (0.5, 1.01), (float("nan"), 0.5)])
async def test_a_focal_point_is_within_the_image(x: float, y: float) -> None:
    catalog, tenant = _catalog()
    asset = await rendered(catalog, new_asset(tenant), [("thumb", "jpeg")])
    with pytest.raises(InvalidArgument) as refused:
        await backfills.set_focal_point(
            catalog.backfills,
            catalog.presets,
            catalog.assets,
            tenant_id=tenant,
            asset_id=asset.id,
            point=FocalPoint(x, y),
        )
    assert refused.value.reason == "INVALID_FOCAL_POINT"
