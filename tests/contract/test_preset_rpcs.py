"""The preset RPCs of catalog, called through the generated stubs: a tenant's presets
(ListTenantPresets, CreatePreset, UpdatePreset, DeletePreset), focal points
(SetFocalPoint) and backfills (StartBackfill, GetBackfill).

test_rpcs.py's completeness check names these RPCs; their cases are here.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, renderer_pb2
from tests.helpers import Services, Tenant, error_info, upload, wait_for_status


def _catalog(services: Services) -> catalog_pb2_grpc.CatalogServiceStub:
    return catalog_pb2_grpc.CatalogServiceStub(services.catalog)


def _refused(call: object, code: grpc.StatusCode, reason: str) -> None:
    assert callable(call)
    with pytest.raises(grpc.RpcError) as failed:
        call()
    assert failed.value.code() == code, failed.value
    assert error_info(failed.value).reason == reason


def _ready_asset(services: Services, tenant: Tenant, corpus: Path) -> common_pb2.Asset:
    uploaded = upload(services, tenant, (corpus / "edge_tiny_20x20.jpg").read_bytes())
    return wait_for_status(services, tenant, uploaded.asset.asset_id)


def test_a_tenants_presets_are_listed_created_updated_and_deleted(
    services: Services, tenant: Tenant
) -> None:
    catalog, md = _catalog(services), tenant.metadata
    listed = catalog.ListTenantPresets(catalog_pb2.ListTenantPresetsRequest(), metadata=md)
    assert listed.defaults
    assert [p.name for p in listed.presets] == ["zoom", "card", "thumb"]
    assert all(len(p.version) == 16 for p in listed.presets)

    hero = renderer_pb2.Preset(
        name="hero",
        max_width=1600,
        max_height=900,
        fit=common_pb2.FIT_COVER,
        gravity=common_pb2.GRAVITY_ATTENTION,
        formats=[common_pb2.IMAGE_FORMAT_JPEG, common_pb2.IMAGE_FORMAT_WEBP],
        chroma_subsampling=common_pb2.CHROMA_SUBSAMPLING_444,
    )
    created = catalog.CreatePreset(catalog_pb2.CreatePresetRequest(preset=hero), metadata=md)
    assert created.preset.quality == 85 and created.preset.fit == common_pb2.FIT_COVER
    listed = catalog.ListTenantPresets(catalog_pb2.ListTenantPresetsRequest(), metadata=md)
    assert not listed.defaults
    assert [p.name for p in listed.presets] == ["hero", "zoom", "card", "thumb"]

    updated = catalog.UpdatePreset(
        catalog_pb2.UpdatePresetRequest(
            preset=renderer_pb2.Preset(name="hero", max_width=1200, max_height=1),
            update_mask=FieldMask(paths=["max_width"]),
        ),
        metadata=md,
    ).preset
    assert (updated.max_width, updated.max_height) == (1200, 900)
    assert updated.version != created.preset.version
    catalog.DeletePreset(catalog_pb2.DeletePresetRequest(name="hero"), metadata=md)
    listed = catalog.ListTenantPresets(catalog_pb2.ListTenantPresetsRequest(), metadata=md)
    assert [p.name for p in listed.presets] == ["zoom", "card", "thumb"] and not listed.defaults

    _refused(
        lambda: catalog.CreatePreset(
            catalog_pb2.CreatePresetRequest(preset=renderer_pb2.Preset(name="x", max_width=1)),
            metadata=md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PRESET_SIZE",
    )
    _refused(
        lambda: catalog.DeletePreset(catalog_pb2.DeletePresetRequest(name="hero"), metadata=md),
        grpc.StatusCode.NOT_FOUND,
        "PRESET_NOT_FOUND",
    )


def test_a_deleted_presets_renditions_are_no_longer_served(
    services: Services, tenant: Tenant, corpus: Path
) -> None:
    catalog, md = _catalog(services), tenant.metadata
    asset = _ready_asset(services, tenant, corpus)
    assert "card" in {r.preset for r in asset.renditions}
    catalog.DeletePreset(catalog_pb2.DeletePresetRequest(name="card"), metadata=md)
    shown = catalog.GetAsset(catalog_pb2.GetAssetRequest(asset_id=asset.asset_id), metadata=md)
    assert "card" not in {r.preset for r in shown.asset.renditions}
    _refused(
        lambda: catalog.GetRendition(
            catalog_pb2.GetRenditionRequest(asset_id=asset.asset_id, preset="card"), metadata=md
        ),
        grpc.StatusCode.NOT_FOUND,
        "RENDITION_NOT_FOUND",
    )
    planned = catalog.Purge(catalog_pb2.PurgeRequest(dry_run=True, older_than_days=0), metadata=md)
    assert any(
        item.kind == catalog_pb2.PURGE_ITEM_KIND_DELETED_RENDITION
        and item.asset_id == asset.asset_id
        and "/card." in item.object_key
        for item in planned.items
    ), planned


def test_a_focal_point_is_set_cleared_and_rerenders_cover_presets(
    services: Services, tenant: Tenant, corpus: Path
) -> None:
    catalog, md = _catalog(services), tenant.metadata
    asset = _ready_asset(services, tenant, corpus)
    point = common_pb2.FocalPoint(x=0.25, y=0.75)
    plain = catalog.SetFocalPoint(
        catalog_pb2.SetFocalPointRequest(asset_id=asset.asset_id, focal_point=point), metadata=md
    )
    assert plain.asset.focal_point == point and plain.job_id == ""  # no cover preset yet
    square = renderer_pb2.Preset(
        name="square", max_width=64, max_height=64, fit=common_pb2.FIT_COVER
    )
    catalog.CreatePreset(catalog_pb2.CreatePresetRequest(preset=square), metadata=md)
    focused = catalog.SetFocalPoint(
        catalog_pb2.SetFocalPointRequest(asset_id=asset.asset_id, focal_point=point), metadata=md
    )
    assert focused.job_id and focused.asset.status == common_pb2.ASSET_STATUS_READY
    cleared = catalog.SetFocalPoint(
        catalog_pb2.SetFocalPointRequest(asset_id=asset.asset_id), metadata=md
    )
    assert not cleared.asset.HasField("focal_point")
    _refused(
        lambda: catalog.SetFocalPoint(
            catalog_pb2.SetFocalPointRequest(
                asset_id=asset.asset_id, focal_point=common_pb2.FocalPoint(x=1.5)
            ),
            metadata=md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FOCAL_POINT",
    )


def test_a_backfill_rerenders_and_reports_its_progress(
    services: Services, tenant: Tenant, corpus: Path
) -> None:
    catalog, md = _catalog(services), tenant.metadata
    asset = _ready_asset(services, tenant, corpus)
    started = catalog.StartBackfill(
        catalog_pb2.StartBackfillRequest(
            scope=catalog_pb2.BACKFILL_SCOPE_ASSET_IDS, asset_ids=[asset.asset_id]
        ),
        metadata=md,
    ).backfill
    assert started.total == 1 and started.scope == catalog_pb2.BACKFILL_SCOPE_ASSET_IDS
    deadline = time.monotonic() + 60
    backfill = started
    while backfill.state != catalog_pb2.BACKFILL_STATE_FINISHED:
        assert time.monotonic() < deadline, backfill
        time.sleep(0.2)
        backfill = catalog.GetBackfill(
            catalog_pb2.GetBackfillRequest(backfill_id=started.backfill_id), metadata=md
        ).backfill
    assert (backfill.done, backfill.failed) == (1, 0) and backfill.HasField("finish_time")
    shown = catalog.GetAsset(catalog_pb2.GetAssetRequest(asset_id=asset.asset_id), metadata=md)
    assert shown.asset.status == common_pb2.ASSET_STATUS_READY
    assert shown.asset.job_id != asset.job_id  # the re-render is its newest job

    nothing = catalog.StartBackfill(
        catalog_pb2.StartBackfillRequest(scope=catalog_pb2.BACKFILL_SCOPE_MISSING), metadata=md
    ).backfill
    assert nothing.total == 0 and nothing.state == catalog_pb2.BACKFILL_STATE_FINISHED
    _refused(
        lambda: catalog.StartBackfill(catalog_pb2.StartBackfillRequest(), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_BACKFILL_SCOPE",
    )
    _refused(
        lambda: catalog.GetBackfill(
            catalog_pb2.GetBackfillRequest(backfill_id=asset.asset_id), metadata=md
        ),
        grpc.StatusCode.NOT_FOUND,
        "BACKFILL_NOT_FOUND",
    )
