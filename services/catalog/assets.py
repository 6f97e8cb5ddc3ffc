"""Reading assets and jobs for a tenant: the catalog's query-side domain functions."""

from __future__ import annotations

import uuid
from collections import defaultdict

import asyncpg

from imagepipe.v1 import common_pb2
from services.catalog import convert
from services.catalog.paging import decode_token, encode_token, page_size
from services.catalog.repository import CatalogRepository
from services.shared.errors import InvalidArgument, NotFound
from services.shared.imaging.hashing import format_hash

__all__ = [
    "asset_with_renditions",
    "get_asset",
    "get_job",
    "list_assets",
    "near_duplicates",
    "parse_uuid",
]

ASSET_NAMES = {v: k for k, v in convert.ASSET_STATUS.items()}
NEAR_DUPLICATE_LIMIT = 20


def parse_uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID, got {value[:64]!r}",
            reason="INVALID_ID",
            metadata={"field": field},
        ) from None


async def asset_with_renditions(repo: CatalogRepository, row: asyncpg.Record) -> common_pb2.Asset:
    renditions = await repo.list_renditions(row["tenant_id"], [row["id"]])
    return convert.asset_message(row, renditions)


async def get_asset(
    repo: CatalogRepository, tenant_id: uuid.UUID, asset_id: str
) -> common_pb2.Asset:
    row = await repo.get_asset(tenant_id, parse_uuid(asset_id, "asset_id"))
    if row is None:
        raise NotFound(f"no asset {asset_id}", reason="ASSET_NOT_FOUND")
    return await asset_with_renditions(repo, row)


async def list_assets(
    repo: CatalogRepository,
    tenant_id: uuid.UUID,
    status: common_pb2.AssetStatus.ValueType,
    requested_size: int,
    token: str,
) -> tuple[list[common_pb2.Asset], str]:
    status_name = ASSET_NAMES.get(status) if status else None
    if status == common_pb2.ASSET_STATUS_DELETED:
        raise InvalidArgument("deleted assets are not listed", reason="INVALID_FILTER")
    query = f"assets:{tenant_id}:{status_name}"
    size = page_size(requested_size)
    rows = await repo.list_assets(tenant_id, status_name, decode_token(token, query), size + 1)
    page, more = rows[:size], len(rows) > size
    renditions: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    for rendition in await repo.list_renditions(tenant_id, [r["id"] for r in page]):
        renditions[rendition["asset_id"]].append(rendition)
    assets = [convert.asset_message(r, renditions[r["id"]]) for r in page]
    next_token = encode_token(query, page[-1]["created_at"], page[-1]["id"]) if more else ""
    return assets, next_token


async def near_duplicates(
    repo: CatalogRepository,
    tenant_id: uuid.UUID,
    perceptual_hash: int,
    max_distance: int,
    *,
    exclude: uuid.UUID | None = None,
    limit: int = NEAR_DUPLICATE_LIMIT,
) -> list[common_pb2.SimilarAsset]:
    rows = await repo.near_duplicates(tenant_id, perceptual_hash, max_distance, limit, exclude)
    return [
        common_pb2.SimilarAsset(
            asset_id=str(r["id"]),
            perceptual_hash=format_hash(convert.unsigned_hash(r["perceptual_hash"])),
            distance=r["distance"],
        )
        for r in rows
    ]


async def get_job(repo: CatalogRepository, tenant_id: uuid.UUID, job_id: str) -> common_pb2.Job:
    row = await repo.get_job(tenant_id, parse_uuid(job_id, "job_id"))
    if row is None:
        raise NotFound(f"no job {job_id}", reason="JOB_NOT_FOUND")
    attempts = await repo.list_attempts(tenant_id, [row["id"]])
    return convert.job_message(row, attempts)
