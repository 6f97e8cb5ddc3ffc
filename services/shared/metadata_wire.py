"""Asset metadata on the wire: ``AssetMetadata`` to and from ``imagepipe.v1.AssetMetadata``."""

from __future__ import annotations

import dataclasses
import datetime as dt

from imagepipe.v1 import common_pb2
from services.shared.asset_metadata import AssetMetadata, GpsPosition

__all__ = ["metadata_from_message", "metadata_message"]

# The fields that are the same plain value in the dataclass and the message.
_PLAIN = tuple(
    f.name
    for f in dataclasses.fields(AssetMetadata)
    if f.name not in ("capture_time", "keywords", "gps")
)


def metadata_message(metadata: AssetMetadata) -> common_pb2.AssetMetadata:
    gps = metadata.gps
    message = common_pb2.AssetMetadata(
        keywords=metadata.keywords,
        gps=None if gps is None else common_pb2.GpsPosition(**dataclasses.asdict(gps)),
        **{name: getattr(metadata, name) for name in _PLAIN},
    )
    if metadata.capture_time is not None:
        message.capture_time.FromDatetime(metadata.capture_time)
    return message


def metadata_from_message(message: common_pb2.AssetMetadata) -> AssetMetadata:
    """The message's fields as they are (callers facing senders check them first)."""
    gps = message.gps
    return AssetMetadata(
        capture_time=(
            message.capture_time.ToDatetime(tzinfo=dt.UTC)
            if message.HasField("capture_time")
            else None
        ),
        keywords=tuple(message.keywords),
        gps=(
            GpsPosition(gps.latitude, gps.longitude, gps.altitude_meters)
            if message.HasField("gps")
            else None
        ),
        **{name: getattr(message, name) for name in _PLAIN},
    )
