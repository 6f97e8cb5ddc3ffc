"""Every malformed page token is INVALID_PAGE_TOKEN here, before the repository sees it."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest

from services.catalog.usecases.paging import _fingerprint as fingerprint
from services.catalog.usecases.paging import (
    decode_name_token,
    decode_token,
    encode_name_token,
    encode_token,
)
from services.shared.errors import InvalidArgument

QUERY = "assets:t:None"


def _forged(payload: object, query: str = QUERY) -> str:
    if isinstance(payload, dict):
        payload = {"q": fingerprint(query), **payload}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        _forged({"t": "2026-01-01T00:00:00+00:00", "id": 12345}),  # id not a string
        _forged({"t": "2026-01-01T00:00:00+00:00", "id": None}),
        _forged({"t": "2026-01-01T00:00:00+00:00", "id": ["x"]}),
        _forged({"t": "2026-01-01T00:00:00+00:00", "id": "not-a-uuid"}),
        _forged({"t": "0001-01-01T00:00:00+05:00", "id": str(uuid.uuid4())}),  # overflows UTC
        _forged({"t": "9999-12-31T23:59:59-05:00", "id": str(uuid.uuid4())}),
        _forged({"t": "2026-01-01T00:00:00", "id": str(uuid.uuid4())}),  # no time zone
        _forged({"t": 20260101, "id": str(uuid.uuid4())}),
        _forged({"id": str(uuid.uuid4())}),
        _forged(["not", "an", "object"]),
        _forged("a string"),
        _forged({"t": "2026-01-01T00:00:00+00:00", "id": str(uuid.uuid4())}, query="other"),
        "not base64 at all!",
        "é",
        "AAAA",
    ],
)
def test_malformed_time_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode_token(token, QUERY)
    assert refused.value.reason == "INVALID_PAGE_TOKEN"


def test_a_time_token_round_trips_in_utc() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    row = uuid.uuid4()
    decoded = decode_token(encode_token(QUERY, when, row), QUERY)
    assert decoded == (when, row)
    assert decoded is not None and decoded[0].utcoffset() == dt.timedelta(0)


def test_name_tokens_share_the_format_and_its_checks() -> None:
    assert decode_name_token(encode_name_token("tenants", "acme"), "tenants") == "acme"
    assert decode_name_token("", "tenants") is None
    for bad in (
        _forged({"name": "a\x00b"}, "tenants"),
        _forged({"name": 7}, "tenants"),
        _forged({"name": ""}, "tenants"),
        _forged({"name": "x" * 1000}, "tenants"),
        encode_name_token("other", "acme"),
        # The old ListTenants token (bare base64 of the name) is no longer a token.
        base64.urlsafe_b64encode(b"acme").decode(),
    ):
        with pytest.raises(InvalidArgument) as refused:
            decode_name_token(bad, "tenants")
        assert refused.value.reason == "INVALID_PAGE_TOKEN"
