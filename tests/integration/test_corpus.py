"""Every file of the corpus through the real stack: accepted ones rendered right,
refused ones refused with a specific reason and no trace in S3, PostgreSQL or RabbitMQ.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import grpc
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from skimage.color import deltaE_cie76, rgb2lab

from devstack import Stack, unique_jpeg
from imagepipe.v1 import common_pb2
from services.shared.broker import Topology
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.normalize import load_srgb
from services.shared.imaging.placeholders import THUMBHASH_MAX_BYTES, thumbhash_decode
from tests.helpers import Services, Tenant, error_info, upload, wait_for_status

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())
ACCEPTED = [e for e in MANIFEST if e["expect"] == "accept"]
REJECTED = [e for e in MANIFEST if e["expect"] == "reject"]
EXPECTED_REASON = {
    "invalid_truncated": "IMAGE_TRUNCATED",
    "invalid_empty": "IMAGE_EMPTY",
    "invalid_text_as_image": "IMAGE_FORMAT_UNSUPPORTED",
    "invalid_not_raster": "IMAGE_FORMAT_UNSUPPORTED",
    "invalid_decompression_bomb": "IMAGE_TOO_LARGE",
    "invalid_garbage_after_header": "IMAGE_CORRUPT",
}
EXPECTED_WORDS = {
    "invalid_truncated": "truncated",
    "invalid_empty": "empty",
    "invalid_text_as_image": "not an image",
    "invalid_not_raster": "SVG",
    "invalid_decompression_bomb": "MP, limit is",
    "invalid_garbage_after_header": "corrupt",
}


@pytest.fixture(scope="module")
def accepted_assets(
    services: Services, make_tenant: Callable[[str], Tenant]
) -> tuple[Tenant, dict[str, common_pb2.Asset]]:
    """Upload every accepted file once, then wait for all of them."""
    tenant = make_tenant("corpus")
    uploaded = {
        e["file"]: upload(services, tenant, (CORPUS / e["file"]).read_bytes(), e["file"])
        for e in ACCEPTED
    }
    ready = {
        name: wait_for_status(services, tenant, r.asset.asset_id, timeout=60)
        for name, r in uploaded.items()
    }
    return tenant, ready


@pytest.mark.parametrize("entry", ACCEPTED, ids=lambda e: e["file"])
def test_accepted_files_end_ready_with_clean_rgb_renditions(
    entry: dict[str, Any],
    accepted_assets: tuple[Tenant, dict[str, common_pb2.Asset]],
    stack: Stack,
) -> None:
    tenant, assets = accepted_assets
    asset = assets[entry["file"]]
    assert asset.status == common_pb2.ASSET_STATUS_READY
    width, height = entry["oriented_size"]
    assert (asset.width, asset.height) == (width, height)
    assert len(asset.renditions) == 3
    client = stack.s3.client()
    for rendition in asset.renditions:
        prefix = f"renditions/{tenant.tenant_id}/{asset.asset_id}/{rendition.preset}."
        (key,) = [o.object_name for o in client.list_objects(stack.bucket, prefix=prefix)]
        assert key is not None and key.endswith(".jpg")
        data = client.get_object(stack.bucket, key).read()
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.size == (rendition.width, rendition.height)
            assert abs(image.width * height / width - image.height) <= 1
            assert not image.getexif(), "no EXIF (and so no GPS) in renditions"
            assert "exif" not in image.info
        assert b"GPS" not in data and b"Exif\x00\x00" not in data


def _mean_lab(rgb: NDArray[np.float64]) -> NDArray[np.float64]:
    mean = rgb.reshape(-1, 3).mean(axis=0) / 255.0
    lab: NDArray[np.float64] = rgb2lab(mean.reshape(1, 1, 3))
    return lab


@pytest.mark.parametrize("entry", ACCEPTED, ids=lambda e: e["file"])
def test_accepted_files_get_a_placeholder_with_their_mean_colour(
    entry: dict[str, Any], accepted_assets: tuple[Tenant, dict[str, common_pb2.Asset]]
) -> None:
    """GetAsset returns a ThumbHash that paints the image's mean colour (within ΔE76
    10 of the oriented sRGB original's) and a dominant colour."""
    _, assets = accepted_assets
    placeholder = assets[entry["file"]].placeholder
    thumbhash = base64.b64decode(placeholder.thumbhash, validate=True)
    assert 5 <= len(thumbhash) <= THUMBHASH_MAX_BYTES
    assert re.fullmatch(r"#[0-9a-f]{6}", placeholder.dominant_color), placeholder
    register_decoders()  # HEIC and AVIF, as in the services
    original, _ = load_srgb(io.BytesIO((CORPUS / entry["file"]).read_bytes()), 10**8)
    painted = np.asarray(thumbhash_decode(thumbhash).convert("RGB"), dtype=np.float64)
    expected = _mean_lab(np.asarray(original, dtype=np.float64))
    assert float(deltaE_cie76(_mean_lab(painted), expected)[0, 0]) < 10


