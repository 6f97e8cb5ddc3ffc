"""Choosing the rendition a client asked for, in the first format it accepts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from imagepipe.v1 import common_pb2
from services.catalog import convert
from services.catalog.assets import parse_uuid
from services.catalog.internal_inputs import known_format
from services.catalog.repository import CatalogRepository
from services.shared.errors import FailedPrecondition, NotFound

__all__ = ["ChosenRendition", "choose_rendition"]

# Without an accept list, JPEG is preferred: every client decodes it.
_DEFAULT_PREFERENCE = ("jpeg", "webp", "avif")


def _format(value: int) -> str:
    return known_format(value, "accept_formats")


@dataclass(frozen=True)
class ChosenRendition:
    rendition: common_pb2.Rendition
    object_key: str


async def choose_rendition(
    repo: CatalogRepository,
    tenant_id: uuid.UUID,
    asset_id: str,
    preset: str,
    accept: Sequence[common_pb2.ImageFormat.ValueType],
) -> ChosenRendition:
    wanted = [_format(f) for f in accept] or list(_DEFAULT_PREFERENCE)
    asset = await repo.get_asset(tenant_id, parse_uuid(asset_id, "asset_id"))
    if asset is None:
        raise NotFound(f"no asset {asset_id}", reason="ASSET_NOT_FOUND")
    rows = [
        r for r in await repo.list_renditions(tenant_id, [asset["id"]]) if r["preset"] == preset
    ]
    if not rows:
        if asset["status"] in ("pending", "processing"):
            raise FailedPrecondition(
                f"asset {asset_id} is {asset['status']}; its renditions are not made yet "
                "(WatchAsset tells when it is ready)",
                reason="ASSET_NOT_READY",
                metadata={"status": asset["status"]},
            )
        raise NotFound(
            f"asset {asset_id} has no {preset!r} rendition", reason="RENDITION_NOT_FOUND"
        )
    by_format = {r["format"]: r for r in rows}
    for image_format in wanted:
        row = by_format.get(image_format)
        if row is not None:
            return ChosenRendition(convert.rendition_message(row), row["object_key"])
    raise NotFound(
        f"no {preset!r} rendition in an accepted format; available: {', '.join(sorted(by_format))}",
        reason="FORMAT_NOT_AVAILABLE",
        metadata={"available": ",".join(sorted(by_format))},
    )
