"""Model objects to protobuf messages and back: the only place that builds the
catalog's messages, and the enums stored as text on one side and numbers on the other."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import catalog_internal_pb2, catalog_pb2, common_pb2, events_pb2, renderer_pb2
from services.catalog.model import (
    TENANT_SETTING_NAMES,
    ApiKey,
    AssetStatus,
    AssetWithRenditions,
    Attempt,
    Backfill,
    BackfillScope,
    FocalPoint,
    Job,
    JobState,
    NewAsset,
    NewRendition,
    PoisonJobWithAttempts,
    PoisonReason,
    PurgeItem,
    PurgeItemKind,
    PurgeReport,
    RenderRequest,
    Rendition,
    SigningKey,
    SimilarAsset,
    Tenant,
    TenantMetrics,
    TenantSettings,
)
from services.catalog.usecases.delivery import version_of
from services.shared.imaging.formats import ACCEPTED, format_from_name, format_name
from services.shared.imaging.hashing import format_hash
from services.shared.metadata_wire import metadata_from_message, metadata_message
from services.shared.preset_wire import preset_messages

__all__ = [
    "ASSET_STATUS",
    "BACKFILL_SCOPE",
    "JOB_STATE",
    "POISON_REASON",
    "PURGE_ITEM_KIND",
    "api_key_message",
    "asset_message",
    "attempt_message",
    "backfill_message",
    "deliverable_rendition",
    "encode_request",
    "focal_point_message",
    "job_message",
    "metrics_message",
    "new_asset",
    "new_renditions",
    "poison_job_message",
    "preset_fields",
    "purge_response",
    "render_request_message",
    "rendition_message",
    "rendition_record",
    "signing_key_message",
    "similar_messages",
    "tenant_message",
    "tenant_settings",
    "tenant_settings_message",
    "timestamp",
]

ASSET_STATUS: dict[AssetStatus, common_pb2.AssetStatus.ValueType] = {
    AssetStatus.PENDING: common_pb2.ASSET_STATUS_PENDING,
    AssetStatus.PROCESSING: common_pb2.ASSET_STATUS_PROCESSING,
    AssetStatus.READY: common_pb2.ASSET_STATUS_READY,
    AssetStatus.FAILED: common_pb2.ASSET_STATUS_FAILED,
    AssetStatus.DELETED: common_pb2.ASSET_STATUS_DELETED,
}
JOB_STATE: dict[JobState, common_pb2.JobState.ValueType] = {
    JobState.PENDING: common_pb2.JOB_STATE_PENDING,
    JobState.QUEUED: common_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: common_pb2.JOB_STATE_RUNNING,
    JobState.RETRYING: common_pb2.JOB_STATE_RETRYING,
    JobState.DONE: common_pb2.JOB_STATE_DONE,
    JobState.DEAD: common_pb2.JOB_STATE_DEAD,
}
POISON_REASON: dict[PoisonReason, catalog_pb2.PoisonReason.ValueType] = {
    PoisonReason.RETRIES_EXHAUSTED: catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
    PoisonReason.DELIVERY_LIMIT: catalog_pb2.POISON_REASON_DELIVERY_LIMIT,
}
PURGE_ITEM_KIND: dict[PurgeItemKind, catalog_pb2.PurgeItemKind.ValueType] = {
    PurgeItemKind.DELETED_ORIGINAL: catalog_pb2.PURGE_ITEM_KIND_DELETED_ORIGINAL,
    PurgeItemKind.DELETED_RENDITION: catalog_pb2.PURGE_ITEM_KIND_DELETED_RENDITION,
    PurgeItemKind.ORPHAN_OBJECT: catalog_pb2.PURGE_ITEM_KIND_ORPHAN_OBJECT,
}


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _image_format(name: str) -> common_pb2.ImageFormat.ValueType:
    return common_pb2.ImageFormat.ValueType(format_from_name(name))


def _id(value: uuid.UUID | None) -> str:
    return str(value) if value else ""


# Tenants and keys ----------------------------------------------------------------


def tenant_message(tenant: Tenant) -> common_pb2.Tenant:
    return common_pb2.Tenant(
        tenant_id=str(tenant.id), name=tenant.name, create_time=timestamp(tenant.created_at)
    )


def api_key_message(key: ApiKey) -> common_pb2.ApiKey:
    return common_pb2.ApiKey(
        key_id=key.key_id,
        tenant_id=str(key.tenant_id),
        label=key.label,
        create_time=timestamp(key.created_at),
        revoke_time=timestamp(key.revoked_at),
    )


def signing_key_message(key: SigningKey) -> common_pb2.SigningKey:
    return common_pb2.SigningKey(
        key_id=key.key_id,
        label=key.label,
        create_time=timestamp(key.created_at),
        revoke_time=timestamp(key.revoked_at),
    )


def tenant_settings_message(settings: TenantSettings) -> common_pb2.TenantSettings:
    # The message's fields are the model's, by name (model.TenantSettings).
    return common_pb2.TenantSettings(**dataclasses.asdict(settings))


def tenant_settings(message: common_pb2.TenantSettings) -> TenantSettings:
    return TenantSettings(**{name: getattr(message, name) for name in TENANT_SETTING_NAMES})


# Assets and renditions -------------------------------------------------------------


def _scores(rendition: Rendition) -> common_pb2.QualityScores | None:
    """Scores are recorded together, or not at all (SSIM is always among them)."""
    if rendition.ssim is None:
        return None
    return common_pb2.QualityScores(
        psnr_db=rendition.psnr_db or 0.0,
        psnr_infinite=bool(rendition.psnr_infinite),
        ssim=rendition.ssim,
        hash_distance=rendition.hash_distance or 0,
    )


def rendition_message(rendition: Rendition) -> common_pb2.Rendition:
    return common_pb2.Rendition(
        asset_id=str(rendition.asset_id),
        preset=rendition.preset,
        format=_image_format(rendition.format),
        width=rendition.width,
        height=rendition.height,
        size_bytes=rendition.size_bytes,
        quality=rendition.quality,
        create_time=timestamp(rendition.updated_at),
        min_ssim=rendition.min_ssim,
        scores=_scores(rendition),
        content_hash=rendition.content_sha256 or "",
        version=version_of(rendition),
        preset_version=rendition.preset_version,
    )


def rendition_record(rendition: Rendition) -> catalog_internal_pb2.RenditionRecord:
    return catalog_internal_pb2.RenditionRecord(
        rendition=rendition_message(rendition), object_key=rendition.object_key
    )


def deliverable_rendition(rendition: Rendition) -> catalog_internal_pb2.DeliverableRendition:
    return catalog_internal_pb2.DeliverableRendition(
        format=_image_format(rendition.format),
        object_key=rendition.object_key,
        content_hash=rendition.content_sha256 or "",
        version=version_of(rendition),
        size_bytes=rendition.size_bytes,
        width=rendition.width,
        height=rendition.height,
        content_type=ACCEPTED[rendition.format.upper()].mime,
    )


def asset_message(found: AssetWithRenditions) -> common_pb2.Asset:
    asset = found.asset
    placeholder = None
    if asset.thumbhash or asset.dominant_color:
        placeholder = common_pb2.Placeholder(
            thumbhash=asset.thumbhash or "", dominant_color=asset.dominant_color or ""
        )
    return common_pb2.Asset(
        asset_id=str(asset.id),
        tenant_id=str(asset.tenant_id),
        status=ASSET_STATUS[asset.status],
        content_hash=asset.content_hash,
        perceptual_hash=format_hash(asset.perceptual_hash),
        filename=asset.filename,
        declared_content_type=asset.declared_content_type,
        content_type=asset.content_type,
        format=_image_format(asset.format),
        width=asset.width,
        height=asset.height,
        size_bytes=asset.size_bytes,
        frame_count=asset.frame_count,
        labels=asset.labels,
        renditions=[rendition_message(r) for r in found.renditions],
        create_time=timestamp(asset.created_at),
        update_time=timestamp(asset.updated_at),
        delete_time=timestamp(asset.deleted_at),
        job_id=_id(asset.job_id),
        upload_count=asset.upload_count,
        placeholder=placeholder,
        metadata=metadata_message(asset.metadata),
        focal_point=focal_point_message(asset.focal_point),
    )


def focal_point_message(point: FocalPoint | None) -> common_pb2.FocalPoint | None:
    return None if point is None else common_pb2.FocalPoint(x=point.x, y=point.y)


def similar_messages(found: Iterable[SimilarAsset]) -> list[common_pb2.SimilarAsset]:
    return [
        common_pb2.SimilarAsset(
            asset_id=str(s.asset_id),
            perceptual_hash=format_hash(s.perceptual_hash),
            distance=s.distance,
        )
        for s in found
    ]


def new_asset(
    request: catalog_internal_pb2.RegisterAssetRequest,
    *,
    tenant_id: uuid.UUID,
    image_format: str,
    perceptual_hash: int,
) -> NewAsset:
    return NewAsset(
        tenant_id=tenant_id,
        content_hash=request.content_hash,
        perceptual_hash=perceptual_hash,
        filename=request.filename,
        declared_content_type=request.declared_content_type,
        content_type=request.content_type,
        format=image_format,
        width=request.width,
        height=request.height,
        size_bytes=request.size_bytes,
        frame_count=request.frame_count or 1,
        labels=dict(request.labels),
        original_key=request.original_key,
        request_id=request.request_id,
        metadata=metadata_from_message(request.metadata),
    )


def new_renditions(
    request: catalog_internal_pb2.CompleteJobRequest, formats: Sequence[str]
) -> list[NewRendition]:
    """The renditions a completion records; `formats`: each one's format name."""
    made = []
    for record, image_format in zip(request.renditions, formats, strict=True):
        rendition = record.rendition
        scores = rendition.scores if rendition.HasField("scores") else None
        made.append(
            NewRendition(
                preset=rendition.preset,
                format=image_format,
                object_key=record.object_key,
                width=rendition.width,
                height=rendition.height,
                size_bytes=rendition.size_bytes,
                quality=rendition.quality,
                psnr_db=scores.psnr_db if scores else None,
                psnr_infinite=scores.psnr_infinite if scores else None,
                ssim=scores.ssim if scores else None,
                hash_distance=scores.hash_distance if scores else None,
                min_ssim=rendition.min_ssim,
                content_sha256=rendition.content_hash or None,
                preset_version=rendition.preset_version,
            )
        )
    return made


