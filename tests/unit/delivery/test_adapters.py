"""The delivery service's adapters without servers: catalog answers to the model,
readiness from dependency checks."""

from __future__ import annotations

from imagepipe.delivery import preset_version
from imagepipe.v1 import catalog_internal_pb2 as internal_pb2
from imagepipe.v1 import common_pb2
from services.delivery.catalog import resolution_from_proto
from services.delivery.model import AssetStatus
from services.delivery.readiness import DependencyReadiness
from services.shared.errors import Unavailable

KEY = "renditions/t/a/card.0123456789abcdef.webp"


def test_a_resolution_carries_status_renditions_and_version() -> None:
    response = internal_pb2.ResolveDeliveryResponse(
        status=common_pb2.ASSET_STATUS_READY,
        renditions=[
            internal_pb2.DeliverableRendition(
                format=common_pb2.IMAGE_FORMAT_WEBP,
                object_key=KEY,
                content_hash="ab" * 32,
                version="0123456789abcdef",
                size_bytes=1234,
                content_type="image/webp",
            )
        ],
        preset_version="fedcba9876543210",
    )
    resolution = resolution_from_proto(response)
    assert resolution.status is AssetStatus.READY
    assert resolution.preset_version == "fedcba9876543210"
    (rendition,) = resolution.renditions
    assert (rendition.format, rendition.object_key, rendition.size_bytes) == ("webp", KEY, 1234)
    assert rendition.etag == f'"{"ab" * 32}"'


def test_what_the_catalog_leaves_out_is_derived_and_unknown_formats_are_dropped() -> None:
    response = internal_pb2.ResolveDeliveryResponse(
        status=common_pb2.ASSET_STATUS_FAILED,
        renditions=[
            internal_pb2.DeliverableRendition(
                format=common_pb2.IMAGE_FORMAT_WEBP, object_key=KEY, size_bytes=1
            ),
            internal_pb2.DeliverableRendition(
                format=common_pb2.IMAGE_FORMAT_UNSPECIFIED, object_key=KEY, size_bytes=1
            ),
        ],
    )
    resolution = resolution_from_proto(response)
    assert resolution.status is AssetStatus.FAILED
    (rendition,) = resolution.renditions
    assert rendition.version == "0123456789abcdef", "the key's version"
    assert rendition.content_type == "image/webp"
    assert rendition.etag == '"0123456789abcdef"'
    assert resolution.preset_version == preset_version([("webp", "0123456789abcdef")])


def test_no_such_asset_is_unknown_and_deleted_is_deleted() -> None:
    for status, expected in (
        (common_pb2.ASSET_STATUS_UNSPECIFIED, AssetStatus.UNKNOWN),
        (common_pb2.ASSET_STATUS_DELETED, AssetStatus.DELETED),
        (common_pb2.ASSET_STATUS_PENDING, AssetStatus.PENDING),
        (common_pb2.ASSET_STATUS_PROCESSING, AssetStatus.PROCESSING),
    ):
        resolution = resolution_from_proto(internal_pb2.ResolveDeliveryResponse(status=status))
        assert resolution.status is expected
        assert resolution.renditions == () and resolution.preset_version == ""


async def test_ready_while_every_dependency_answers_and_until_draining() -> None:
    catalog_up = True

    async def catalog() -> None:
        if not catalog_up:
            raise Unavailable("catalog is down")

    async def s3() -> None:
        return None

    readiness = DependencyReadiness({"catalog": catalog, "s3": s3})
    assert not readiness.ready, "not before the first probe"
    assert await readiness.probe(timeout=1)
    catalog_up = False
    assert not await readiness.probe(timeout=1)
    catalog_up = True
    assert await readiness.probe(timeout=1)
    readiness.drain()
    assert not readiness.ready
    assert not await readiness.probe(timeout=1)
