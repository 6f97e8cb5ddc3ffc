"""The JSON objects the CLI prints with ``--json``, one per line; the tables show the same.

Plain functions from the client's results to dicts of JSON types, so scripts can rely
on them and tests can check them without running a command. Keys are only ever added.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

from google.protobuf import timestamp_pb2

from imagepipe.client import (
    CreatedSigningKey,
    CreatedTenant,
    DeliveryLink,
    ImagepipeError,
    RenditionLink,
    UploadResult,
    format_name,
    job_state_name,
    status_name,
)
from imagepipe.v1 import catalog_pb2, common_pb2, quality_pb2, renderer_pb2

__all__ = [
    "JsonObject",
    "asset_json",
    "compare_json",
    "created_signing_key_json",
    "delivery_link_json",
    "error_json",
    "link_json",
    "metadata_json",
    "metrics_json",
    "poison_json",
    "preset_json",
    "psnr_value",
    "purge_json",
    "rendition_json",
    "retried_json",
    "signing_key_json",
    "similar_json",
    "tenant_json",
    "tenant_settings_json",
    "upload_json",
    "written_json",
]

JsonObject: TypeAlias = dict[str, Any]

_PURGE_KINDS = {
    catalog_pb2.PURGE_ITEM_KIND_DELETED_ORIGINAL: "deleted original",
    catalog_pb2.PURGE_ITEM_KIND_DELETED_RENDITION: "deleted rendition",
    catalog_pb2.PURGE_ITEM_KIND_ORPHAN_OBJECT: "orphan",
}


def psnr_value(scores: common_pb2.QualityScores) -> float | str:
    """PSNR in dB, or "inf" for identical images (JSON has no infinity)."""
    return "inf" if scores.psnr_infinite else round(scores.psnr_db, 3)


def rendition_json(rendition: common_pb2.Rendition) -> JsonObject:
    row: JsonObject = {
        "preset": rendition.preset,
        "width": rendition.width,
        "height": rendition.height,
        "bytes": rendition.size_bytes,
        "format": format_name(rendition.format),
        "quality": rendition.quality,
    }
    if rendition.min_ssim > 0:
        # The quality was chosen for an SSIM target; the scores measured then come along.
        row["min_ssim"] = rendition.min_ssim
    if rendition.HasField("scores"):
        row["psnr_db"] = psnr_value(rendition.scores)
        row["ssim"] = round(rendition.scores.ssim, 5)
    if rendition.version:
        # What delivery URLs carry in `v` (servers before delivery send none).
        row["version"] = rendition.version
    return row


def asset_json(asset: common_pb2.Asset) -> JsonObject:
    return {
        "asset_id": asset.asset_id,
        "status": status_name(asset.status),
        "content_hash": asset.content_hash,
        "perceptual_hash": asset.perceptual_hash,
        "filename": asset.filename,
        "content_type": asset.content_type,
        "format": format_name(asset.format),
        "width": asset.width,
        "height": asset.height,
        "bytes": asset.size_bytes,
        "frame_count": asset.frame_count,
        "labels": dict(asset.labels),
        "job_id": asset.job_id,
        "thumbhash": asset.placeholder.thumbhash,
        "dominant_color": asset.placeholder.dominant_color,
        "metadata": metadata_json(asset.metadata),
        "renditions": [rendition_json(r) for r in asset.renditions],
    }


def upload_json(
    file: str, result: UploadResult, asset: common_pb2.Asset | None = None
) -> JsonObject:
    """One uploaded file; `asset` is the asset after waiting, when the caller waited."""
    described = asset_json(asset if asset is not None else result.asset)
    return {
        "file": file,
        "asset_id": described.pop("asset_id"),
        "deduplicated": result.deduplicated,
        **described,
        "near_duplicates": [
            {"asset_id": d.asset_id, "distance": d.distance} for d in result.near_duplicates
        ],
        "request_id": result.request_id,
    }


def error_json(error: ImagepipeError) -> JsonObject:
    return {
        "code": error.code_name,
        "reason": error.reason,
        "message": error.message,
        "request_id": error.request_id,
    }


def written_json(asset_id: str, rendition: common_pb2.Rendition, file: str) -> JsonObject:
    """A rendition downloaded to `file`."""
    return {"asset_id": asset_id, **rendition_json(rendition), "file": file}


def link_json(asset_id: str, link: RenditionLink) -> JsonObject:
    """A rendition's metadata and its presigned URL."""
    expires = link.expire_time.isoformat() + "Z" if link.expire_time else None
    return {
        "asset_id": asset_id,
        **rendition_json(link.rendition),
        "url": link.url,
        "url_expire_time": expires,
    }


