"""Quality's use cases: score an asset's renditions, or two uploaded images.

Compare reads an original (up to the upload limit) and every rendition into memory
before scoring them in the decoder pool, so the number of calls holding objects is
bounded *before* anything is read: as many as the pool has workers run, a bounded
number more wait (having read nothing), and beyond that a call is refused at once with
RESOURCE_EXHAUSTED `QUALITY_BUSY`. Waiting rather than refusing at the first busy
worker serves short bursts (a page of thumbnails checked at once); the bound keeps
memory and waiting time finite under a flood, and tells the caller to back off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from imagepipe.v1 import catalog_internal_pb2, common_pb2, quality_pb2
from services.quality.compare import (
    ComparedImage,
    RenditionBytes,
    compare_images,
    compare_renditions,
)
from services.shared.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from services.shared.imaging.formats import ACCEPTED
from services.shared.imaging.hashing import format_hash
from services.shared.imaging.metrics import GOOD_PSNR_DB
from services.shared.sandbox import DecodePool
from services.shared.spool import StreamLimits, spooled
from services.shared.storage import ObjectStore

__all__ = ["Assessor", "WorkLimit"]

# Calls that may wait for a running one to finish, per call allowed to run.
WAITING_PER_RUNNING = 4


class AssetObjects(Protocol):
    async def get_asset_objects(
        self, tenant_id: str, asset_id: str
    ) -> catalog_internal_pb2.GetAssetObjectsResponse: ...


def _rendition_quality(
    rendition: common_pb2.Rendition,
    original_size_bytes: int,
    measured: common_pb2.QualityScores | None,
) -> quality_pb2.RenditionQuality:
    """One rendition's entry: `measured` by this call, or else the stored scores."""
    scores = measured if measured is not None else rendition.scores
    return quality_pb2.RenditionQuality(
        preset=rendition.preset,
        format=rendition.format,
        width=rendition.width,
        height=rendition.height,
        size_bytes=rendition.size_bytes,
        original_size_bytes=original_size_bytes,
        quality=rendition.quality,
        scores=scores,
        good=scores.psnr_infinite or scores.psnr_db > GOOD_PSNR_DB,
        min_ssim=rendition.min_ssim,
        measured_at_render=measured is None,
    )


def _image_info(image: ComparedImage) -> quality_pb2.ImageInfo:
    return quality_pb2.ImageInfo(
        format=ACCEPTED[image.pillow_format].wire,  # type: ignore[arg-type]
        width=image.width,
        height=image.height,
        size_bytes=image.size_bytes,
        perceptual_hash=format_hash(image.perceptual_hash),
    )


class WorkLimit:
    """At most `running` holders at once and `waiting` more queued; beyond that, refuse."""

    def __init__(self, running: int, waiting: int) -> None:
        self._running = asyncio.Semaphore(max(running, 1))
        self._max_waiting = max(waiting, 0)
        self._waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._running.locked() and self._waiting >= self._max_waiting:
            raise ResourceExhausted(
                "the quality service is busy comparing other assets; retry with backoff",
                reason="QUALITY_BUSY",
                metadata={"waiting": self._waiting},
            )
        self._waiting += 1
        try:
            await self._running.acquire()  # a cancelled caller (deadline) stops waiting
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._running.release()


@dataclass
class Assessor:
    catalog: AssetObjects
    store: ObjectStore
    pool: DecodePool
    max_pixels: int
    # Each of the two CompareImages streams, as an upload (IMAGEPIPE_MAX_UPLOAD_BYTES, ...).
    limits: StreamLimits
    # Compare calls holding objects in memory at once: the decoder pool's size.
    max_in_flight: int = 1
    limit: WorkLimit = field(init=False)

    def __post_init__(self) -> None:
        self.limit = WorkLimit(self.max_in_flight, self.max_in_flight * WAITING_PER_RUNNING)

    async def compare_asset(self, tenant_id: str, asset_id: str) -> quality_pb2.CompareResponse:
        objects = await self.catalog.get_asset_objects(tenant_id, asset_id)
        asset = objects.asset
        if not objects.renditions:
            raise FailedPrecondition(
                f"asset {asset_id} has no renditions yet (status "
                f"{common_pb2.AssetStatus.Name(asset.status).removeprefix('ASSET_STATUS_').lower()})",
                reason="ASSET_NOT_READY",
            )
        # Renditions whose quality the renderer chose for an SSIM target carry the scores
        # it measured then, against the image it encoded: those are returned as stored.
        # The others are measured here, and only then is the original fetched.
        to_measure = [r for r in objects.renditions if not r.rendition.HasField("scores")]
        measured: dict[tuple[str, int], common_pb2.QualityScores] = {}
        if to_measure:
            async with self.limit.slot():
                original = await self.store.get_bytes(objects.original_key)
                renditions = [
                    RenditionBytes(r.rendition.preset, await self.store.get_bytes(r.object_key))
                    for r in to_measure
                ]
                scores = await self.pool.run(
                    compare_renditions, original, renditions, self.max_pixels
                )
                del original, renditions  # released before the slot is
            for record, result in zip(to_measure, scores, strict=True):
                key = (record.rendition.preset, record.rendition.format)
                measured[key] = result.message()
        return quality_pb2.CompareResponse(
            asset_id=asset.asset_id,
            original=quality_pb2.ImageInfo(
                format=asset.format,
                width=asset.width,
                height=asset.height,
                size_bytes=asset.size_bytes,
                perceptual_hash=asset.perceptual_hash,
            ),
            renditions=[
                _rendition_quality(
                    record.rendition,
                    asset.size_bytes,
                    measured.get((record.rendition.preset, record.rendition.format)),
                )
                for record in objects.renditions
            ],
        )

    async def compare_uploads(
        self, messages: AsyncIterable[quality_pb2.CompareImagesRequest]
    ) -> quality_pb2.CompareImagesResponse:
        async with spooled(
            messages,
            quality_pb2.CompareImagesHeader,
            {"reference_chunk": "reference image", "candidate_chunk": "candidate image"},
            what="CompareImages",
            limits=self.limits,
        ) as received:
            for name, spool in received.spools.items():
                if not spool.size:
                    image = name.removesuffix("_chunk")
                    raise InvalidArgument(
                        f"no bytes received for the {image} image", reason="IMAGE_EMPTY"
                    )
            reference, candidate, scores, resized = await self.pool.run(
                compare_images,
                received.spools["reference_chunk"].path,
                received.spools["candidate_chunk"].path,
                self.max_pixels,
            )
        return quality_pb2.CompareImagesResponse(
            reference=_image_info(reference),
            candidate=_image_info(candidate),
            scores=scores.message(),
            resized=resized,
            good=scores.good,
        )
