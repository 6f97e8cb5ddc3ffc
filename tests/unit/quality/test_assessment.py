"""Quality's decisions on fakes: what Compare reads, when, and how much at once."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from imagepipe.v1 import catalog_internal_pb2, common_pb2, quality_pb2
from services.quality.assessment import Assessor
from services.shared.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from services.shared.spool import StreamLimits
from services.shared.storage import MemoryObjectStore

_R = TypeVar("_R")
TENANT = str(uuid.uuid4())
ORIGINAL_KEY = f"originals/{TENANT}/abc"


def _jpeg(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class FakeCatalog:
    def __init__(self, renditions: list[catalog_internal_pb2.RenditionRecord]) -> None:
        self.renditions = renditions

    async def get_asset_objects(
        self, tenant_id: str, asset_id: str
    ) -> catalog_internal_pb2.GetAssetObjectsResponse:
        status = (
            common_pb2.ASSET_STATUS_READY if self.renditions else common_pb2.ASSET_STATUS_PROCESSING
        )
        return catalog_internal_pb2.GetAssetObjectsResponse(
            asset=common_pb2.Asset(
                asset_id=asset_id, status=status, width=64, height=48, size_bytes=1000
            ),
            original_key=ORIGINAL_KEY,
            renditions=self.renditions,
        )


class CountingStore(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def get_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return await super().get_bytes(key)


class GatedPool:
    """Runs the function in-process, each call only once `open` is set."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0

    async def run(self, fn: Callable[..., _R], *args: Any) -> _R:
        self.entered += 1
        await self.open.wait()
        return fn(*args)


def _record(preset: str, key: str, scored: bool) -> catalog_internal_pb2.RenditionRecord:
    rendition = common_pb2.Rendition(
        preset=preset, format=common_pb2.IMAGE_FORMAT_JPEG, width=32, height=24, size_bytes=10
    )
    if scored:
        rendition.scores.CopyFrom(common_pb2.QualityScores(psnr_db=41.5, ssim=0.99))
    return catalog_internal_pb2.RenditionRecord(rendition=rendition, object_key=key)


async def _store_with_objects() -> CountingStore:
    store = CountingStore()
    await store.put_bytes(ORIGINAL_KEY, _jpeg((64, 48), (200, 30, 30)), "image/jpeg")
    for preset in ("thumb", "card"):
        await store.put_bytes(f"r/{preset}", _jpeg((32, 24), (200, 30, 30)), "image/jpeg")
    return store


def _assessor(
    catalog: FakeCatalog,
    store: MemoryObjectStore,
    pool: Any,
    *,
    max_in_flight: int = 1,
    spool_dir: str = "",
) -> Assessor:
    return Assessor(
        catalog=catalog,
        store=store,
        pool=pool,
        max_pixels=50_000_000,
        limits=StreamLimits(max_bytes=1 << 20, spool_dir=spool_dir),
        max_in_flight=max_in_flight,
    )


async def test_an_asset_without_renditions_is_not_ready_and_nothing_is_read() -> None:
    store = await _store_with_objects()
    with pytest.raises(FailedPrecondition) as raised:
        await _assessor(FakeCatalog([]), store, GatedPool()).compare_asset(TENANT, "a1")
    assert raised.value.reason == "ASSET_NOT_READY" and "processing" in raised.value.message
    assert store.reads == []


async def test_scores_measured_at_render_are_returned_without_reading_anything() -> None:
    store, pool = await _store_with_objects(), GatedPool()
    catalog = FakeCatalog([_record("thumb", "r/thumb", True), _record("card", "r/card", True)])
    response = await _assessor(catalog, store, pool).compare_asset(TENANT, "a1")
    assert store.reads == [] and pool.entered == 0
    assert [r.preset for r in response.renditions] == ["thumb", "card"]
    assert all(r.measured_at_render and r.scores.psnr_db == 41.5 for r in response.renditions)


async def test_only_unscored_renditions_are_read_and_measured() -> None:
    store, pool = await _store_with_objects(), GatedPool()
    pool.open.set()
    catalog = FakeCatalog([_record("thumb", "r/thumb", True), _record("card", "r/card", False)])
    response = await _assessor(catalog, store, pool).compare_asset(TENANT, "a1")
    assert store.reads == [ORIGINAL_KEY, "r/card"] and pool.entered == 1
    thumb, card = response.renditions
    assert thumb.measured_at_render and thumb.scores.psnr_db == 41.5
    assert not card.measured_at_render and card.scores.psnr_db > 30 and card.good
    assert card.original_size_bytes == 1000


async def _wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        # Polls in-memory counters of the fakes: each check is one turn of the loop.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0)


async def test_compare_waits_for_a_slot_before_reading_and_refuses_past_the_queue() -> None:
    store, pool = await _store_with_objects(), GatedPool()
    catalog = FakeCatalog([_record("card", "r/card", False)])
    assessor = _assessor(catalog, store, pool, max_in_flight=1)
    first = asyncio.create_task(assessor.compare_asset(TENANT, "a1"))
    await _wait_until(lambda: pool.entered == 1)
    reads_of_one_call = len(store.reads)
    assert reads_of_one_call == 2

    # One running, the rest queued up to the bound: none of them reads anything yet.
    queued = [asyncio.create_task(assessor.compare_asset(TENANT, "a1")) for _ in range(4)]
    await _wait_until(lambda: assessor.limit._waiting == 4)
    assert len(store.reads) == reads_of_one_call, "a queued Compare read objects"

    # Past the bound: refused at once, with a reason, having read nothing.
    with pytest.raises(ResourceExhausted) as raised:
        await assessor.compare_asset(TENANT, "a1")
    assert raised.value.reason == "QUALITY_BUSY"
    assert len(store.reads) == reads_of_one_call

    pool.open.set()
    results = await asyncio.gather(first, *queued)
    assert len(results) == 5 and len(store.reads) == 5 * reads_of_one_call
    assert pool.entered == 5


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    store, pool = await _store_with_objects(), GatedPool()
    assessor = _assessor(FakeCatalog([_record("card", "r/card", False)]), store, pool)
    first = asyncio.create_task(assessor.compare_asset(TENANT, "a1"))
    await _wait_until(lambda: pool.entered == 1)
    waiter = asyncio.create_task(assessor.compare_asset(TENANT, "a1"))
    await _wait_until(lambda: assessor.limit._waiting == 1)
    waiter.cancel()  # the caller's deadline passed
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert assessor.limit._waiting == 0
    pool.open.set()
    await first
    assert pool.entered == 1


async def _stream(*messages: quality_pb2.CompareImagesRequest) -> AsyncIterator[Any]:
    for message in messages:
        yield message


HEADER = quality_pb2.CompareImagesRequest(header=quality_pb2.CompareImagesHeader())


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ((HEADER, quality_pb2.CompareImagesRequest(reference_chunk=b"x")), "IMAGE_EMPTY"),
        ((quality_pb2.CompareImagesRequest(reference_chunk=b"x"),), "MALFORMED_STREAM"),
        ((HEADER, HEADER), "MALFORMED_STREAM"),
    ],
)
async def test_compare_images_refuses_malformed_streams_before_decoding(
    messages: tuple[quality_pb2.CompareImagesRequest, ...], reason: str, tmp_path: Path
) -> None:
    pool = GatedPool()
    assessor = _assessor(FakeCatalog([]), MemoryObjectStore(), pool, spool_dir=str(tmp_path))
    with pytest.raises(InvalidArgument) as raised:
        await assessor.compare_uploads(_stream(*messages))
    assert raised.value.reason == reason and pool.entered == 0
    left = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert left == [], "spool files are removed"
