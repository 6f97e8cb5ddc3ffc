"""Opaque keyset page tokens (AIP-158): never OFFSET, stable while rows arrive."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import uuid

from services.shared.errors import InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_token", "encode_token", "page_size"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", reason="INVALID_PAGE_SIZE")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fingerprint(query: str) -> str:
    # Binds a token to the listing and filter it came from.
    return hashlib.sha256(query.encode()).hexdigest()[:12]


def encode_token(query: str, created_at: dt.datetime, row_id: uuid.UUID) -> str:
    payload = {"q": _fingerprint(query), "t": created_at.isoformat(), "id": str(row_id)}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def decode_token(token: str, query: str) -> tuple[dt.datetime, uuid.UUID] | None:
    """None for the first page; InvalidArgument for a token from elsewhere."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded))
        if payload["q"] != _fingerprint(query):
            raise ValueError("token of another query")
        return dt.datetime.fromisoformat(payload["t"]), uuid.UUID(payload["id"])
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise InvalidArgument(
            "page_token is not a token of this listing with these filters; "
            "start again with an empty page_token",
            reason="INVALID_PAGE_TOKEN",
        ) from error
