"""Checks on what callers send, before a use case: ids, filters, limits, and the
values the other services send the internal API.

Only the internal credential reaches the internal calls, but a value the database
refuses (an unknown format, a hash its CHECK rejects, an integer past PostgreSQL's
32-bit `integer`) must be refused here with a reason that names the field, not
surface as INTERNAL from a constraint.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import catalog_internal_pb2 as internal_pb
from imagepipe.v1 import catalog_pb2, common_pb2
from services.catalog.api.convert import ASSET_STATUS, BACKFILL_SCOPE, JOB_STATE, POISON_REASON
from services.catalog.model import (
    AssetFilter,
    AssetStatus,
    BackfillScope,
    FocalPoint,
    JobState,
    PoisonReason,
)
from services.catalog.similarity import MAX_DISTANCE
from services.shared.auth import current_tenant_id
from services.shared.errors import InvalidArgument
from services.shared.imaging.formats import format_name
from services.shared.imaging.hashing import parse_hash
from services.shared.storage import rendition_version

__all__ = [
    "asset_filter",
    "backfill_scope",
    "checked_completion",
    "checked_metadata",
    "checked_registration",
    "claim_limit",
    "delivery_format",
    "focal_point",
    "known_format",
    "lease",
    "optional_seconds",
    "parse_uuid",
    "perceptual_hash",
    "poison_reason",
    "preset_name",
    "similar_target",
    "state_filter",
    "status_filter",
    "tenant",
    "url_ttl",
]

_T = TypeVar("_T")

# The columns are PostgreSQL `integer`.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_CONTENT_HASH = re.compile(r"[0-9a-f]{64}")
# What a preset may be named (services.shared.settings.Preset), so what a delivery
# path may carry.
_PRESET_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_CLAIM = 500
MAX_LEASE_SECONDS = 3600
MAX_URL_TTL_SECONDS = 7 * 86400
DEFAULT_SIMILAR_LIMIT = 20
MAX_SIMILAR_LIMIT = 200
# At most as many label pairs as an upload may carry (ingest's MAX_LABELS).
MAX_LABEL_FILTERS = 32
# What ingest's metadata reader keeps (services/shared/imaging/metadata.py): a longer
# value did not come from it, and the row stays bounded.
MAX_METADATA_TEXT = 256
MAX_METADATA_DESCRIPTION = 2000
MAX_METADATA_KEYWORDS = 64
# Seconds of 0001-01-01 and 9999-12-31T23:59:59 UTC: what a Timestamp may hold.
_TIMESTAMP_SECONDS = (-62135596800, 253402300799)
_OFFSET = re.compile(r"[+-]\d{2}:\d{2}")
_ASSET_STATUSES = {v: k for k, v in ASSET_STATUS.items()}
_JOB_STATES = {v: k for k, v in JOB_STATE.items()}
_POISON_REASONS = {v: k for k, v in POISON_REASON.items()}
_BACKFILL_SCOPES = {v: k for k, v in BACKFILL_SCOPE.items()}


def tenant() -> uuid.UUID:
    """The calling tenant (a tenant-key RPC)."""
    return uuid.UUID(current_tenant_id())


def parse_uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID, got {value[:64]!r}",
            reason="INVALID_ID",
            metadata={"field": field},
        ) from None


def _filter(names: Mapping[Any, _T], value: int, field: str) -> _T | None:
    """The stored value an enum filter selects; None when unset. An unknown value is
    refused: read as "no filter", it would answer rows the caller did not ask for."""
    if not value:
        return None
    name = names.get(value)
    if name is None:
        raise InvalidArgument(
            f"{field} {value} is not one this server knows; leave it unset for no filter",
            reason="INVALID_FILTER",
            metadata={"field": field},
        )
    return name


def status_filter(value: common_pb2.AssetStatus.ValueType) -> AssetStatus | None:
    return _filter(_ASSET_STATUSES, value, "status")


def _valid_time(stamp: Timestamp) -> bool:
    low, high = _TIMESTAMP_SECONDS
    return low <= stamp.seconds <= high and 0 <= stamp.nanos < 1_000_000_000


def _time_filter(request: catalog_pb2.ListAssetsRequest, field: str) -> dt.datetime | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    stamp: Timestamp = getattr(request, field)
    if not _valid_time(stamp):
        raise InvalidArgument(
            f"{field} is not a valid time (years 1 to 9999, nanos below one second)",
            reason="INVALID_FILTER",
            metadata={"field": field},
        )
    return stamp.ToDatetime(tzinfo=dt.UTC)


def asset_filter(request: catalog_pb2.ListAssetsRequest) -> AssetFilter:
    """ListAssets' filters; an unset one selects everything."""
    if len(request.labels) > MAX_LABEL_FILTERS:
        raise InvalidArgument(
            f"at most {MAX_LABEL_FILTERS} labels can be matched, got {len(request.labels)}",
            reason="INVALID_FILTER",
            metadata={"field": "labels", "limit": MAX_LABEL_FILTERS},
        )
    return AssetFilter(
        status=status_filter(request.status),
        labels=tuple(sorted(request.labels.items())),
        captured_from=_time_filter(request, "capture_time_from"),
        captured_to=_time_filter(request, "capture_time_to"),
    )


def state_filter(value: common_pb2.JobState.ValueType) -> JobState | None:
    return _filter(_JOB_STATES, value, "state")


def poison_reason(value: catalog_pb2.PoisonReason.ValueType) -> PoisonReason:
    reason = _POISON_REASONS.get(value)
    if reason is None:
        raise InvalidArgument("reason must be set", reason="INVALID_POISON_REASON")
    return reason


def backfill_scope(value: catalog_pb2.BackfillScope.ValueType) -> BackfillScope:
    scope = _BACKFILL_SCOPES.get(value)
    if scope is None:
        raise InvalidArgument(
            "scope must be BACKFILL_SCOPE_ALL, _MISSING, _OUTDATED or _ASSET_IDS",
            reason="INVALID_BACKFILL_SCOPE",
            metadata={"field": "scope"},
        )
    return scope


def focal_point(request: catalog_pb2.SetFocalPointRequest) -> FocalPoint | None:
    """The point asked for; None (clear it) when unset."""
    if not request.HasField("focal_point"):
        return None
    return FocalPoint(request.focal_point.x, request.focal_point.y)


def perceptual_hash(text: str) -> int:
    """16 hex digits as the unsigned 64-bit hash; ValueError otherwise."""
    return parse_hash(text) % (1 << 64)


def similar_target(
    request: catalog_pb2.FindSimilarRequest, default_distance: int
) -> tuple[uuid.UUID | int, int, int]:
    """FindSimilar's target (an asset id or a hash), max distance and limit."""
    max_distance = request.max_distance or default_distance
    if max_distance > MAX_DISTANCE:
        raise InvalidArgument(
            f"max_distance is at most {MAX_DISTANCE}",
            reason="DISTANCE_TOO_LARGE",
            metadata={"max_supported": MAX_DISTANCE},
        )
    limit = request.limit or DEFAULT_SIMILAR_LIMIT
    if limit > MAX_SIMILAR_LIMIT:
        raise InvalidArgument(f"limit is at most {MAX_SIMILAR_LIMIT}", reason="LIMIT_TOO_LARGE")
    target = request.WhichOneof("target")
    if target == "asset_id":
        return parse_uuid(request.asset_id, "asset_id"), max_distance, limit
    if target == "perceptual_hash":
        try:
            return perceptual_hash(request.perceptual_hash), max_distance, limit
        except ValueError:
            raise InvalidArgument(
                "perceptual_hash must be 16 hex digits", reason="INVALID_HASH"
            ) from None
    raise InvalidArgument("set asset_id or perceptual_hash", reason="MISSING_TARGET")


def url_ttl(requested: int, default: int) -> dt.timedelta:
    ttl = requested or default
    if ttl > MAX_URL_TTL_SECONDS:
        raise InvalidArgument(
            f"url_ttl_seconds is at most {MAX_URL_TTL_SECONDS} (7 days)", reason="INVALID_TTL"
        )
    return dt.timedelta(seconds=ttl)


def lease(seconds: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(max(seconds, 1), MAX_LEASE_SECONDS))


def claim_limit(requested: int) -> int:
    return min(requested or 1, MAX_CLAIM)


def optional_seconds(seconds: int) -> dt.timedelta | None:
    """A duration where 0 means none."""
    return dt.timedelta(seconds=seconds) if seconds else None


def known_format(value: int, field: str) -> str:
    """The stored name of a format; refuses values this server does not know."""
    if value not in common_pb2.ImageFormat.values() or value == common_pb2.IMAGE_FORMAT_UNSPECIFIED:
        raise InvalidArgument(
            f"{field} is {value}, which is not an image format this server knows",
            reason="INVALID_FORMAT",
            metadata={"field": field},
        )
    return format_name(value)