# Jobs and poison jobs --------------------------------------------------------------


def attempt_message(attempt: Attempt) -> common_pb2.JobAttempt:
    return common_pb2.JobAttempt(
        attempt=attempt.attempt,
        start_time=timestamp(attempt.started_at),
        end_time=timestamp(attempt.finished_at),
        error=attempt.error,
        worker=attempt.worker,
        transient=attempt.transient,
        repeats=attempt.repeats,
        first_end_time=timestamp(attempt.first_finished_at),
    )


def job_message(job: Job, attempts: Iterable[Attempt] = ()) -> common_pb2.Job:
    return common_pb2.Job(
        job_id=str(job.id),
        asset_id=str(job.asset_id),
        state=JOB_STATE[job.state],
        attempts=job.attempts,
        last_error=job.last_error,
        attempt_history=[attempt_message(a) for a in attempts],
        create_time=timestamp(job.created_at),
        update_time=timestamp(job.updated_at),
        publish_time=timestamp(job.published_at),
        finish_time=timestamp(job.finished_at),
        request_id=job.request_id,
    )


def render_request_message(
    request: RenderRequest, attempts: Iterable[Attempt] = ()
) -> events_pb2.RenderRequest:
    return events_pb2.RenderRequest(
        attempts=[attempt_message(a) for a in attempts],
        job_id=str(request.job_id),
        tenant_id=str(request.tenant_id),
        asset_id=str(request.asset_id),
        original_key=request.original_key,
        content_hash=request.content_hash,
        source_format=_image_format(request.format),
        request_id=request.request_id,
        enqueue_time=timestamp(request.created_at),
        interrupted=request.interrupted,
        presets=preset_messages(request.presets),
        focal_point=focal_point_message(request.focal_point),
    )


