"""FindSimilar and the near duplicates an upload is told about."""

from __future__ import annotations

import uuid

from services.catalog.model import SimilarAsset
from services.catalog.ports import AssetStore
from services.shared.errors import NotFound

__all__ = ["NEAR_DUPLICATE_LIMIT", "find_similar", "near_duplicates"]

# How many near duplicates an upload (RegisterAsset, ResolveDuplicate) is told about.
NEAR_DUPLICATE_LIMIT = 20


async def near_duplicates(
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    perceptual_hash: int,
    max_distance: int,
    exclude: uuid.UUID | None = None,
    limit: int = NEAR_DUPLICATE_LIMIT,
) -> list[SimilarAsset]:
    return await assets.near_duplicates(tenant_id, perceptual_hash, max_distance, limit, exclude)


async def find_similar(
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    target: uuid.UUID | int,
    max_distance: int,
    limit: int,
) -> list[SimilarAsset]:
    """Assets near `target`: an asset of the tenant (itself left out) or a hash."""
    if isinstance(target, uuid.UUID):
        asset = await assets.get_asset(tenant_id, target)
        if asset is None:
            raise NotFound(f"no asset {target}", reason="ASSET_NOT_FOUND")
        return await near_duplicates(
            assets,
            tenant_id=tenant_id,
            perceptual_hash=asset.perceptual_hash,
            max_distance=max_distance,
            exclude=asset.id,
            limit=limit,
        )
    return await near_duplicates(
        assets, tenant_id=tenant_id, perceptual_hash=target, max_distance=max_distance, limit=limit
    )
