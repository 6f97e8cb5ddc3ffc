"""Page tokens are opaque, bound to their query, and refuse tampering."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from services.catalog.usecases.paging import MAX_PAGE_SIZE, decode_token, encode_token, page_size
from services.shared.errors import InvalidArgument


def test_a_token_round_trips_for_its_own_query() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    row_id = uuid.uuid4()
    token = encode_token("assets:t:ready", when, row_id)
    assert decode_token(token, "assets:t:ready") == (when, row_id)
    assert decode_token("", "assets:t:ready") is None


@pytest.mark.parametrize(
    "token",
    ["garbage", "e30", encode_token("assets:t:ready", dt.datetime.now(dt.UTC), uuid.uuid4())],
)
def test_foreign_or_broken_tokens_are_invalid_arguments(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode_token(token, "assets:t:pending")
    assert refused.value.reason == "INVALID_PAGE_TOKEN"


def test_page_size_defaults_and_caps() -> None:
    assert page_size(0) == 50
    assert page_size(10_000) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        page_size(-1)
