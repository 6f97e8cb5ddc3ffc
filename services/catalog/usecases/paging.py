"""Opaque keyset page tokens (AIP-158): never OFFSET, stable while rows arrive.

One token format for every listing: URL-safe base64 of a JSON object holding a
fingerprint of the listing and its filters (``q``) and the position of the last row
returned, either ``t`` + ``id`` (created_at, row id) or ``name``. A token is checked
in full here — its type, the fingerprint, a time within range, a real UUID, a name a
text column can hold — so nothing malformed reaches the database. Every listing
pages through `paginate`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.shared.errors import InvalidArgument

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Page",
    "decode_name_token",
    "decode_token",
    "encode_name_token",
    "encode_token",
    "group_by",
    "page_size",
    "paginate",
]

_T = TypeVar("_T")
_K = TypeVar("_K")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Rows are created now; a token position outside these years was not made by us
# (and years near 1 or 9999 overflow when converted to UTC for the query).
_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
_MAX_NAME = 255


class _BadToken(ValueError):
    pass


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", reason="INVALID_PAGE_SIZE")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fingerprint(query: str) -> str:
    # Binds a token to the listing and filter it came from.
    return hashlib.sha256(query.encode()).hexdigest()[:12]


def _pack(query: str, position: dict[str, str]) -> str:
    payload = {"q": _fingerprint(query), **position}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _refused() -> InvalidArgument:
    return InvalidArgument(
        "page_token is not a token of this listing with these filters; "
        "start again with an empty page_token",
        reason="INVALID_PAGE_TOKEN",
    )


def _unpack(token: str, query: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error) as error:  # UnicodeError and JSON errors included
        raise _refused() from error
    if not isinstance(payload, dict) or payload.get("q") != _fingerprint(query):
        raise _refused()
    return payload


def _text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or "\x00" in value:
        raise _BadToken(key)
    return value


def encode_token(query: str, created_at: dt.datetime, row_id: uuid.UUID) -> str:
    return _pack(query, {"t": created_at.isoformat(), "id": str(row_id)})


def decode_token(token: str, query: str) -> tuple[dt.datetime, uuid.UUID] | None:
    """None for the first page; InvalidArgument for a token from elsewhere."""
    if not token:
        return None
    payload = _unpack(token, query)
    try:
        when = dt.datetime.fromisoformat(_text(payload, "t"))
        if when.tzinfo is None or not _EARLIEST <= when <= _LATEST:
            raise _BadToken("t")
        return when.astimezone(dt.UTC), uuid.UUID(_text(payload, "id"))
    except ValueError as error:
        raise _refused() from error


def encode_name_token(query: str, name: str) -> str:
    return _pack(query, {"name": name})


def decode_name_token(token: str, query: str) -> str | None:
    """The name after which the page starts; None for the first page."""
    if not token:
        return None
    payload = _unpack(token, query)
    try:
        name = _text(payload, "name")
        if not name or len(name) > _MAX_NAME:
            raise _BadToken("name")
        return name
    except ValueError as error:
        raise _refused() from error


@dataclass(frozen=True)
class Page(Generic[_T]):
    items: list[_T]
    next_page_token: str  # empty on the last page


async def paginate(
    fetch: Callable[[int], Awaitable[list[_T]]],
    *,
    size: int,
    token_of: Callable[[_T], str],
) -> Page[_T]:
    """One page of at most `size` rows: one row more is fetched to tell whether
    another page follows, and the next token names the last row of this one."""
    rows = await fetch(size + 1)
    items = rows[:size]
    return Page(items, token_of(items[-1]) if len(rows) > size else "")


def group_by(items: Iterable[_T], key: Callable[[_T], _K]) -> dict[_K, list[_T]]:
    """Rows fetched for several parents at once (renditions, attempts), by parent."""
    groups: dict[_K, list[_T]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups
