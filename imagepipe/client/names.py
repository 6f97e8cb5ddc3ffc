"""Short names for the contract's enums, as people type and read them.

The wire enums carry their type as a prefix (``ASSET_STATUS_READY``,
``IMAGE_FORMAT_WEBP``) because proto3 enum values share one namespace; command lines
and JSON output use the bare lower-case word (``ready``, ``webp``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from imagepipe.v1 import common_pb2

__all__ = [
    "TERMINAL_STATUSES",
    "format_name",
    "job_state_name",
    "parse_format",
    "parse_formats",
    "parse_status",
    "status_name",
]

Format: TypeAlias = common_pb2.ImageFormat.ValueType
Status: TypeAlias = common_pb2.AssetStatus.ValueType

# An asset in one of these no longer changes on its own.
TERMINAL_STATUSES: frozenset[Status] = frozenset(
    {
        common_pb2.ASSET_STATUS_READY,
        common_pb2.ASSET_STATUS_FAILED,
        common_pb2.ASSET_STATUS_DELETED,
    }
)

_FORMAT_PREFIX = "IMAGE_FORMAT_"
_STATUS_PREFIX = "ASSET_STATUS_"
_JOB_PREFIX = "JOB_STATE_"
# Names people use for the same encodings.
_FORMAT_ALIASES = {"jpg": "jpeg", "heic": "heif", "tif": "tiff"}


def _short(full: str, prefix: str) -> str:
    return full.removeprefix(prefix).lower()


def status_name(status: Status) -> str:
    """``ASSET_STATUS_READY`` -> ``ready``; unknown values (newer servers) as ``status_7``."""
    try:
        return _short(common_pb2.AssetStatus.Name(status), _STATUS_PREFIX)
    except ValueError:
        return f"status_{int(status)}"


def format_name(image_format: Format) -> str:
    """``IMAGE_FORMAT_WEBP`` -> ``webp``; unknown values as ``format_9``."""
    try:
        return _short(common_pb2.ImageFormat.Name(image_format), _FORMAT_PREFIX)
    except ValueError:
        return f"format_{int(image_format)}"


def job_state_name(state: common_pb2.JobState.ValueType) -> str:
    """``JOB_STATE_DONE`` -> ``done``."""
    try:
        return _short(common_pb2.JobState.Name(state), _JOB_PREFIX)
    except ValueError:
        return f"state_{int(state)}"


def parse_format(value: str | Format) -> Format:
    """``webp``, ``WEBP``, ``jpg`` or ``IMAGE_FORMAT_WEBP`` -> the enum value."""
    if not isinstance(value, str):
        return value
    word = value.strip().lower().removeprefix(_FORMAT_PREFIX.lower())
    word = _FORMAT_ALIASES.get(word, word)
    try:
        return common_pb2.ImageFormat.Value(_FORMAT_PREFIX + word.upper())
    except ValueError:
        known = ", ".join(
            _short(n, _FORMAT_PREFIX)
            for n in common_pb2.ImageFormat.keys()  # noqa: SIM118 - an enum wrapper, not a dict
            if n != "IMAGE_FORMAT_UNSPECIFIED"
        )
        raise ValueError(f"unknown image format {value!r} (known: {known})") from None


def parse_formats(values: Iterable[str | Format]) -> list[Format]:
    """Formats in preference order; a comma-separated string counts as several."""
    formats: list[Format] = []
    for value in values:
        parts = value.split(",") if isinstance(value, str) else [value]
        formats.extend(parse_format(p) for p in parts if not isinstance(p, str) or p.strip())
    return formats


def parse_status(value: str | Status) -> Status:
    """``ready`` or ``ASSET_STATUS_READY`` -> the enum value."""
    if not isinstance(value, str):
        return value
    word = value.strip().lower().removeprefix(_STATUS_PREFIX.lower())
    try:
        return common_pb2.AssetStatus.Value(_STATUS_PREFIX + word.upper())
    except ValueError:
        raise ValueError(f"unknown asset status {value!r}") from None
