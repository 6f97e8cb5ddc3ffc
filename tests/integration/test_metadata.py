"""Asset metadata on the real servers (R12): what uploads say about themselves, GPS only
for tenants that keep it, ListAssets' label and capture-time filters, and renditions
that carry no EXIF or GPS whatever the tenant keeps."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import exifread
import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image

from devstack import Stack
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc
from tests.helpers import (
    Services,
    Tenant,
    error_info,
    secrets_in_logs,
    upload_messages,
    wait_for_status,
)

PHOTO = "photo_iphone6_gps.jpg"  # EXIF with GPS, taken 2015-04-10
OLYMPUS = "photo_olympus_ep3_12mp.jpg"  # EXIF without GPS, taken 2014-08-23
UNDATED = "png_rgba_dice.png"  # no metadata at all


def _upload(services: Services, tenant: Tenant, path: Path, **labels: str) -> str:
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    header = ingest_pb2.UploadHeader(filename=path.name, labels=labels)
    chunks = list(upload_messages(path.read_bytes(), path.name))[1:]
    response: ingest_pb2.UploadResponse = stub.Upload(
        iter([ingest_pb2.UploadRequest(header=header), *chunks]),
        metadata=tenant.metadata,
        timeout=60,
    )
    return response.asset.asset_id


def _get(services: Services, tenant: Tenant, asset_id: str) -> common_pb2.Asset:
    stub = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    request = catalog_pb2.GetAssetRequest(asset_id=asset_id)
    return stub.GetAsset(request, metadata=tenant.metadata, timeout=10).asset


def _keep_gps(services: Services, tenant: Tenant) -> None:
    stub = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    changed = stub.UpdateTenantSettings(
        catalog_pb2.UpdateTenantSettingsRequest(
            settings=common_pb2.TenantSettings(keep_gps=True),
            update_mask=FieldMask(paths=["keep_gps"]),
        ),
        metadata=tenant.metadata,
        timeout=10,
    )
    assert changed.settings.keep_gps


def _oracle_position(path: Path) -> tuple[float, float]:
    """Latitude and longitude as exifread reads them (a reader other than ours)."""
    data = path.read_bytes()
    tags = exifread.process_file(io.BytesIO(data[data.find(b"Exif\x00\x00") + 6 :]))

    def degrees(name: str) -> float:
        parts = [Fraction(p.numerator, p.denominator) for p in tags[f"GPS GPS{name}"].values]
        value = float(parts[0] + parts[1] / 60 + parts[2] / 3600)
        return -value if str(tags[f"GPS GPS{name}Ref"]) in ("S", "W") else value

    return degrees("Latitude"), degrees("Longitude")


def test_gps_is_kept_only_for_a_tenant_that_keeps_it(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    plain, keeper = make_tenant("meta"), make_tenant("gps")
    _keep_gps(services, keeper)
    dropped = _get(services, plain, _upload(services, plain, corpus / PHOTO)).metadata
    kept = _get(services, keeper, _upload(services, keeper, corpus / PHOTO)).metadata

    for metadata in (dropped, kept):
        assert (metadata.camera_make, metadata.camera_model) == ("Apple", "iPhone 6")
        assert metadata.capture_time.ToDatetime(tzinfo=dt.UTC) == dt.datetime(
            2015, 4, 10, 20, 12, 23, tzinfo=dt.UTC
        )
        assert metadata.f_number == pytest.approx(2.2) and metadata.iso == 32
        assert metadata.lens == "iPhone 6 back camera 4.15mm f/2.2"
    assert not dropped.HasField("gps")
    assert kept.HasField("gps")
    latitude, longitude = _oracle_position(corpus / PHOTO)
    assert kept.gps.latitude == pytest.approx(latitude, abs=1e-6)
    assert kept.gps.longitude == pytest.approx(longitude, abs=1e-6)
    # The position never reaches a log line, in either tenant's path.
    position = {"latitude": f"{latitude:.4f}", "longitude": f"{longitude:.4f}"}
    assert secrets_in_logs(stack.log_dir, position) == []


def test_renditions_carry_no_exif_or_gps(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    keeper = make_tenant("gps")
    _keep_gps(services, keeper)
    asset_id = _upload(services, keeper, corpus / PHOTO)
    asset = wait_for_status(services, keeper, asset_id, timeout=120)
    assert asset.status == common_pb2.ASSET_STATUS_READY and asset.metadata.HasField("gps")

    client = stack.s3.client()
    prefix = f"renditions/{keeper.tenant_id}/{asset_id}/"
    keys = [o.object_name or "" for o in client.list_objects(stack.bucket, prefix, recursive=True)]
    assert len(keys) >= len(asset.renditions) > 0
    for key in keys:
        response = client.get_object(stack.bucket, key)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        with Image.open(io.BytesIO(data)) as rendition:
            assert "exif" not in rendition.info, key
            assert len(rendition.getexif()) == 0, key
            assert not rendition.getexif().get_ifd(0x8825), key
        assert b"Exif\x00\x00" not in data and b"iPhone" not in data, key


def _list(services: Services, tenant: Tenant, **filters: object) -> tuple[list[str], str]:
    stub = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    response = stub.ListAssets(
        catalog_pb2.ListAssetsRequest(**filters),  # type: ignore[arg-type]
        metadata=tenant.metadata,
        timeout=10,
    )
    return [a.asset_id for a in response.assets], response.next_page_token


def _stamp(year: int, month: int = 1, day: int = 1) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime(year, month, day, tzinfo=dt.UTC))
    return stamp


def test_list_assets_filters_by_labels_and_capture_time(
    services: Services, tenant: Tenant, corpus: Path
) -> None:
    spain = _upload(services, tenant, corpus / PHOTO, album="spain", kind="photo")
    japan = _upload(services, tenant, corpus / OLYMPUS, album="japan", kind="photo")
    dice = _upload(services, tenant, corpus / UNDATED, album="spain", kind="render")

    assert _list(services, tenant, labels={"album": "spain"})[0] == [dice, spain]
    assert _list(services, tenant, labels={"album": "spain", "kind": "photo"})[0] == [spain]
    assert _list(services, tenant, labels={"album": "mars"})[0] == []

    after_2015 = _list(services, tenant, capture_time_from=_stamp(2015))[0]
    assert after_2015 == [spain]
    assert _list(services, tenant, capture_time_to=_stamp(2015))[0] == [japan]
    both, token = _list(services, tenant, capture_time_from=_stamp(2014), page_size=1)
    assert both == [japan] and token  # newest upload first
    rest, _ = _list(services, tenant, capture_time_from=_stamp(2014), page_size=1, page_token=token)
    assert rest == [spain]
    assert _list(services, tenant, labels={"kind": "photo"}, capture_time_from=_stamp(2014, 8, 24))[
        0
    ] == [spain]

    # A token belongs to the filters it was issued for.
    with pytest.raises(grpc.RpcError) as refused:
        _list(
            services,
            tenant,
            capture_time_from=_stamp(2014),
            labels={"album": "spain"},
            page_size=1,
            page_token=token,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused.value).reason == "INVALID_PAGE_TOKEN"