def compare_json(response: quality_pb2.CompareResponse) -> list[JsonObject]:
    return [
        {
            "asset_id": response.asset_id,
            "preset": r.preset,
            "format": format_name(r.format),
            "width": r.width,
            "height": r.height,
            "bytes": r.size_bytes,
            "original_bytes": r.original_size_bytes,
            "quality": r.quality,
            "psnr_db": psnr_value(r.scores),
            "ssim": round(r.scores.ssim, 5),
            "hash_distance": r.scores.hash_distance,
            "good": r.good,
            "min_ssim": r.min_ssim,
            "measured_at_render": r.measured_at_render,
        }
        for r in response.renditions
    ]


_CHROMA = {
    common_pb2.CHROMA_SUBSAMPLING_UNSPECIFIED: "4:2:0",
    common_pb2.CHROMA_SUBSAMPLING_420: "4:2:0",
    common_pb2.CHROMA_SUBSAMPLING_444: "4:4:4",
}


def _enum_name(name: str, prefix: str, unset: str) -> str:
    """`FIT_COVER` -> `cover`; the zero value (`*_UNSPECIFIED`) is its default."""
    short = name.removeprefix(prefix).lower()
    return unset if short == "unspecified" else short


def preset_json(preset: renderer_pb2.Preset) -> JsonObject:
    return {
        "name": preset.name,
        "max_width": preset.max_width,
        "max_height": preset.max_height,
        "formats": [format_name(f) for f in preset.formats],
        "quality": preset.quality,
        "min_ssim": preset.min_ssim,
        "fit": _enum_name(common_pb2.Fit.Name(preset.fit), "FIT_", "inside"),
        "gravity": _enum_name(common_pb2.Gravity.Name(preset.gravity), "GRAVITY_", "centre"),
        "chroma_subsampling": _CHROMA.get(preset.chroma_subsampling, "4:2:0"),
        "version": preset.version,
    }


def backfill_json(backfill: catalog_pb2.Backfill) -> JsonObject:
    return {
        "backfill_id": backfill.backfill_id,
        "scope": _enum_name(catalog_pb2.BackfillScope.Name(backfill.scope), "BACKFILL_SCOPE_", ""),
        "preset": backfill.preset,
        "state": _enum_name(catalog_pb2.BackfillState.Name(backfill.state), "BACKFILL_STATE_", ""),
        "total": backfill.total,
        "done": backfill.done,
        "failed": backfill.failed,
        "created": _timestamp(backfill.create_time, backfill.HasField("create_time")),
        "finished": _timestamp(backfill.finish_time, backfill.HasField("finish_time")),
    }


def tenant_json(created: CreatedTenant) -> JsonObject:
    """A new tenant and its first key, the only time the key is shown."""
    return {
        "tenant_id": created.tenant.tenant_id,
        "name": created.tenant.name,
        "key_id": created.api_key.key_id,
        "api_key": created.secret_key,
    }


def similar_json(similar: common_pb2.SimilarAsset) -> JsonObject:
    return {
        "asset_id": similar.asset_id,
        "perceptual_hash": similar.perceptual_hash,
        "distance": similar.distance,
    }


def metrics_json(metrics: catalog_pb2.GetTenantMetricsResponse) -> JsonObject:
    return {
        "tenant_id": metrics.tenant_id,
        "assets": metrics.asset_count,
        "assets_by_status": {status_name(s.status): s.count for s in metrics.assets_by_status},
        "renditions": metrics.rendition_count,
        "original_bytes": metrics.original_bytes,
        "rendition_bytes": metrics.rendition_bytes,
        "logical_bytes": metrics.logical_bytes,
        "physical_bytes": metrics.physical_bytes,
        "deduplication_saved_bytes": metrics.logical_bytes - metrics.physical_bytes,
        "deduplicated_uploads": metrics.deduplicated_uploads,
        "jobs_by_state": {job_state_name(j.state): j.count for j in metrics.jobs_by_state},
        "poison_jobs": metrics.poison_job_count,
        "renditions_by_format": {
            format_name(f.format): {"count": f.count, "bytes": f.size_bytes}
            for f in metrics.renditions_by_format
        },
    }


