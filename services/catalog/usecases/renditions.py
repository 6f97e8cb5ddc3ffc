"""Choosing the rendition a client asked for, in the first format it accepts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.catalog.model import AssetStatus, Rendition
from services.catalog.ports import AssetStore
from services.catalog.usecases.assets import asset_not_found
from services.shared.errors import FailedPrecondition, NotFound

__all__ = ["DEFAULT_PREFERENCE", "choose_rendition"]

# Without an accept list, JPEG is preferred: every client decodes it.
DEFAULT_PREFERENCE = ("jpeg", "webp", "avif")
_UNFINISHED = frozenset({AssetStatus.PENDING, AssetStatus.PROCESSING})


async def choose_rendition(
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    asset_id: uuid.UUID,
    preset: str,
    accept: Sequence[str],
) -> Rendition:
    """The asset's `preset` rendition in the first of `accept` (format names) it has."""
    wanted = list(accept) or list(DEFAULT_PREFERENCE)
    asset = await assets.get_asset(tenant_id, asset_id)
    if asset is None:
        raise asset_not_found(asset_id)
    found = [r for r in await assets.list_renditions(tenant_id, [asset.id]) if r.preset == preset]
    if not found:
        if asset.status in _UNFINISHED:
            raise FailedPrecondition(
                f"asset {asset_id} is {asset.status}; its renditions are not made yet "
                "(WatchAsset tells when it is ready)",
                reason="ASSET_NOT_READY",
                metadata={"status": str(asset.status)},
            )
        raise NotFound(
            f"asset {asset_id} has no {preset!r} rendition", reason="RENDITION_NOT_FOUND"
        )
    by_format = {r.format: r for r in found}
    for image_format in wanted:
        rendition = by_format.get(image_format)
        if rendition is not None:
            return rendition
    available = sorted(by_format)
    raise NotFound(
        f"no {preset!r} rendition in an accepted format; available: {', '.join(available)}",
        reason="FORMAT_NOT_AVAILABLE",
        metadata={"available": ",".join(available)},
    )
