"""PostgreSQL has no unsigned 64-bit integer: every perceptual hash must survive the
signed bigint it is stored as."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.catalog.similarity import signed_hash, unsigned_hash


@given(st.integers(0, 2**64 - 1))
def test_a_hash_survives_the_databases_signed_bigint(value: int) -> None:
    stored = signed_hash(value)
    assert -(2**63) <= stored < 2**63
    assert unsigned_hash(stored) == value
