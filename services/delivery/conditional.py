"""Validators, byte ranges and cache lifetimes (RFC 9110, 9111): pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "IMMUTABLE_SECONDS",
    "ByteRange",
    "Unsatisfiable",
    "cache_control",
    "if_range_allows",
    "none_match",
    "parse_range",
]

IMMUTABLE_SECONDS = 31_536_000  # one year: "never changes" for every cache
_ENTITY_TAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|$)')
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.IGNORECASE)


def none_match(header: str | None, etag: str) -> bool:
    """If-None-Match holds `etag`: `*`, or a tag equal under weak comparison."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    position, text = 0, header.strip()
    while position < len(text):
        match = _ENTITY_TAG.match(text, position)
        if match is None:
            return False  # malformed: no tag matches it
        if match[2] == etag:
            return True
        position = match.end()
    return False


def if_range_allows(header: str | None, etag: str) -> bool:
    """Whether a Range applies: no If-Range, or one strongly equal to our ETag. A date
    never matches (no Last-Modified is sent), so the whole body is sent instead."""
    return header is None or header.strip() == etag


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.start + self.length - 1}/{size}"


class Unsatisfiable(Exception):
    """The one range asked for lies outside the representation: 416."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range asked for; None for no Range, several ranges or an
    unparsable header (the whole body is sent: RFC 9110 lets a server ignore Range)."""
    if header is None:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match[1], match[2]
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), min(suffix, size))
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end - start + 1)


def cache_control(*, max_age: int, immutable: bool = False) -> str:
    return f"public, max-age={max(0, max_age)}" + (", immutable" if immutable else "")
