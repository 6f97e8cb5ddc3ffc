"""`spooled`: the stream protocol's receiver with the spool files' whole life."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagepipe.v1 import quality_pb2
from services.shared.errors import InvalidArgument, ResourceExhausted
from services.shared.settings import Settings
from services.shared.spool import StreamLimits, StreamTimes, spooled

PARTS = {"reference_chunk": "reference image", "candidate_chunk": "candidate image"}


async def _stream(
    *messages: quality_pb2.CompareImagesRequest,
) -> AsyncIterator[quality_pb2.CompareImagesRequest]:
    for message in messages:
        yield message


def _left(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def _header() -> quality_pb2.CompareImagesRequest:
    return quality_pb2.CompareImagesRequest(header=quality_pb2.CompareImagesHeader())


async def test_each_part_is_finished_in_its_own_file_and_removed_after(tmp_path: Path) -> None:
    messages = _stream(
        _header(),
        quality_pb2.CompareImagesRequest(reference_chunk=b"abc"),
        quality_pb2.CompareImagesRequest(candidate_chunk=b"xy"),
        quality_pb2.CompareImagesRequest(reference_chunk=b"def"),
    )
    limits = StreamLimits(max_bytes=100, spool_dir=str(tmp_path))
    async with spooled(
        messages, quality_pb2.CompareImagesHeader, PARTS, what="t", limits=limits
    ) as received:
        assert received.header == quality_pb2.CompareImagesHeader()
        reference, candidate = (
            received.spools["reference_chunk"],
            received.spools["candidate_chunk"],
        )
        assert reference.path.read_bytes() == b"abcdef" and candidate.path.read_bytes() == b"xy"
        assert reference.sha256 == hashlib.sha256(b"abcdef").hexdigest()
        assert (reference.size, candidate.size) == (6, 2)
    assert _left(tmp_path) == []


async def test_a_refused_stream_leaves_no_file(tmp_path: Path) -> None:
    too_big = _stream(_header(), quality_pb2.CompareImagesRequest(candidate_chunk=b"x" * 11))
    limits = StreamLimits(max_bytes=10, spool_dir=str(tmp_path))
    with pytest.raises(ResourceExhausted) as refused:
        async with spooled(
            too_big, quality_pb2.CompareImagesHeader, PARTS, what="t", limits=limits
        ):
            pass
    assert "candidate image" in refused.value.message
    chunk_first = _stream(quality_pb2.CompareImagesRequest(reference_chunk=b"x"))
    with pytest.raises(InvalidArgument):
        async with spooled(
            chunk_first, quality_pb2.CompareImagesHeader, PARTS, what="t", limits=limits
        ):
            pass
    assert _left(tmp_path) == []


async def test_an_empty_stream_has_no_header_and_empty_spools(tmp_path: Path) -> None:
    limits = StreamLimits(max_bytes=10, spool_dir=str(tmp_path))
    async with spooled(
        _stream(), quality_pb2.CompareImagesHeader, PARTS, what="t", limits=limits
    ) as received:
        assert received.header is None
        assert [s.size for s in received.spools.values()] == [0, 0]


def test_the_limits_come_from_the_upload_settings() -> None:
    settings = Settings(
        max_upload_bytes=1234,
        upload_timeout_seconds=9,
        upload_idle_seconds=3,
        spool_dir="/tmp/spool",
    )
    assert StreamLimits.from_settings(settings) == StreamLimits(
        max_bytes=1234, times=StreamTimes(total=9, idle=3), spool_dir="/tmp/spool"
    )