@dataclass
class Refusal:
    code: grpc.StatusCode
    reason: str
    message: str


@pytest.fixture(scope="module")
def refusals(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> tuple[Tenant, dict[str, Refusal], list[aio_pika.abc.AbstractIncomingMessage]]:
    """Upload every refused file while a private queue taps the render exchange."""
    tenant = make_tenant("hostile")
    topology = Topology(prefix=stack.prefix, delivery_limit=1)

    async def run() -> tuple[dict[str, Refusal], list[aio_pika.abc.AbstractIncomingMessage]]:
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(topology.exchange)
            tap = await channel.declare_queue(exclusive=True)
            await tap.bind(exchange, Topology.WORK_KEY)
            seen: dict[str, Refusal] = {}
            for entry in REJECTED:
                data = (CORPUS / entry["file"]).read_bytes()
                try:
                    await asyncio.to_thread(upload, services, tenant, data, entry["file"])
                except grpc.RpcError as error:
                    seen[entry["file"]] = Refusal(
                        error.code(), error_info(error).reason, error.details() or ""
                    )
            # A sentinel: another tenant's accepted upload, published after every refusal
            # was answered. Once the tap holds its message, the tap demonstrably works and
            # anything a refused upload had published is in it too.
            sentinel = await asyncio.to_thread(
                upload,
                services,
                make_tenant("sentinel"),
                unique_jpeg((CORPUS / "orient_Landscape_1.jpg").read_bytes(), "sentinel"),
            )
            messages: list[aio_pika.abc.AbstractIncomingMessage] = []
            async with asyncio.timeout(60):
                while not any(m.message_id == sentinel.asset.job_id for m in messages):
                    message = await tap.get(fail=False, no_ack=True)
                    if message is None:
                        await asyncio.sleep(0.05)  # polling the tap, not waiting for time
                    else:
                        messages.append(message)
            return seen, messages

    seen, messages = asyncio.run(run())
    return tenant, seen, messages


@pytest.mark.parametrize("entry", REJECTED, ids=lambda e: e["file"])
def test_refused_files_get_a_specific_reason_and_message(
    entry: dict[str, Any],
    refusals: tuple[Tenant, dict[str, Refusal], list[aio_pika.abc.AbstractIncomingMessage]],
) -> None:
    _, seen, _ = refusals
    assert entry["file"] in seen, f"{entry['file']} was accepted"
    refusal = seen[entry["file"]]
    assert refusal.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert refusal.reason == EXPECTED_REASON[entry["category"]], refusal
    assert EXPECTED_WORDS[entry["category"]] in refusal.message, refusal


def test_refusals_leave_no_object_row_or_message(
    refusals: tuple[Tenant, dict[str, Refusal], list[aio_pika.abc.AbstractIncomingMessage]],
    stack: Stack,
) -> None:
    tenant, seen, messages = refusals
    assert len(seen) == len(REJECTED)
    client = stack.s3.client()
    for prefix in ("originals", "renditions"):
        listed = list(
            client.list_objects(
                stack.bucket, prefix=f"{prefix}/{tenant.tenant_id}/", recursive=True
            )
        )
        assert listed == [], f"objects left under {prefix}/"

    async def rows() -> dict[str, int]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            counts = {}
            for table in ("assets", "jobs", "renditions", "poison_jobs"):
                counts[table] = await connection.fetchval(
                    f"SELECT count(*) FROM {table} WHERE tenant_id = $1::uuid", tenant.tenant_id
                )
            return counts
        finally:
            await connection.close()

    assert asyncio.run(rows()) == {"assets": 0, "jobs": 0, "renditions": 0, "poison_jobs": 0}
    for_tenant = [m for m in messages if (m.headers or {}).get("x-tenant-id") == tenant.tenant_id]
    assert for_tenant == [], "a render request was published for a refused upload"
