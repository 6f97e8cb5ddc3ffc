"""Choosing the rendition a client asked for, in the first format it accepts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.catalog.model import AssetStatus, Rendition
from services.catalog.ports import AssetStore
from services.catalog.usecases.assets import asset_not_found
from services.shared.errors import FailedPrecondition, NotFound

__all__ = ["DEFAULT_PREFERENCE", "choose_rendition", "first_accepted", "preset_renditions"]

# Without an accept list, JPEG is preferred: every client decodes it.
DEFAULT_PREFERENCE = ("jpeg", "webp", "avif")
_UNFINISHED = frozenset({AssetStatus.PENDING, AssetStatus.PROCESSING})


async def preset_renditions(
    assets: AssetStore, *, tenant_id: uuid.UUID, asset_id: uuid.UUID, preset: str
) -> tuple[Rendition, ...]:
    """The live asset's `preset` renditions, one per format (never none)."""
    found = await assets.preset_renditions(tenant_id, asset_id, preset)
    if found is None or found.status == AssetStatus.DELETED:
        raise asset_not_found(asset_id)
    if not found.renditions:
        if found.status in _UNFINISHED:
            raise FailedPrecondition(
                f"asset {asset_id} is {found.status}; its renditions are not made yet "
                "(WatchAsset tells when it is ready)",
                reason="ASSET_NOT_READY",
                metadata={"status": str(found.status)},
            )
        raise NotFound(
            f"asset {asset_id} has no {preset!r} rendition", reason="RENDITION_NOT_FOUND"
        )
    return found.renditions


def first_accepted(renditions: Sequence[Rendition], accept: Sequence[str]) -> Rendition:
    """The one of a preset's renditions in the first of `accept` (format names) it has."""
    by_format = {r.format: r for r in renditions}
    for image_format in accept:
        rendition = by_format.get(image_format)
        if rendition is not None:
            return rendition
    available = sorted(by_format)
    preset = renditions[0].preset if renditions else ""
    raise NotFound(
        f"no {preset!r} rendition in an accepted format; available: {', '.join(available)}",
        reason="FORMAT_NOT_AVAILABLE",
        metadata={"available": ",".join(available)},
    )


async def choose_rendition(
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    asset_id: uuid.UUID,
    preset: str,
    accept: Sequence[str],
) -> Rendition:
    """The asset's `preset` rendition in the first of `accept` (format names) it has."""
    found = await preset_renditions(assets, tenant_id=tenant_id, asset_id=asset_id, preset=preset)
    return first_accepted(found, list(accept) or list(DEFAULT_PREFERENCE))
