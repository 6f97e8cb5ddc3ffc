"""Rows to model objects: the one mapping of columns to fields.

Each *_COLUMNS list is what the matching conversion reads; a query that selects one
returns rows that conversion takes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import asyncpg

from services.catalog.db.presets import presets_from_snapshot
from services.catalog.model import (
    TENANT_SETTING_NAMES,
    ApiKey,
    Asset,
    AssetMetadata,
    AssetStatus,
    Attempt,
    DeletedAsset,
    FocalPoint,
    GpsPosition,
    Job,
    JobState,
    PoisonJob,
    PoisonReason,
    RenderRequest,
    Rendition,
    SigningKey,
    SimilarAsset,
    StoredApiKey,
    Tenant,
    TenantMetrics,
    TenantSettings,
)
from services.catalog.similarity import unsigned_hash

__all__ = [
    "API_KEY_COLUMNS",
    "ASSET_COLUMNS",
    "ATTEMPT_COLUMNS",
    "JOB_COLUMNS",
    "POISON_COLUMNS",
    "RENDER_REQUEST_COLUMNS",
    "RENDITION_COLUMNS",
    "SIGNING_KEY_COLUMNS",
    "TENANT_COLUMNS",
    "TENANT_SETTINGS_COLUMNS",
    "Record",
    "api_key",
    "asset",
    "asset_metadata",
    "attempt",
    "deleted_asset",
    "focal_point",
    "job",
    "metadata_document",
    "poison_job",
    "render_request",
    "rendition",
    "signing_key",
    "similar_asset",
    "stored_api_key",
    "tenant",
    "tenant_metrics",
    "tenant_settings",
]

Record = asyncpg.Record

TENANT_COLUMNS = "id, name, created_at"
API_KEY_COLUMNS = "key_id, tenant_id, label, created_at, revoked_at"
SIGNING_KEY_COLUMNS = "key_id, tenant_id, label, created_at, revoked_at"
# Each setting is the `tenants` column of its field's name.
TENANT_SETTINGS_COLUMNS = ", ".join(TENANT_SETTING_NAMES)
ASSET_COLUMNS = """
    a.id, a.tenant_id, a.status, a.content_hash, a.perceptual_hash, a.filename,
    a.declared_content_type, a.content_type, a.format, a.width, a.height, a.size_bytes,
    a.frame_count, a.labels, a.original_key, a.upload_count, a.thumbhash, a.dominant_color,
    a.created_at, a.updated_at, a.deleted_at, a.metadata, a.capture_time, a.focal_x, a.focal_y,
    (SELECT j.id FROM jobs j WHERE j.asset_id = a.id AND j.tenant_id = a.tenant_id
      ORDER BY j.created_at DESC LIMIT 1) AS job_id
"""
RENDITION_COLUMNS = """
    asset_id, preset, format, object_key, width, height, size_bytes, quality,
    psnr_db, psnr_infinite, ssim, hash_distance, min_ssim, updated_at, content_sha256,
    preset_version
"""
JOB_COLUMNS = """
    j.id, j.tenant_id, j.asset_id, j.state, j.attempts, j.last_error, j.request_id,
    j.created_at, j.updated_at, j.published_at, j.finished_at
"""
ATTEMPT_COLUMNS = """
    t.job_id, t.attempt, t.worker, t.started_at, t.finished_at, t.error, t.transient,
    t.repeats, t.first_finished_at
"""
# `interrupted`: an earlier delivery was never settled (an attempt opened and never
# finished, a claim before this one that opened none, or a spare at the delivery
# limit): the renderer runs it alone.
RENDER_REQUEST_COLUMNS = """
    j.id AS job_id, j.tenant_id, j.asset_id, j.request_id, j.created_at,
    a.original_key, a.content_hash, a.format, j.presets, j.focal_x, j.focal_y,
    (j.deliveries > 1 OR j.spares > 0 OR EXISTS (SELECT 1 FROM job_attempts t
        WHERE t.job_id = j.id AND t.finished_at IS NULL AND t.started_at >= j.budget_since))
        AS interrupted
"""
POISON_COLUMNS = """
    id, tenant_id, job_id, asset_id, reason, error, request, created_at, replayed_at
"""


def tenant(row: Record) -> Tenant:
    return Tenant(id=row["id"], name=row["name"], created_at=row["created_at"])


def api_key(row: Record) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        label=row["label"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def signing_key(row: Record) -> SigningKey:
    return SigningKey(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        label=row["label"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def tenant_settings(row: Record) -> TenantSettings:
    return TenantSettings(**{name: row[name] for name in TENANT_SETTING_NAMES})


def stored_api_key(row: Record) -> StoredApiKey:
    return StoredApiKey(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        secret_hash=row["secret_hash"],
        revoked_at=row["revoked_at"],
    )


def focal_point(row: Record) -> FocalPoint | None:
    """The row's focal_x and focal_y (both set, or both NULL)."""
    if row["focal_x"] is None or row["focal_y"] is None:
        return None
    return FocalPoint(row["focal_x"], row["focal_y"])


