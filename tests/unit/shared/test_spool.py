"""The upload spool: per-chunk caps, the total cap, hashing while streaming."""

from __future__ import annotations

import hashlib

import pytest

from services.shared.errors import InvalidArgument, ResourceExhausted
from services.shared.spool import MAX_CHUNK_BYTES, Spool


async def test_spool_hashes_and_stores_what_it_receives() -> None:
    spool = Spool(max_bytes=10_000)
    try:
        for part in (b"abc", b"def" * 100):
            await spool.write(part)
        digest = await spool.finish()
        assert digest == hashlib.sha256(b"abc" + b"def" * 100).hexdigest()
        assert spool.path.read_bytes() == b"abc" + b"def" * 100
        assert spool.size == 303
    finally:
        spool.discard()
    assert not spool.path.exists()


async def test_chunks_over_one_mib_are_refused() -> None:
    spool = Spool(max_bytes=10 * MAX_CHUNK_BYTES)
    try:
        with pytest.raises(InvalidArgument) as refused:
            await spool.write(b"x" * (MAX_CHUNK_BYTES + 1))
        assert refused.value.reason == "CHUNK_TOO_LARGE"
    finally:
        spool.discard()


async def test_the_chunk_that_passes_the_cap_is_refused_and_not_written() -> None:
    spool = Spool(max_bytes=2500)
    try:
        await spool.write(b"x" * 1000)
        await spool.write(b"x" * 1000)
        with pytest.raises(ResourceExhausted) as refused:
            await spool.write(b"x" * 1000)
        assert refused.value.reason == "UPLOAD_TOO_LARGE"
        assert refused.value.metadata == {"limit_bytes": "2500", "received_bytes": "3000"}
        assert spool.size == 2000
    finally:
        spool.discard()
