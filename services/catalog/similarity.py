"""Multi-index hashing over 64-bit perceptual hashes (pure functions).

Four 16-bit blocks. If two hashes are within distance d and per-block radii r_i
satisfy sum(r_i + 1) > d, then some block i of the two differs by at most r_i bits:
otherwise every block would differ by r_i + 1 or more, and so would the whole hash
by more than d (a generalised pigeonhole, as in Norouzi et al., "Fast Search in
Hamming Space with Multi-Index Hashing"). The radii are kept as small and as even as
that allows, which keeps the probes few: (1, 1, 1, 2) for d = 8 is 17 + 17 + 17 +
137 = 188 probes, against 4 x 137 with radius 2 everywhere.

PostgreSQL has no unsigned 64-bit integer: a hash is stored as the signed bigint with
the same bits (signed_hash), and read back with unsigned_hash.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

__all__ = [
    "BLOCKS",
    "BLOCK_BITS",
    "MAX_DISTANCE",
    "block_values",
    "probes",
    "radii",
    "signed_hash",
    "unsigned_hash",
]

BLOCKS = 4
BLOCK_BITS = 16
MAX_RADIUS = 2
# sum(r_i + 1) > d with every r_i <= 2 reaches d = 4 * 3 - 1.
MAX_DISTANCE = BLOCKS * (MAX_RADIUS + 1) - 1
_MASK = (1 << BLOCK_BITS) - 1


def signed_hash(value: int) -> int:
    """uint64 -> the signed bigint PostgreSQL stores."""
    return value - (1 << 64) if value >= 1 << 63 else value


def unsigned_hash(value: int) -> int:
    """The signed bigint PostgreSQL stores, back to the uint64 it holds."""
    return value + (1 << 64) if value < 0 else value


def block_values(value: int) -> list[int]:
    """The four 16-bit blocks of an unsigned 64-bit hash, most significant first."""
    return [(value >> (BLOCK_BITS * (BLOCKS - 1 - i))) & _MASK for i in range(BLOCKS)]


def radii(max_distance: int) -> list[int]:
    """Smallest, most even per-block radii with sum(r_i + 1) > max_distance."""
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"max_distance must be between 0 and {MAX_DISTANCE}")
    total = max(0, max_distance + 1 - BLOCKS)
    base, extra = divmod(total, BLOCKS)
    # The larger radii go last (any order is correct).
    return [base + (1 if i >= BLOCKS - extra else 0) for i in range(BLOCKS)]


@cache
def _flips(radius: int) -> tuple[int, ...]:
    masks = [0]
    for bits in range(1, radius + 1):
        for positions in combinations(range(BLOCK_BITS), bits):
            mask = 0
            for position in positions:
                mask |= 1 << position
            masks.append(mask)
    return tuple(masks)


def probes(value: int, max_distance: int) -> list[list[int]]:
    """Per block, every value a hash within `max_distance` may have there, given radii."""
    return [
        [block ^ mask for mask in _flips(radius)]
        for block, radius in zip(block_values(value), radii(max_distance), strict=True)
    ]