def asset(row: Record) -> Asset:
    return Asset(
        id=row["id"],
        tenant_id=row["tenant_id"],
        status=AssetStatus(row["status"]),
        content_hash=row["content_hash"],
        perceptual_hash=unsigned_hash(row["perceptual_hash"]),
        filename=row["filename"],
        declared_content_type=row["declared_content_type"],
        content_type=row["content_type"],
        format=row["format"],
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        frame_count=row["frame_count"],
        labels=dict(row["labels"]),
        original_key=row["original_key"],
        upload_count=row["upload_count"],
        thumbhash=row["thumbhash"],
        dominant_color=row["dominant_color"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        job_id=row["job_id"],
        metadata=asset_metadata(row["metadata"], row["capture_time"]),
        focal_point=focal_point(row),
    )


# The metadata fields `assets.metadata` holds as plain JSON values, by their names; the
# capture time is a column of its own.
_PLAIN_METADATA = tuple(
    f.name
    for f in dataclasses.fields(AssetMetadata)
    if f.name not in ("capture_time", "keywords", "gps")
)


def metadata_document(metadata: AssetMetadata) -> dict[str, Any]:
    """`assets.metadata`: the fields that say something (no capture time)."""
    document: dict[str, Any] = {
        name: getattr(metadata, name) for name in _PLAIN_METADATA if getattr(metadata, name)
    }
    if metadata.keywords:
        document["keywords"] = list(metadata.keywords)
    if metadata.gps is not None:
        document["gps"] = dataclasses.asdict(metadata.gps)
    return document


def asset_metadata(document: Mapping[str, Any], capture_time: dt.datetime | None) -> AssetMetadata:
    gps = document.get("gps")
    return AssetMetadata(
        capture_time=capture_time,
        keywords=tuple(document.get("keywords", ())),
        gps=GpsPosition(**gps) if gps else None,
        **{name: document[name] for name in _PLAIN_METADATA if name in document},
    )


def rendition(row: Record) -> Rendition:
    return Rendition(
        asset_id=row["asset_id"],
        preset=row["preset"],
        format=row["format"],
        object_key=row["object_key"],
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        quality=row["quality"],
        psnr_db=row["psnr_db"],
        psnr_infinite=row["psnr_infinite"],
        ssim=row["ssim"],
        hash_distance=row["hash_distance"],
        min_ssim=row["min_ssim"],
        updated_at=row["updated_at"],
        content_sha256=row["content_sha256"],
        preset_version=row["preset_version"],
    )


def similar_asset(row: Record) -> SimilarAsset:
    return SimilarAsset(
        asset_id=row["id"],
        perceptual_hash=unsigned_hash(row["perceptual_hash"]),
        distance=row["distance"],
    )


def job(row: Record) -> Job:
    return Job(
        id=row["id"],
        tenant_id=row["tenant_id"],
        asset_id=row["asset_id"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        request_id=row["request_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        published_at=row["published_at"],
        finished_at=row["finished_at"],
    )


def attempt(row: Record) -> Attempt:
    return Attempt(
        job_id=row["job_id"],
        attempt=row["attempt"],
        worker=row["worker"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        transient=row["transient"],
        repeats=row["repeats"],
        first_finished_at=row["first_finished_at"],
    )


def render_request(row: Record) -> RenderRequest:
    return RenderRequest(
        job_id=row["job_id"],
        tenant_id=row["tenant_id"],
        asset_id=row["asset_id"],
        request_id=row["request_id"],
        created_at=row["created_at"],
        original_key=row["original_key"],
        content_hash=row["content_hash"],
        format=row["format"],
        interrupted=bool(row["interrupted"]),
        presets=presets_from_snapshot(row["presets"]),
        focal_point=focal_point(row),
    )


def poison_job(row: Record) -> PoisonJob:
    return PoisonJob(
        id=row["id"],
        tenant_id=row["tenant_id"],
        job_id=row["job_id"],
        asset_id=row["asset_id"],
        reason=PoisonReason(row["reason"]),
        error=row["error"],
        request=bytes(row["request"]),
        created_at=row["created_at"],
        replayed_at=row["replayed_at"],
    )


def deleted_asset(row: Record) -> DeletedAsset:
    return DeletedAsset(
        id=row["id"],
        original_key=row["original_key"],
        size_bytes=row["size_bytes"],
        deleted_at=row["deleted_at"],
        renditions=tuple((str(key), int(size)) for key, size in row["renditions"]),
    )


def tenant_metrics(row: Record) -> TenantMetrics:
    return TenantMetrics(
        asset_count=row["asset_count"],
        assets_by_status=dict(row["assets_by_status"]),
        rendition_count=row["rendition_count"],
        original_bytes=row["original_bytes"],
        rendition_bytes=row["rendition_bytes"],
        logical_bytes=row["logical_bytes"],
        physical_bytes=row["physical_bytes"],
        deduplicated_uploads=row["deduplicated_uploads"],
        jobs_by_state=dict(row["jobs_by_state"]),
        poison_job_count=row["poison_job_count"],
        renditions_by_format={
            name: (int(count), int(size))
            for name, (count, size) in row["renditions_by_format"].items()
        },
    )
