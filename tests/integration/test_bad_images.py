"""Damaged images through the real servers: a multi-frame GIF, TIFF or WebP cut short
and a PNG with one flipped byte of compressed data are refused INVALID_ARGUMENT with
their reason by Upload and by CompareImages (never INTERNAL, never accepted), and
leave no asset behind.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, quality_pb2, quality_pb2_grpc
from tests.helpers import Services, Tenant, error_info, upload

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
GOOD = "png_rgba_dice.png"


def _multi_frame_cut(pillow_format: str) -> bytes:
    """Four noise frames, cut inside the third: the first frame is whole."""
    rng = np.random.default_rng(9)
    frames = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, pillow_format, save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    return data[: len(data) * 5 // 8]


def _flipped_png() -> bytes:
    buffer = io.BytesIO()
    with Image.open(CORPUS / GOOD) as image:
        image.save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[data.index(b"IDAT") + 4 + len(data) // 2] ^= 0xFF
    return bytes(data)


DAMAGED: dict[str, tuple[Callable[[], bytes], str]] = {
    "gif cut in a later frame": (lambda: _multi_frame_cut("GIF"), "IMAGE_TRUNCATED"),
    "tiff cut in a later page": (lambda: _multi_frame_cut("TIFF"), "IMAGE_TRUNCATED"),
    "webp cut in a later frame": (lambda: _multi_frame_cut("WEBP"), "IMAGE_TRUNCATED"),
    "corpus gif cut in a frame header": (
        (CORPUS / "invalid_truncated_gif_animated.gif").read_bytes,
        "IMAGE_TRUNCATED",
    ),
    "corpus tiff cut in half": (
        (CORPUS / "invalid_truncated_tiff_multipage.tif").read_bytes,
        "IMAGE_TRUNCATED",
    ),
    "png with a flipped IDAT byte": (_flipped_png, "IMAGE_CORRUPT"),
}


@pytest.fixture(scope="module")
def tenant(make_tenant: Callable[[str], Tenant]) -> Tenant:
    return make_tenant("damaged")


@pytest.mark.parametrize("case", DAMAGED, ids=str)
def test_upload_refuses_a_damaged_image_with_its_reason(
    case: str, services: Services, tenant: Tenant
) -> None:
    make, reason = DAMAGED[case]
    with pytest.raises(grpc.RpcError) as refused:
        upload(services, tenant, make(), "damaged.bin")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert error_info(refused.value).reason == reason, refused.value.details()
    word = "truncated" if reason == "IMAGE_TRUNCATED" else "corrupt"
    assert word in (refused.value.details() or "")


@pytest.mark.parametrize("case", DAMAGED, ids=str)
def test_compare_images_refuses_a_damaged_reference_with_its_reason(
    case: str, services: Services, tenant: Tenant
) -> None:
    make, reason = DAMAGED[case]
    damaged, good = make(), (CORPUS / GOOD).read_bytes()

    def stream() -> Iterator[quality_pb2.CompareImagesRequest]:
        yield quality_pb2.CompareImagesRequest(
            header=quality_pb2.CompareImagesHeader(
                reference_filename="damaged.bin", candidate_filename=GOOD
            )
        )
        yield quality_pb2.CompareImagesRequest(reference_chunk=damaged)
        yield quality_pb2.CompareImagesRequest(candidate_chunk=good)

    quality = quality_pb2_grpc.QualityServiceStub(services.quality)
    with pytest.raises(grpc.RpcError) as refused:
        quality.CompareImages(stream(), metadata=tenant.metadata, timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert error_info(refused.value).reason == reason, refused.value.details()


def test_refused_uploads_leave_no_asset(services: Services, tenant: Tenant) -> None:
    for case, (make, _) in DAMAGED.items():
        with pytest.raises(grpc.RpcError) as refused:
            upload(services, tenant, make(), "damaged.bin")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    listed = catalog_pb2_grpc.CatalogServiceStub(services.catalog).ListAssets(
        catalog_pb2.ListAssetsRequest(page_size=100), metadata=tenant.metadata, timeout=10
    )
    assert list(listed.assets) == []