def purge_json(report: catalog_pb2.PurgeResponse) -> JsonObject:
    return {
        "dry_run": report.dry_run,
        "cutoff": report.cutoff_time.ToDatetime(tzinfo=UTC).isoformat(),
        "objects": report.object_count,
        "bytes": report.bytes_freed,
        "asset_rows_removed": report.asset_rows_removed,
        "items": [
            {"kind": _PURGE_KINDS.get(i.kind, "?"), "key": i.object_key, "bytes": i.size_bytes}
            for i in report.items
        ],
    }


def poison_json(poison_job: catalog_pb2.PoisonJob) -> JsonObject:
    return {
        "poison_job_id": poison_job.poison_job_id,
        "job_id": poison_job.job_id,
        "asset_id": poison_job.asset_id,
        "reason": catalog_pb2.PoisonReason.Name(poison_job.reason)
        .removeprefix("POISON_REASON_")
        .lower(),
        "error": poison_job.error,
        "attempts": len(poison_job.attempts),
        "created": poison_job.create_time.ToDatetime(tzinfo=UTC).isoformat(),
        "replayed": (
            poison_job.replay_time.ToDatetime(tzinfo=UTC).isoformat()
            if poison_job.HasField("replay_time")
            else None
        ),
    }


def retried_json(poison_job_id: str, replayed: catalog_pb2.RetryPoisonJobResponse) -> JsonObject:
    """A poison job replayed: the job it queued again."""
    return {
        "poison_job_id": poison_job_id,
        "job_id": replayed.job.job_id,
        "asset_id": replayed.job.asset_id,
        "state": job_state_name(replayed.job.state),
    }


def _utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the other JSON times are read by scripts."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _timestamp(value: timestamp_pb2.Timestamp, present: bool) -> str | None:
    return _utc(value.ToDatetime(tzinfo=UTC)) if present else None


def delivery_link_json(
    asset_id: str, preset: str, image_format: str | None, link: DeliveryLink, *, signer: str
) -> JsonObject:
    """A delivery URL; `signer` says who made it: "client" or "server" (signed_by is
    null for an unsigned URL)."""
    return {
        "asset_id": asset_id,
        "preset": preset,
        "format": image_format,  # null: negotiated with the browser's Accept header
        "url": link.url,
        "version": link.version,
        "expire_time": _utc(link.expire_time),
        "key_id": link.key_id or None,
        "signed": link.signed,
        "signed_by": signer if link.signed else None,
    }


def signing_key_json(key: common_pb2.SigningKey) -> JsonObject:
    return {
        "key_id": key.key_id,
        "label": key.label,
        "created": _timestamp(key.create_time, key.HasField("create_time")),
        "revoked": _timestamp(key.revoke_time, key.HasField("revoke_time")),
    }


def created_signing_key_json(created: CreatedSigningKey) -> JsonObject:
    """A new signing key and its secret, the only time the secret is shown."""
    return {**signing_key_json(created.signing_key), "secret": created.secret}


def tenant_settings_json(settings: common_pb2.TenantSettings) -> JsonObject:
    return {"unsigned_delivery": settings.unsigned_delivery, "keep_gps": settings.keep_gps}


# The AssetMetadata fields shown as they are, in the message's order.
_METADATA_VALUES = (
    "capture_time_offset",
    "camera_make",
    "camera_model",
    "lens",
    "exposure_time_seconds",
    "f_number",
    "iso",
    "focal_length_mm",
    "orientation",
    "color_profile",
    "title",
    "description",
    "creator",
    "copyright",
)


def metadata_json(metadata: common_pb2.AssetMetadata) -> JsonObject:
    """What the original says, only the fields it gives (absent ones are left out)."""
    row: JsonObject = {}
    if metadata.HasField("capture_time"):
        row["capture_time"] = _timestamp(metadata.capture_time, True)
    for name in _METADATA_VALUES:
        value = getattr(metadata, name)
        if value:
            row[name] = value
    if metadata.keywords:
        row["keywords"] = list(metadata.keywords)
    if metadata.HasField("gps"):
        row["gps"] = {
            "latitude": metadata.gps.latitude,
            "longitude": metadata.gps.longitude,
            "altitude_meters": metadata.gps.altitude_meters,
        }
    return row
