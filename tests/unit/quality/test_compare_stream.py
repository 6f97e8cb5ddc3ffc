"""CompareImages reads its stream as Upload does: a client that sends its header and
then nothing is refused UPLOAD_IDLE, its spool files removed, nothing decoded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagepipe.v1 import quality_pb2
from services.quality.assessment import Assessor
from services.shared.errors import DeadlineExceeded
from services.shared.spool import StreamLimits, StreamTimes
from services.shared.storage import MemoryObjectStore
from tests.unit.quality.test_assessment import FakeCatalog, GatedPool


@pytest.mark.parametrize("sent_chunk", [False, True])
async def test_a_compare_stream_that_goes_silent_is_refused(
    tmp_path: Path, sent_chunk: bool
) -> None:
    silence = asyncio.Event()

    async def header_then_nothing() -> AsyncIterator[quality_pb2.CompareImagesRequest]:
        yield quality_pb2.CompareImagesRequest(header=quality_pb2.CompareImagesHeader())
        if sent_chunk:
            yield quality_pb2.CompareImagesRequest(reference_chunk=b"\x89PNG")
        await silence.wait()  # never set: the client sends nothing more

    pool = GatedPool()
    assessor = Assessor(
        catalog=FakeCatalog([]),
        store=MemoryObjectStore(),
        pool=pool,  # type: ignore[arg-type]
        max_pixels=50_000_000,
        limits=StreamLimits(
            max_bytes=1 << 20, times=StreamTimes(total=60, idle=0.2), spool_dir=str(tmp_path)
        ),
    )
    with pytest.raises(DeadlineExceeded) as idle:
        await assessor.compare_uploads(header_then_nothing())
    assert idle.value.reason == "UPLOAD_IDLE"
    assert pool.entered == 0
    left = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert left == [], "spool files are removed"