def encode_request(
    request: RenderRequest,
    attempts: Sequence[Attempt],
    *,
    failed: tuple[int, str] | None = None,
) -> bytes:
    """ports.RequestEncoder: the render request a poison job keeps for replay."""
    message = render_request_message(request, attempts)
    if failed is not None:
        attempt, error = failed
        message.attempts.add(attempt=attempt, error=error)
    return message.SerializeToString()


def poison_job_message(found: PoisonJobWithAttempts) -> catalog_pb2.PoisonJob:
    poison = found.poison_job
    return catalog_pb2.PoisonJob(
        poison_job_id=str(poison.id),
        job_id=str(poison.job_id),
        asset_id=str(poison.asset_id),
        error=poison.error,
        reason=POISON_REASON[poison.reason],
        attempts=[attempt_message(a) for a in found.attempts],
        request=events_pb2.RenderRequest.FromString(poison.request),
        create_time=timestamp(poison.created_at),
        replay_time=timestamp(poison.replayed_at),
    )


# Usage and purge -------------------------------------------------------------------


def metrics_message(
    tenant_id: uuid.UUID, metrics: TenantMetrics
) -> catalog_pb2.GetTenantMetricsResponse:
    return catalog_pb2.GetTenantMetricsResponse(
        tenant_id=str(tenant_id),
        asset_count=metrics.asset_count,
        assets_by_status=[
            catalog_pb2.AssetStatusCount(status=ASSET_STATUS[AssetStatus(s)], count=n)
            for s, n in sorted(metrics.assets_by_status.items())
        ],
        rendition_count=metrics.rendition_count,
        original_bytes=metrics.original_bytes,
        rendition_bytes=metrics.rendition_bytes,
        logical_bytes=metrics.logical_bytes,
        physical_bytes=metrics.physical_bytes,
        deduplicated_uploads=metrics.deduplicated_uploads,
        jobs_by_state=[
            catalog_pb2.JobStateCount(state=JOB_STATE[JobState(s)], count=n)
            for s, n in sorted(metrics.jobs_by_state.items())
        ],
        poison_job_count=metrics.poison_job_count,
        renditions_by_format=[
            catalog_pb2.FormatBytes(format=_image_format(f), count=count, size_bytes=size)
            for f, (count, size) in sorted(metrics.renditions_by_format.items())
        ],
    )


