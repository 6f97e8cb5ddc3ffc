"""Rows to protobuf messages (and the few enums stored as text)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import catalog_internal_pb2, catalog_pb2, common_pb2, events_pb2
from services.catalog.repository import unsigned_hash
from services.shared.imaging.formats import format_from_name
from services.shared.imaging.hashing import format_hash

__all__ = [
    "ASSET_STATUS",
    "JOB_STATE",
    "api_key_message",
    "asset_message",
    "job_message",
    "render_request_message",
    "rendition_message",
    "signed_hash",
    "tenant_message",
    "unsigned_hash",
]

Record = asyncpg.Record

ASSET_STATUS: dict[str, common_pb2.AssetStatus.ValueType] = {
    "pending": common_pb2.ASSET_STATUS_PENDING,
    "processing": common_pb2.ASSET_STATUS_PROCESSING,
    "ready": common_pb2.ASSET_STATUS_READY,
    "failed": common_pb2.ASSET_STATUS_FAILED,
    "deleted": common_pb2.ASSET_STATUS_DELETED,
}
JOB_STATE: dict[str, common_pb2.JobState.ValueType] = {
    "pending": common_pb2.JOB_STATE_PENDING,
    "queued": common_pb2.JOB_STATE_QUEUED,
    "running": common_pb2.JOB_STATE_RUNNING,
    "retrying": common_pb2.JOB_STATE_RETRYING,
    "done": common_pb2.JOB_STATE_DONE,
    "dead": common_pb2.JOB_STATE_DEAD,
}
POISON_REASON: dict[str, catalog_pb2.PoisonReason.ValueType] = {
    "retries_exhausted": catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
    "delivery_limit": catalog_pb2.POISON_REASON_DELIVERY_LIMIT,
}


def signed_hash(value: int) -> int:
    """uint64 -> the signed bigint PostgreSQL stores."""
    return value - (1 << 64) if value >= 1 << 63 else value


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def rendition_message(row: Record) -> common_pb2.Rendition:
    rendition = common_pb2.Rendition(
        asset_id=str(row["asset_id"]),
        preset=row["preset"],
        format=format_from_name(row["format"]),  # type: ignore[arg-type]
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        quality=row["quality"],
        create_time=timestamp(row["updated_at"]),
        min_ssim=row["min_ssim"],
    )
    if row["ssim"] is not None:
        rendition.scores.CopyFrom(
            common_pb2.QualityScores(
                psnr_db=row["psnr_db"] or 0.0,
                psnr_infinite=bool(row["psnr_infinite"]),
                ssim=row["ssim"],
                hash_distance=row["hash_distance"] or 0,
            )
        )
    return rendition


def asset_message(row: Record, renditions: Iterable[Record] = ()) -> common_pb2.Asset:
    asset = common_pb2.Asset(
        asset_id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        status=ASSET_STATUS[row["status"]],
        content_hash=row["content_hash"],
        perceptual_hash=format_hash(unsigned_hash(row["perceptual_hash"])),
        filename=row["filename"],
        declared_content_type=row["declared_content_type"],
        content_type=row["content_type"],
        format=format_from_name(row["format"]),  # type: ignore[arg-type]
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        frame_count=row["frame_count"],
        labels=row["labels"],
        renditions=[rendition_message(r) for r in renditions],
        create_time=timestamp(row["created_at"]),
        update_time=timestamp(row["updated_at"]),
        delete_time=timestamp(row["deleted_at"]),
        job_id=str(row["job_id"]) if row["job_id"] else "",
        upload_count=row["upload_count"],
    )
    if row["thumbhash"] or row["dominant_color"]:
        asset.placeholder.CopyFrom(
            common_pb2.Placeholder(
                thumbhash=row["thumbhash"] or "", dominant_color=row["dominant_color"] or ""
            )
        )
    return asset


def attempt_message(row: Record) -> common_pb2.JobAttempt:
    return common_pb2.JobAttempt(
        attempt=row["attempt"],
        start_time=timestamp(row["started_at"]),
        end_time=timestamp(row["finished_at"]),
        error=row["error"],
        worker=row["worker"],
        transient=row["transient"],
        repeats=row.get("repeats", 1),
        first_end_time=timestamp(row.get("first_finished_at")),
    )


def job_message(row: Record, attempts: Iterable[Record] = ()) -> common_pb2.Job:
    return common_pb2.Job(
        job_id=str(row["id"]),
        asset_id=str(row["asset_id"]),
        state=JOB_STATE[row["state"]],
        attempts=row["attempts"],
        last_error=row["last_error"],
        attempt_history=[attempt_message(a) for a in attempts],
        create_time=timestamp(row["created_at"]),
        update_time=timestamp(row["updated_at"]),
        publish_time=timestamp(row["published_at"]),
        finish_time=timestamp(row["finished_at"]),
        request_id=row["request_id"],
    )


def render_request_message(
    row: Record, attempts: Iterable[Record] = ()
) -> events_pb2.RenderRequest:
    return events_pb2.RenderRequest(
        attempts=[attempt_message(a) for a in attempts],
        job_id=str(row["job_id"]),
        tenant_id=str(row["tenant_id"]),
        asset_id=str(row["asset_id"]),
        original_key=row["original_key"],
        content_hash=row["content_hash"],
        source_format=format_from_name(row["format"]),  # type: ignore[arg-type]
        request_id=row["request_id"],
        enqueue_time=timestamp(row["created_at"]),
        interrupted=bool(row["interrupted"]),
    )


def poison_job_message(row: Record, attempts: Sequence[Record]) -> catalog_pb2.PoisonJob:
    return catalog_pb2.PoisonJob(
        poison_job_id=str(row["id"]),
        job_id=str(row["job_id"]),
        asset_id=str(row["asset_id"]),
        error=row["error"],
        reason=POISON_REASON[row["reason"]],
        attempts=[attempt_message(a) for a in attempts],
        request=events_pb2.RenderRequest.FromString(row["request"]),
        create_time=timestamp(row["created_at"]),
        replay_time=timestamp(row["replayed_at"]),
    )


def tenant_message(row: Record) -> common_pb2.Tenant:
    return common_pb2.Tenant(
        tenant_id=str(row["id"]), name=row["name"], create_time=timestamp(row["created_at"])
    )


def api_key_message(row: Record) -> common_pb2.ApiKey:
    return common_pb2.ApiKey(
        key_id=row["key_id"],
        tenant_id=str(row["tenant_id"]),
        label=row["label"],
        create_time=timestamp(row["created_at"]),
        revoke_time=timestamp(row["revoked_at"]),
    )


def rendition_record(row: Record) -> catalog_internal_pb2.RenditionRecord:
    return catalog_internal_pb2.RenditionRecord(
        rendition=rendition_message(row), object_key=row["object_key"]
    )
