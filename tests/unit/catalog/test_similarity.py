"""Multi-index hashing finds every hash within the distance: checked as a property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.catalog.similarity import BLOCKS, MAX_DISTANCE, block_values, probes, radii


@given(
    base=st.integers(0, 2**64 - 1),
    flipped=st.lists(st.integers(0, 63), unique=True, max_size=MAX_DISTANCE),
    slack=st.integers(0, MAX_DISTANCE),
)
def test_a_hash_within_the_distance_hits_some_block_probe(
    base: int, flipped: list[int], slack: int
) -> None:
    other = base
    for bit in flipped:
        other ^= 1 << bit
    distance = min(MAX_DISTANCE, len(flipped) + slack)
    blocks = block_values(other)
    assert any(blocks[i] in set(values) for i, values in enumerate(probes(base, distance)))


def test_radii_are_minimal_and_even() -> None:
    for distance in range(MAX_DISTANCE + 1):
        chosen = radii(distance)
        assert sum(r + 1 for r in chosen) > distance
        assert sum(r + 1 for r in chosen) == max(BLOCKS, distance + 1)
        assert max(chosen) - min(chosen) <= 1
    assert radii(8) == [1, 1, 1, 2]
    assert [len(p) for p in probes(0, 8)] == [17, 17, 17, 137]
    assert [len(p) for p in probes(0, 3)] == [1, 1, 1, 1]


def test_blocks_cover_the_64_bits() -> None:
    assert block_values(2**64 - 1) == [65535] * 4
    assert block_values(1 << 63)[0] == 1 << 15
