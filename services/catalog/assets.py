"""Reading assets and jobs for a tenant: the catalog's query-side domain functions."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import asyncpg

from imagepipe.v1 import catalog_pb2, common_pb2
from services.catalog import convert
from services.catalog.repository import CatalogRepository
from services.catalog.similarity import MAX_DISTANCE
from services.catalog.usecases.paging import decode_token, encode_token, page_size
from services.shared.errors import InvalidArgument, NotFound
from services.shared.imaging.formats import format_from_name
from services.shared.imaging.hashing import format_hash, parse_hash

__all__ = [
    "asset_with_renditions",
    "delete_asset",
    "find_similar",
    "get_asset",
    "get_job",
    "list_assets",
    "list_jobs",
    "metrics_message",
    "near_duplicates",
    "parse_uuid",
]

ASSET_NAMES = {v: k for k, v in convert.ASSET_STATUS.items()}
JOB_NAMES = {v: k for k, v in convert.JOB_STATE.items()}
NEAR_DUPLICATE_LIMIT = 20
DEFAULT_SIMILAR_LIMIT = 20
MAX_SIMILAR_LIMIT = 200


def parse_uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID, got {value[:64]!r}",
            reason="INVALID_ID",
            metadata={"field": field},
        ) from None


def _filter_name(names: Mapping[Any, str], value: int, field: str) -> str | None:
    """The stored name an enum filter selects; None when unset. An unknown value is
    refused: read as "no filter", it would answer rows the caller did not ask for."""
    if not value:
        return None
    name = names.get(value)
    if name is None:
        raise InvalidArgument(
            f"{field} {value} is not one this server knows; leave it unset for no filter",
            reason="INVALID_FILTER",
            metadata={"field": field},
        )
    return name


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
    if status == common_pb2.ASSET_STATUS_DELETED:
        raise InvalidArgument("deleted assets are not listed", reason="INVALID_FILTER")
    status_name = _filter_name(ASSET_NAMES, status, "status")
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


async def delete_asset(
    repo: CatalogRepository, tenant_id: uuid.UUID, asset_id: str
) -> common_pb2.Asset:
    row = await repo.delete_asset(tenant_id, parse_uuid(asset_id, "asset_id"))
    if row is None:
        raise NotFound(f"no asset {asset_id}", reason="ASSET_NOT_FOUND")
    return await asset_with_renditions(repo, row)


async def list_jobs(
    repo: CatalogRepository,
    tenant_id: uuid.UUID,
    *,
    state: common_pb2.JobState.ValueType,
    asset_id: str,
    requested_size: int,
    token: str,
) -> tuple[list[common_pb2.Job], str]:
    state_name = _filter_name(JOB_NAMES, state, "state")
    asset = parse_uuid(asset_id, "asset_id") if asset_id else None
    if asset is not None and await repo.get_asset(tenant_id, asset, include_deleted=True) is None:
        raise NotFound(f"no asset {asset_id}", reason="ASSET_NOT_FOUND")
    query = f"jobs:{tenant_id}:{state_name}:{asset}"
    size = page_size(requested_size)
    rows = await repo.list_jobs(tenant_id, state_name, asset, decode_token(token, query), size + 1)
    page = rows[:size]
    attempts: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    for attempt in await repo.list_attempts(tenant_id, [r["id"] for r in page]):
        attempts[attempt["job_id"]].append(attempt)
    jobs = [convert.job_message(r, attempts[r["id"]]) for r in page]
    next_token = (
        encode_token(query, page[-1]["created_at"], page[-1]["id"]) if len(rows) > size else ""
    )
    return jobs, next_token


async def find_similar(
    repo: CatalogRepository,
    tenant_id: uuid.UUID,
    request: catalog_pb2.FindSimilarRequest,
    default_distance: int,
) -> list[common_pb2.SimilarAsset]:
    max_distance = request.max_distance or default_distance
    if max_distance > MAX_DISTANCE:
        raise InvalidArgument(
            f"max_distance is at most {MAX_DISTANCE}",
            reason="DISTANCE_TOO_LARGE",
            metadata={"max_supported": MAX_DISTANCE},
        )
    limit = request.limit or DEFAULT_SIMILAR_LIMIT
    if limit > MAX_SIMILAR_LIMIT:
        raise InvalidArgument(f"limit is at most {MAX_SIMILAR_LIMIT}", reason="LIMIT_TOO_LARGE")
    target = request.WhichOneof("target")
    if target == "asset_id":
        row = await repo.get_asset(tenant_id, parse_uuid(request.asset_id, "asset_id"))
        if row is None:
            raise NotFound(f"no asset {request.asset_id}", reason="ASSET_NOT_FOUND")
        return await near_duplicates(
            repo, tenant_id, row["perceptual_hash"], max_distance, exclude=row["id"], limit=limit
        )
    if target == "perceptual_hash":
        try:
            value = parse_hash(request.perceptual_hash)
        except ValueError:
            raise InvalidArgument(
                "perceptual_hash must be 16 hex digits", reason="INVALID_HASH"
            ) from None
        return await near_duplicates(
            repo, tenant_id, convert.signed_hash(value), max_distance, limit=limit
        )
    raise InvalidArgument("set asset_id or perceptual_hash", reason="MISSING_TARGET")


def metrics_message(
    tenant_id: uuid.UUID, row: asyncpg.Record
) -> catalog_pb2.GetTenantMetricsResponse:
    return catalog_pb2.GetTenantMetricsResponse(
        tenant_id=str(tenant_id),
        asset_count=row["asset_count"],
        assets_by_status=[
            catalog_pb2.AssetStatusCount(status=convert.ASSET_STATUS[s], count=n)
            for s, n in sorted(row["assets_by_status"].items())
        ],
        rendition_count=row["rendition_count"],
        original_bytes=row["original_bytes"],
        rendition_bytes=row["rendition_bytes"],
        logical_bytes=row["logical_bytes"],
        physical_bytes=row["physical_bytes"],
        deduplicated_uploads=row["deduplicated_uploads"],
        jobs_by_state=[
            catalog_pb2.JobStateCount(state=convert.JOB_STATE[s], count=n)
            for s, n in sorted(row["jobs_by_state"].items())
        ],
        poison_job_count=row["poison_job_count"],
        renditions_by_format=[
            catalog_pb2.FormatBytes(format=format_from_name(f), count=v[0], size_bytes=v[1])  # type: ignore[arg-type]
            for f, v in sorted(row["renditions_by_format"].items())
        ],
    )
