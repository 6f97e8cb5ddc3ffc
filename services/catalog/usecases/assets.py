"""Assets of a tenant: reading, listing and deleting them; registering an upload and
resolving one that duplicates a live asset."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace

from services.catalog.model import (
    Asset,
    AssetFilter,
    AssetMetadata,
    AssetStatus,
    AssetWithRenditions,
    Job,
    NewAsset,
    RenderRequest,
    SimilarAsset,
    TenantSettings,
    without_gps,
)
from services.catalog.ports import AssetStore, JobStore
from services.catalog.usecases import paging
from services.catalog.usecases.paging import Page, decode_token, encode_token, group_by, paginate
from services.catalog.usecases.similar import near_duplicates
from services.shared.errors import InvalidArgument, NotFound

__all__ = [
    "Duplicate",
    "Registered",
    "asset_not_found",
    "delete_asset",
    "get_asset",
    "kept_metadata",
    "list_assets",
    "register_asset",
    "resolve_duplicate",
    "with_renditions",
]


@dataclass(frozen=True)
class Duplicate:
    """The live asset an upload duplicates, and the assets that look like it."""

    asset: AssetWithRenditions
    near_duplicates: list[SimilarAsset]


@dataclass(frozen=True)
class Registered:
    asset: AssetWithRenditions
    created: bool  # False: a concurrent upload of the same bytes registered it first
    deferred: bool  # the tenant is at its in-flight limit: the relay publishes the job
    near_duplicates: list[SimilarAsset]
    job: Job | None  # the new asset's pending job
    render_request: RenderRequest | None  # what to publish for that job


def asset_not_found(asset_id: uuid.UUID) -> NotFound:
    return NotFound(f"no asset {asset_id}", reason="ASSET_NOT_FOUND")


async def with_renditions(assets: AssetStore, asset: Asset) -> AssetWithRenditions:
    renditions = await assets.list_renditions(asset.tenant_id, [asset.id])
    return AssetWithRenditions(asset, tuple(renditions))


async def get_asset(
    assets: AssetStore, *, tenant_id: uuid.UUID, asset_id: uuid.UUID
) -> AssetWithRenditions:
    asset = await assets.get_asset(tenant_id, asset_id)
    if asset is None:
        raise asset_not_found(asset_id)
    return await with_renditions(assets, asset)


def _listing(tenant_id: uuid.UUID, where: AssetFilter) -> str:
    """What a page token is bound to: the tenant and every filter. A listing with only
    a status names it as before the other filters existed, so its tokens stay valid."""
    query = f"assets:{tenant_id}:{where.status}"
    if where.labels or where.captured_from or where.captured_to:
        bounds = [t.isoformat() if t else "" for t in (where.captured_from, where.captured_to)]
        query += ":" + json.dumps([list(where.labels), bounds])
    return query


async def list_assets(
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    where: AssetFilter,
    page_size: int,
    page_token: str,
) -> Page[AssetWithRenditions]:
    """Live assets newest first, those meeting every condition of `where`."""
    if where.status == AssetStatus.DELETED:
        raise InvalidArgument("deleted assets are not listed", reason="INVALID_FILTER")
    if where.captured_from and where.captured_to and where.captured_from >= where.captured_to:
        raise InvalidArgument(
            "capture_time_from must be before capture_time_to",
            reason="INVALID_FILTER",
            metadata={"field": "capture_time_from"},
        )
    query = _listing(tenant_id, where)
    size = paging.page_size(page_size)
    after = decode_token(page_token, query)
    page = await paginate(
        lambda limit: assets.list_assets(tenant_id, where, after, limit),
        size=size,
        token_of=lambda asset: encode_token(query, asset.created_at, asset.id),
    )
    renditions = group_by(
        await assets.list_renditions(tenant_id, [a.id for a in page.items]),
        lambda rendition: rendition.asset_id,
    )
    return Page(
        [AssetWithRenditions(a, tuple(renditions.get(a.id, ()))) for a in page.items],
        page.next_page_token,
    )


async def delete_asset(
    assets: AssetStore, *, tenant_id: uuid.UUID, asset_id: uuid.UUID
) -> AssetWithRenditions:
    """Soft delete: the row stays (status deleted) until Purge reclaims its objects."""
    asset = await assets.delete_asset(tenant_id, asset_id)
    if asset is None:
        raise asset_not_found(asset_id)
    return await with_renditions(assets, asset)


async def resolve_duplicate(
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    content_hash: str,
    request_id: str,
    similarity_threshold: int,
) -> Duplicate | None:
    """The live asset with these bytes, this upload counted against it; None when
    there is none, or when it is this same request's own (a retried upload)."""
    asset = await assets.resolve_duplicate(tenant_id, content_hash, request_id=request_id)
    if asset is None:
        return None
    return Duplicate(
        asset=await with_renditions(assets, asset),
        near_duplicates=await near_duplicates(
            assets,
            tenant_id=tenant_id,
            perceptual_hash=asset.perceptual_hash,
            max_distance=similarity_threshold,
            exclude=asset.id,
        ),
    )


def kept_metadata(metadata: AssetMetadata, settings: TenantSettings) -> AssetMetadata:
    """What an asset keeps of its upload's metadata: the GPS position only when its
    tenant keeps GPS (R12)."""
    return metadata if settings.keep_gps else without_gps(metadata, settings)


async def register_asset(
    assets: AssetStore, jobs: JobStore, *, new: NewAsset, similarity_threshold: int
) -> Registered:
    """The asset and its pending job (the caller publishes the render request), or
    the live asset with the same bytes when a concurrent upload won. The tenant's
    settings decide what it keeps of the metadata, read as the asset is inserted."""
    registration = await assets.register_asset(new, kept_metadata)
    asset = registration.asset
    registered = Registered(
        asset=await with_renditions(assets, asset),
        created=registration.created,
        deferred=registration.deferred,
        near_duplicates=await near_duplicates(
            assets,
            tenant_id=new.tenant_id,
            perceptual_hash=asset.perceptual_hash,
            max_distance=similarity_threshold,
            exclude=asset.id,
        ),
        job=registration.job,
        render_request=None,
    )
    if registration.job is None:
        return registered
    request = await jobs.render_request_row(registration.job.id)
    assert request is not None, "the job was registered in the same transaction"
    return replace(registered, render_request=request)