def _purge_item(item: PurgeItem) -> catalog_pb2.PurgeItem:
    return catalog_pb2.PurgeItem(
        kind=PURGE_ITEM_KIND[item.kind],
        object_key=item.object_key,
        size_bytes=item.size_bytes,
        asset_id=_id(item.asset_id),
        modify_time=timestamp(item.modified),
    )


def purge_response(report: PurgeReport) -> catalog_pb2.PurgeResponse:
    return catalog_pb2.PurgeResponse(
        dry_run=report.dry_run,
        cutoff_time=timestamp(report.cutoff),
        items=[_purge_item(i) for i in report.items],
        object_count=len(report.items),
        bytes_freed=report.bytes_freed,
        asset_rows_removed=report.asset_rows_removed,
    )


# Presets and backfills -------------------------------------------------------------

BACKFILL_SCOPE: dict[BackfillScope, catalog_pb2.BackfillScope.ValueType] = {
    BackfillScope.ALL: catalog_pb2.BACKFILL_SCOPE_ALL,
    BackfillScope.MISSING: catalog_pb2.BACKFILL_SCOPE_MISSING,
    BackfillScope.OUTDATED: catalog_pb2.BACKFILL_SCOPE_OUTDATED,
    BackfillScope.ASSET_IDS: catalog_pb2.BACKFILL_SCOPE_ASSET_IDS,
}
# Wire enums to the model's names; zero values mean the defaults (as in preset_wire).
_FIT_NAMES = {
    common_pb2.FIT_UNSPECIFIED: "inside",
    common_pb2.FIT_INSIDE: "inside",
    common_pb2.FIT_COVER: "cover",
}
_GRAVITY_NAMES = {
    common_pb2.GRAVITY_UNSPECIFIED: "centre",
    common_pb2.GRAVITY_CENTRE: "centre",
    common_pb2.GRAVITY_ENTROPY: "entropy",
    common_pb2.GRAVITY_ATTENTION: "attention",
    common_pb2.GRAVITY_FOCAL: "focal",
}
_CHROMA_NAMES = {
    common_pb2.CHROMA_SUBSAMPLING_UNSPECIFIED: "4:2:0",
    common_pb2.CHROMA_SUBSAMPLING_420: "4:2:0",
    common_pb2.CHROMA_SUBSAMPLING_444: "4:4:4",
}


def _format_value(value: int) -> object:
    """An image format's name; a value this build does not know stays a number (the
    Preset model then refuses it, naming the field)."""
    unset = value == common_pb2.IMAGE_FORMAT_UNSPECIFIED
    known = value in common_pb2.ImageFormat.values() and not unset
    return format_name(value) if known else value


def preset_fields(message: renderer_pb2.Preset, *, creating: bool) -> dict[str, object]:
    """A Preset message as the model's field values, for the use case to check. When
    `creating`, an unset quality or an empty format list means the default."""
    fields: dict[str, object] = {
        "name": message.name,
        "max_width": message.max_width,
        "max_height": message.max_height,
        "formats": [_format_value(f) for f in message.formats],
        "quality": message.quality,
        "min_ssim": message.min_ssim,
        "fit": _FIT_NAMES.get(message.fit, message.fit),
        "gravity": _GRAVITY_NAMES.get(message.gravity, message.gravity),
        "chroma_subsampling": _CHROMA_NAMES.get(
            message.chroma_subsampling, message.chroma_subsampling
        ),
    }
    if creating:
        if not message.quality:
            del fields["quality"]
        if not message.formats:
            del fields["formats"]
    return fields


def backfill_message(backfill: Backfill) -> catalog_pb2.Backfill:
    return catalog_pb2.Backfill(
        backfill_id=str(backfill.id),
        scope=BACKFILL_SCOPE[backfill.scope],
        preset=backfill.preset,
        state=(
            catalog_pb2.BACKFILL_STATE_FINISHED
            if backfill.finished
            else catalog_pb2.BACKFILL_STATE_RUNNING
        ),
        total=backfill.total,
        done=backfill.done,
        failed=backfill.failed,
        create_time=timestamp(backfill.created_at),
        finish_time=timestamp(backfill.finished_at),
    )
