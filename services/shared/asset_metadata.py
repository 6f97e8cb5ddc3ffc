"""What an original says about itself, as the services hold it: the fields of the
AssetMetadata message, plain Python (ingest reads them, the catalog keeps them).

The conversion to and from protobuf is ``services.shared.metadata_wire``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["AssetMetadata", "GpsPosition"]


@dataclass(frozen=True)
class GpsPosition:
    latitude: float  # degrees north, -90..90
    longitude: float  # degrees east, -180..180
    altitude_meters: float = 0.0  # 0 when the file does not say


@dataclass(frozen=True)
class AssetMetadata:
    """Empty strings and zeros where the original says nothing."""

    capture_time: dt.datetime | None = None  # aware, UTC
    capture_time_offset: str = ""  # "+02:00" when the file gives the offset
    camera_make: str = ""
    camera_model: str = ""
    lens: str = ""
    exposure_time_seconds: float = 0.0
    f_number: float = 0.0
    iso: int = 0
    focal_length_mm: float = 0.0
    orientation: int = 0
    color_profile: str = ""
    title: str = ""
    description: str = ""
    creator: str = ""
    copyright: str = ""
    keywords: tuple[str, ...] = ()
    gps: GpsPosition | None = None