def delivery_format(value: int) -> str | None:
    """A delivery URL's format name; None (UNSPECIFIED) for a negotiated one."""
    return None if value == common_pb2.IMAGE_FORMAT_UNSPECIFIED else known_format(value, "format")


def preset_name(value: str) -> str:
    if not _PRESET_NAME.fullmatch(value):
        raise InvalidArgument(
            f"preset must be a preset name (a-z first, then up to 31 of a-z, 0-9, '-' and "
            f"'_'), got {value[:64]!r}",
            reason="INVALID_PRESET",
            metadata={"field": "preset"},
        )
    return value


def _within(checks: list[tuple[str, int, int, int]], *, reason: str) -> None:
    """Each (field, value, low, high) must hold low <= value <= high."""
    for field, value, low, high in checks:
        if not low <= value <= high:
            raise InvalidArgument(
                f"{field} is {value}; it must be between {low} and {high}",
                reason=reason,
                metadata={"field": field, "min": low, "max": high},
            )


def checked_registration(request: internal_pb.RegisterAssetRequest) -> tuple[str, int]:
    """Refuse a registration the database cannot hold; returns the format's name and
    the perceptual hash."""
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
    checked_metadata(request.metadata)
    image_format = known_format(request.format, "format")
    try:
        return image_format, perceptual_hash(request.perceptual_hash)
    except ValueError as error:
        raise InvalidArgument(str(error), reason="INVALID_HASH") from None


def _metadata_problem(metadata: common_pb2.AssetMetadata) -> str | None:
    """The first field of a registration's metadata the catalog cannot keep, if any."""
    texts = [(name, MAX_METADATA_TEXT) for name in _METADATA_TEXTS]
    texts.append(("description", MAX_METADATA_DESCRIPTION))
    for name, limit in texts:
        if len(getattr(metadata, name)) > limit:
            return name
    if len(metadata.keywords) > MAX_METADATA_KEYWORDS or any(
        len(keyword) > MAX_METADATA_TEXT for keyword in metadata.keywords
    ):
        return "keywords"
    if metadata.HasField("capture_time") and not _valid_time(metadata.capture_time):
        return "capture_time"
    if metadata.capture_time_offset and not _OFFSET.fullmatch(metadata.capture_time_offset):
        return "capture_time_offset"
    for name in ("exposure_time_seconds", "f_number", "focal_length_mm"):
        value = getattr(metadata, name)
        if not (math.isfinite(value) and value >= 0):
            return name
    if metadata.orientation > 8:
        return "orientation"
    gps = metadata.gps
    if metadata.HasField("gps") and not (
        all(math.isfinite(v) for v in (gps.latitude, gps.longitude, gps.altitude_meters))
        and abs(gps.latitude) <= 90
        and abs(gps.longitude) <= 180
    ):
        return "gps"
    return None


_METADATA_TEXTS = (
    "capture_time_offset",
    "camera_make",
    "camera_model",
    "lens",
    "color_profile",
    "title",
    "creator",
    "copyright",
)


def checked_metadata(metadata: common_pb2.AssetMetadata) -> None:
    """Refuse metadata the database cannot hold (JSON has no NaN) or that no reader
    of ours produced (past its limits)."""
    problem = _metadata_problem(metadata)
    if problem is not None:
        raise InvalidArgument(
            f"metadata.{problem} is out of range or too long (see AssetMetadata)",
            reason="INVALID_METADATA",
            metadata={"field": f"metadata.{problem}"},
        )


def checked_completion(request: internal_pb.CompleteJobRequest) -> list[str]:
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
        _check_content_hash(record, field)
    return names


def _check_content_hash(record: internal_pb.RenditionRecord, field: str) -> None:
    """A rendition's hash, when sent, names the bytes its key's version names."""
    content_hash = record.rendition.content_hash
    if not content_hash:
        return
    if not _CONTENT_HASH.fullmatch(content_hash):
        raise InvalidArgument(
            f"{field}.content_hash must be the SHA-256 of the bytes as 64 lowercase hex digits",
            reason="INVALID_HASH",
            metadata={"field": f"{field}.content_hash"},
        )
    try:
        version = rendition_version(record.object_key)
    except ValueError:
        version = ""
    if content_hash[:16] != version:
        raise InvalidArgument(
            f"{field}.content_hash does not start with the version its object_key carries "
            f"({version or 'none'}): the key must name these bytes",
            reason="CONTENT_HASH_MISMATCH",
            metadata={"field": f"{field}.content_hash"},
        )
