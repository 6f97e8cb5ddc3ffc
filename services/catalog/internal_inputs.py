"""Checks on what the other services send the internal API, before the repository.

Only the internal credential reaches these calls, but a value the database refuses
(an unknown format, a hash its CHECK rejects, an integer past PostgreSQL's 32-bit
`integer`) must be refused here with a reason that names the field, not surface as
INTERNAL from a constraint.
"""

from __future__ import annotations

import re

from imagepipe.v1 import catalog_internal_pb2 as pb
from imagepipe.v1 import common_pb2
from services.shared.errors import InvalidArgument
from services.shared.imaging.formats import format_name

__all__ = ["checked_completion", "checked_registration", "known_format"]

# The columns are PostgreSQL `integer`.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_CONTENT_HASH = re.compile(r"[0-9a-f]{64}")


def known_format(value: int, field: str) -> str:
    """The stored name of a format; refuses values this server does not know."""
    if value not in common_pb2.ImageFormat.values() or value == common_pb2.IMAGE_FORMAT_UNSPECIFIED:
        raise InvalidArgument(
            f"{field} is {value}, which is not an image format this server knows",
            reason="INVALID_FORMAT",
            metadata={"field": field},
        )
    return format_name(value)


def _within(checks: list[tuple[str, int, int, int]], *, reason: str) -> None:
    """Each (field, value, low, high) must hold low <= value <= high."""
    for field, value, low, high in checks:
        if not low <= value <= high:
            raise InvalidArgument(
                f"{field} is {value}; it must be between {low} and {high}",
                reason=reason,
                metadata={"field": field, "min": low, "max": high},
            )


def checked_registration(request: pb.RegisterAssetRequest) -> str:
    """Refuse a registration the database cannot hold; returns the format's name."""
    if not _CONTENT_HASH.fullmatch(request.content_hash):
        raise InvalidArgument(
            "content_hash must be the SHA-256 of the bytes as 64 lowercase hex digits",
            reason="INVALID_HASH",
            metadata={"field": "content_hash"},
        )
    _within(
        [
            ("width", request.width, 1, INT32_MAX),
            ("height", request.height, 1, INT32_MAX),
            ("frame_count", request.frame_count, 0, INT32_MAX),
        ],
        reason="INVALID_DIMENSIONS",
    )
    _within([("size_bytes", request.size_bytes, 1, INT64_MAX)], reason="INVALID_SIZE")
    return known_format(request.format, "format")


def checked_completion(request: pb.CompleteJobRequest) -> list[str]:
    """Refuse a completion the database cannot hold; returns each rendition's format name."""
    _within([("attempt", request.attempt, 1, INT32_MAX)], reason="INVALID_ATTEMPT")
    names = []
    for index, record in enumerate(request.renditions):
        rendition = record.rendition
        field = f"renditions[{index}]"
        _within(
            [
                (f"{field}.width", rendition.width, 1, INT32_MAX),
                (f"{field}.height", rendition.height, 1, INT32_MAX),
            ],
            reason="INVALID_DIMENSIONS",
        )
        _within(
            [(f"{field}.size_bytes", rendition.size_bytes, 1, INT64_MAX)], reason="INVALID_SIZE"
        )
        _within([(f"{field}.quality", rendition.quality, 0, 100)], reason="INVALID_QUALITY")
        _within(
            [(f"{field}.scores.hash_distance", rendition.scores.hash_distance, 0, 64)],
            reason="INVALID_SCORES",
        )
        if not 0 <= rendition.min_ssim < 1:
            raise InvalidArgument(
                f"{field}.min_ssim is {rendition.min_ssim}; it must be at least 0 and below 1",
                reason="INVALID_SCORES",
                metadata={"field": f"{field}.min_ssim"},
            )
        names.append(known_format(rendition.format, f"{field}.format"))
    return names
