"""AssetMetadata and ListAssets' filters between the wire and the model: what the catalog
refuses to store, and what a round trip keeps."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import catalog_pb2, common_pb2
from services.catalog.api.requests import asset_filter, checked_metadata
from services.catalog.db.rows import asset_metadata as stored_metadata
from services.catalog.db.rows import metadata_document
from services.catalog.model import AssetMetadata, AssetStatus, GpsPosition
from services.shared.errors import InvalidArgument
from services.shared.metadata_wire import metadata_from_message as asset_metadata
from services.shared.metadata_wire import metadata_message

FULL = AssetMetadata(
    capture_time=dt.datetime(2015, 4, 10, 18, 12, 23, 500000, tzinfo=dt.UTC),
    capture_time_offset="+02:00",
    camera_make="Apple",
    camera_model="iPhone 6",
    lens="iPhone 6 back camera 4.15mm f/2.2",
    exposure_time_seconds=0.025,
    f_number=2.2,
    iso=32,
    focal_length_mm=4.15,
    orientation=6,
    color_profile="Display P3",
    title="Plaza",
    description="Two lines\nof text",
    creator="Ana",
    copyright="(c) Ana",
    keywords=("plaza", "madrid"),
    gps=GpsPosition(40.44697, -3.72475, 639.59),
)


def test_the_model_survives_the_wire_and_the_row() -> None:
    assert asset_metadata(metadata_message(FULL)) == FULL
    document = metadata_document(FULL)
    assert "capture_time" not in document  # a column of its own
    assert stored_metadata(document, FULL.capture_time) == FULL
    assert metadata_document(AssetMetadata()) == {}
    assert stored_metadata({}, None) == AssetMetadata()


def test_no_gps_on_the_wire_is_none_in_the_model() -> None:
    message = metadata_message(AssetMetadata(camera_make="Canon"))
    assert not message.HasField("gps") and not message.HasField("capture_time")
    assert asset_metadata(message).gps is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"f_number": math.nan}, "f_number"),
        ({"exposure_time_seconds": math.inf}, "exposure_time_seconds"),
        ({"focal_length_mm": -1.0}, "focal_length_mm"),
        ({"orientation": 9}, "orientation"),
        ({"camera_make": "x" * 257}, "camera_make"),
        ({"description": "x" * 2001}, "description"),
        ({"keywords": ["k"] * 65}, "keywords"),
        ({"capture_time_offset": "two hours"}, "capture_time_offset"),
        ({"capture_time": Timestamp(seconds=2**40)}, "capture_time"),
        ({"gps": common_pb2.GpsPosition(latitude=91)}, "gps"),
        ({"gps": common_pb2.GpsPosition(longitude=math.nan)}, "gps"),
    ],
)
def test_metadata_the_database_cannot_hold_is_refused(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        checked_metadata(common_pb2.AssetMetadata(**changes))  # type: ignore[arg-type]
    assert refused.value.reason == "INVALID_METADATA"
    assert refused.value.metadata == {"field": f"metadata.{field}"}


def test_metadata_at_its_limits_is_accepted() -> None:
    checked_metadata(metadata_message(FULL))
    checked_metadata(
        common_pb2.AssetMetadata(
            camera_make="x" * 256, description="x" * 2000, keywords=["k" * 64] * 64
        )
    )


def test_list_filters_are_read_sorted_and_bounded() -> None:
    request = catalog_pb2.ListAssetsRequest(
        status=common_pb2.ASSET_STATUS_READY, labels={"b": "2", "a": "1"}
    )
    request.capture_time_from.FromDatetime(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    where = asset_filter(request)
    assert where.status == AssetStatus.READY
    assert where.labels == (("a", "1"), ("b", "2"))
    assert where.captured_from == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert where.captured_to is None

    too_many = catalog_pb2.ListAssetsRequest(labels={f"k{i}": "v" for i in range(33)})
    with pytest.raises(InvalidArgument) as refused:
        asset_filter(too_many)
    assert refused.value.reason == "INVALID_FILTER"
    bad_time = catalog_pb2.ListAssetsRequest(capture_time_to=Timestamp(seconds=-(2**40)))
    with pytest.raises(InvalidArgument) as refused:
        asset_filter(bad_time)
    assert refused.value.metadata == {"field": "capture_time_to"}
