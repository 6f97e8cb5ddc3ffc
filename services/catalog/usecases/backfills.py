"""Re-renders: an asset's focal point, and backfills of a selection of a tenant's assets.

A re-render is a pending job in the outbox like an upload's, published at the tenant's
fair share, so a backfill of 100 000 assets waits there while other tenants' uploads
take their turns. It renders the tenant's presets as they are when it is made. The
asset stays ready and keeps serving its renditions until the new ones replace them
(CompleteJob); a failed re-render leaves it ready with the old ones.

A backfill selects ready assets only (one still being rendered renders the presets of
its own job) and leaves out any asset with an unfinished job: that job renders it
already, and counting it here would report another job's outcome. Its progress counts
its own jobs: done, failed (dead), and finished once none is left unfinished.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.catalog.model import AssetWithRenditions, Backfill, BackfillScope, FocalPoint, Job
from services.catalog.ports import AssetStore, BackfillStore, PresetStore, PurgeStore
from services.catalog.usecases.assets import asset_not_found, with_renditions
from services.catalog.usecases.presets import preset_not_found
from services.shared.errors import InvalidArgument, NotFound

__all__ = [
    "MAX_BACKFILL_ASSET_IDS",
    "FocusSet",
    "backfill_not_found",
    "checked_focal_point",
    "get_backfill",
    "set_focal_point",
    "start_backfill",
]

MAX_BACKFILL_ASSET_IDS = 1000


def backfill_not_found(backfill_id: uuid.UUID) -> NotFound:
    return NotFound(f"no backfill {backfill_id}", reason="BACKFILL_NOT_FOUND")


def checked_focal_point(x: float, y: float) -> FocalPoint:
    for axis, value in (("x", x), ("y", y)):
        if math.isnan(value) or not 0 <= value <= 1:
            raise InvalidArgument(
                f"focal_point.{axis} is {value}; it must be from 0 to 1 (a fraction of the "
                "image's oriented width or height)",
                reason="INVALID_FOCAL_POINT",
                metadata={"field": f"focal_point.{axis}"},
            )
    return FocalPoint(x, y)


@dataclass(frozen=True)
class FocusSet:
    asset: AssetWithRenditions
    job: Job | None  # the re-render it started; None when none was wanted


async def set_focal_point(
    backfills: BackfillStore,
    presets: PresetStore,
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    asset_id: uuid.UUID,
    point: FocalPoint | None,
) -> FocusSet:
    """Set (None: clear) the asset's focal point; when the tenant has `cover` presets
    (the only ones a focal point changes), a job re-rendering the asset."""
    if point is not None:
        point = checked_focal_point(point.x, point.y)
    current = await presets.tenant_presets(tenant_id)
    rerender = any(p.fit == "cover" for p in current.presets)
    changed = await backfills.set_focal_point(tenant_id, asset_id, point, rerender=rerender)
    if changed is None:
        raise asset_not_found(asset_id)
    return FocusSet(await with_renditions(assets, changed.asset), changed.job)


async def _check_selection(
    presets: PresetStore,
    purge: PurgeStore,
    *,
    tenant_id: uuid.UUID,
    scope: BackfillScope,
    preset: str,
    asset_ids: Sequence[uuid.UUID],
) -> None:
    if preset:
        names = {p.name for p in (await presets.tenant_presets(tenant_id)).presets}
        if preset not in names:
            raise preset_not_found(preset)
    if scope != BackfillScope.ASSET_IDS:
        if asset_ids:
            raise InvalidArgument(
                "asset_ids are for BACKFILL_SCOPE_ASSET_IDS only",
                reason="INVALID_BACKFILL_SCOPE",
                metadata={"field": "asset_ids"},
            )
        return
    if not asset_ids or len(asset_ids) > MAX_BACKFILL_ASSET_IDS:
        raise InvalidArgument(
            f"BACKFILL_SCOPE_ASSET_IDS takes 1 to {MAX_BACKFILL_ASSET_IDS} asset_ids, "
            f"got {len(asset_ids)}",
            reason="TOO_MANY_ASSET_IDS",
            metadata={"field": "asset_ids", "max": str(MAX_BACKFILL_ASSET_IDS)},
        )
    live = await purge.live_assets(tenant_id, set(asset_ids))
    missing = [a for a in asset_ids if a not in live]
    if missing:
        raise asset_not_found(missing[0])


async def start_backfill(
    backfills: BackfillStore,
    presets: PresetStore,
    purge: PurgeStore,
    *,
    tenant_id: uuid.UUID,
    scope: BackfillScope,
    preset: str,
    asset_ids: Sequence[uuid.UUID],
) -> Backfill:
    """Re-render the ready assets `scope` selects (see the module docstring)."""
    unique = list(dict.fromkeys(asset_ids))
    await _check_selection(
        presets, purge, tenant_id=tenant_id, scope=scope, preset=preset, asset_ids=unique
    )
    return await backfills.start_backfill(tenant_id, scope, preset, unique)


async def get_backfill(
    backfills: BackfillStore, *, tenant_id: uuid.UUID, backfill_id: uuid.UUID
) -> Backfill:
    found = await backfills.get_backfill(tenant_id, backfill_id)
    if found is None:
        raise backfill_not_found(backfill_id)
    return found
