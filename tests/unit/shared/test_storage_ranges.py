"""Ranged reads of the ObjectStore port, on the in-memory store (the S3 adapter's are
proven against a real S3 server in tests/integration/test_delivery_http.py)."""

from __future__ import annotations

import pytest

from services.shared.storage import MemoryObjectStore, ObjectNotFound

DATA = bytes(range(256)) * 40  # 10 240 bytes


async def _read(store: MemoryObjectStore, chunk: int, **window: int | None) -> list[bytes]:
    return [piece async for piece in store.iter_chunks("k", chunk, **window)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, None, DATA),
        (100, None, DATA[100:]),
        (100, 1000, DATA[100:1100]),
        (10_000, 5000, DATA[10_000:]),
        (0, 0, b""),
        (len(DATA), None, b""),
    ],
)
async def test_a_window_of_the_object_in_pieces_of_at_most_the_chunk(
    offset: int, length: int | None, expected: bytes
) -> None:
    store = MemoryObjectStore()
    await store.put_bytes("k", DATA, "image/jpeg")
    pieces = await _read(store, 4096, offset=offset, length=length)
    assert b"".join(pieces) == expected
    assert all(0 < len(piece) <= 4096 for piece in pieces)


async def test_a_missing_object_fails_before_any_piece() -> None:
    with pytest.raises(ObjectNotFound):
        await _read(MemoryObjectStore(), 4096, offset=10, length=10)
