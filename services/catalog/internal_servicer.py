"""CatalogInternalService: what the other services need from the database."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

from imagepipe.v1 import catalog_internal_pb2 as pb
from imagepipe.v1 import catalog_internal_pb2_grpc as pb_grpc
from imagepipe.v1 import events_pb2
from services.catalog import convert
from services.catalog.assets import asset_with_renditions, near_duplicates, parse_uuid
from services.catalog.internal_inputs import checked_completion, checked_registration
from services.catalog.repository import CatalogRepository, NewAsset, Record, RenditionRow
from services.catalog.tenants import KeyAuthenticator
from services.shared.errors import FailedPrecondition, InvalidArgument, NotFound
from services.shared.imaging.hashing import parse_hash
from services.shared.logs import request_id_var
from services.shared.settings import Settings

__all__ = ["CatalogInternalServicer"]

_POISON_REASON_NAMES = {v: k for k, v in convert.POISON_REASON.items()}
_MAX_CLAIM = 500
_MAX_LEASE_SECONDS = 3600


def _lease(seconds: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(max(seconds, 1), _MAX_LEASE_SECONDS))


class CatalogInternalServicer(pb_grpc.CatalogInternalServiceServicer):
    def __init__(
        self, repo: CatalogRepository, authenticator: KeyAuthenticator, settings: Settings
    ) -> None:
        self._repo = repo
        self._authenticator = authenticator
        self._threshold = settings.similarity_threshold
        self._delivery_limit = settings.delivery_limit

    async def Authenticate(
        self, request: pb.AuthenticateRequest, context: object
    ) -> pb.AuthenticateResponse:
        principal = await self._authenticator.authenticate(request.api_key)
        return pb.AuthenticateResponse(tenant_id=principal.tenant_id, key_id=principal.key_id)

    async def ResolveDuplicate(
        self, request: pb.ResolveDuplicateRequest, context: object
    ) -> pb.ResolveDuplicateResponse:
        tenant_id = parse_uuid(request.tenant_id, "tenant_id")
        # The upload's request id (forwarded by ingest): a retried upload is not its own duplicate.
        row = await self._repo.resolve_duplicate(
            tenant_id, request.content_hash, request_id=request_id_var.get()
        )
        if row is None:
            return pb.ResolveDuplicateResponse(found=False)
        return pb.ResolveDuplicateResponse(
            found=True,
            asset=await asset_with_renditions(self._repo, row),
            near_duplicates=await near_duplicates(
                self._repo, tenant_id, row["perceptual_hash"], self._threshold, exclude=row["id"]
            ),
        )

    async def RegisterAsset(
        self, request: pb.RegisterAssetRequest, context: object
    ) -> pb.RegisterAssetResponse:
        tenant_id = parse_uuid(request.tenant_id, "tenant_id")
        format_ = checked_registration(request)
        try:
            phash = convert.signed_hash(parse_hash(request.perceptual_hash))
        except ValueError as error:
            raise InvalidArgument(str(error), reason="INVALID_HASH") from None
        registration = await self._repo.register_asset(
            NewAsset(
                tenant_id=request.tenant_id,
                content_hash=request.content_hash,
                perceptual_hash=phash,
                filename=request.filename,
                declared_content_type=request.declared_content_type,
                content_type=request.content_type,
                format=format_,
                width=request.width,
                height=request.height,
                size_bytes=request.size_bytes,
                frame_count=request.frame_count or 1,
                labels=dict(request.labels),
                original_key=request.original_key,
                request_id=request.request_id,
            )
        )
        asset = registration.asset
        response = pb.RegisterAssetResponse(
            asset=await asset_with_renditions(self._repo, asset),
            created=registration.created,
            deferred=registration.deferred,
            near_duplicates=await near_duplicates(
                self._repo,
                tenant_id,
                asset["perceptual_hash"],
                self._threshold,
                exclude=asset["id"],
            ),
        )
        if registration.job is not None:
            response.job.CopyFrom(convert.job_message(registration.job))
            row = await self._repo.render_request_row(registration.job["id"])
            assert row is not None
            response.render_request.CopyFrom(convert.render_request_message(row))
        return response

    async def MarkJobPublished(
        self, request: pb.MarkJobPublishedRequest, context: object
    ) -> pb.MarkJobPublishedResponse:
        row = await self._repo.mark_job_published(parse_uuid(request.job_id, "job_id"))
        if row is None:
            raise NotFound(f"no job {request.job_id}", reason="JOB_NOT_FOUND")
        return pb.MarkJobPublishedResponse(job=convert.job_message(row))

    async def ClaimUnpublishedJobs(
        self, request: pb.ClaimUnpublishedJobsRequest, context: object
    ) -> pb.ClaimUnpublishedJobsResponse:
        rows = await self._repo.claim_unpublished(
            limit=min(request.limit or 1, _MAX_CLAIM),
            lease=_lease(request.lease_seconds),
            min_age=dt.timedelta(seconds=request.min_age_seconds),
            owner=request.owner,
            stuck_after=(
                dt.timedelta(seconds=request.stuck_after_seconds)
                if request.stuck_after_seconds
                else None
            ),
        )
        return pb.ClaimUnpublishedJobsResponse(render_requests=await self._with_attempts(rows))

    async def ClaimRenderJobs(
        self, request: pb.ClaimRenderJobsRequest, context: object
    ) -> pb.ClaimRenderJobsResponse:
        claimed = await self._repo.claim_for_render(
            limit=min(request.limit or 1, _MAX_CLAIM),
            lease=_lease(request.lease_seconds),
            owner=request.owner,
            delivery_limit=self._delivery_limit,
        )
        # Past the limit: poison, as the work queue dead-letters an over-delivered
        # message. Should this fail, the next claim finds them again.
        for over in await self._with_attempts(claimed.over_limit):
            if await self._repo.spare_bystander(uuid.UUID(over.job_id), self._delivery_limit):
                continue  # its deliveries start again: a later claim takes it, to run alone
            await self._repo.record_poison(
                uuid.UUID(over.job_id),
                "delivery_limit",
                f"claimed {self._delivery_limit + 1} times without an attempt being settled "
                "(the renderer crashed or was killed each time)",
                over.SerializeToString(),
            )
        return pb.ClaimRenderJobsResponse(render_requests=await self._with_attempts(claimed.jobs))

    async def _with_attempts(self, rows: list[Record]) -> list[events_pb2.RenderRequest]:
        """Render requests carrying the failed attempts of their current budget."""
        attempts: dict[uuid.UUID, list[Record]] = defaultdict(list)
        for attempt in await self._repo.failed_attempts([r["job_id"] for r in rows]):
            attempts[attempt["job_id"]].append(attempt)
        return [convert.render_request_message(r, attempts[r["job_id"]]) for r in rows]

    async def StartJobAttempt(
        self, request: pb.StartJobAttemptRequest, context: object
    ) -> pb.StartJobAttemptResponse:
        started = await self._repo.start_attempt(
            parse_uuid(request.job_id, "job_id"), request.worker, _lease(request.lease_seconds)
        )
        if started.job is None:
            raise NotFound(f"no job {request.job_id}", reason="JOB_NOT_FOUND")
        return pb.StartJobAttemptResponse(
            proceed=started.attempt > 0,
            job=convert.job_message(started.job),
            attempt=started.attempt,
        )

    async def CompleteJob(
        self, request: pb.CompleteJobRequest, context: object
    ) -> pb.CompleteJobResponse:
        job_id = parse_uuid(request.job_id, "job_id")
        formats = checked_completion(request)
        renditions = [
            RenditionRow(
                preset=r.rendition.preset,
                format=format_,
                object_key=r.object_key,
                width=r.rendition.width,
                height=r.rendition.height,
                size_bytes=r.rendition.size_bytes,
                quality=r.rendition.quality,
                psnr_db=r.rendition.scores.psnr_db if r.rendition.HasField("scores") else None,
                psnr_infinite=(
                    r.rendition.scores.psnr_infinite if r.rendition.HasField("scores") else None
                ),
                ssim=r.rendition.scores.ssim if r.rendition.HasField("scores") else None,
                hash_distance=(
                    r.rendition.scores.hash_distance if r.rendition.HasField("scores") else None
                ),
                min_ssim=r.rendition.min_ssim,
            )
            for r, format_ in zip(request.renditions, formats, strict=True)
        ]
        placeholder = request.placeholder if request.HasField("placeholder") else None
        row = await self._repo.complete_job(
            job_id,
            request.attempt,
            renditions,
            placeholder.thumbhash or None if placeholder else None,
            placeholder.dominant_color or None if placeholder else None,
        )
        if row is None:
            raise FailedPrecondition(
                f"job {request.job_id} is dead, unknown, or has a newer attempt than "
                f"{request.attempt}; this attempt's result is discarded",
                reason="JOB_NOT_RUNNABLE",
            )
        return pb.CompleteJobResponse(job=convert.job_message(row))

    async def FailJobAttempt(
        self, request: pb.FailJobAttemptRequest, context: object
    ) -> pb.FailJobAttemptResponse:
        job_id = parse_uuid(request.job_id, "job_id")
        row = await self._repo.fail_attempt(
            job_id,
            request.attempt,
            request.error[:4000],
            transient=request.transient,
            retry_after=(
                dt.timedelta(seconds=request.retry_after_seconds)
                if request.retry_after_seconds
                else None
            ),
            # Should this failure spend the budget, the catalog records the poison
            # job itself; this is its replayable request.
            poison_request=b""
            if request.transient
            else await self._poison_request(job_id, request),
        )
        if row is None:
            raise NotFound(f"no job {request.job_id}", reason="JOB_NOT_FOUND")
        return pb.FailJobAttemptResponse(job=convert.job_message(row))

    async def _poison_request(self, job_id: uuid.UUID, failed: pb.FailJobAttemptRequest) -> bytes:
        row = await self._repo.render_request_row(job_id)
        if row is None:
            return b""
        (message,) = await self._with_attempts([row])
        message.attempts.add(attempt=failed.attempt, error=failed.error[:2000])
        return message.SerializeToString()

    async def RecordPoisonJob(
        self, request: pb.RecordPoisonJobRequest, context: object
    ) -> pb.RecordPoisonJobResponse:
        reason = _POISON_REASON_NAMES.get(request.reason)
        if reason is None:
            raise InvalidArgument("reason must be set", reason="INVALID_POISON_REASON")
        job_id = parse_uuid(request.request.job_id, "request.job_id")
        if reason == "delivery_limit" and await self._repo.spare_bystander(
            job_id, self._delivery_limit
        ):
            return pb.RecordPoisonJobResponse(spared=True)
        row = await self._repo.record_poison(
            job_id, reason, request.error[:4000], request.request.SerializeToString()
        )
        if row is None:
            return pb.RecordPoisonJobResponse()
        attempts = await self._repo.list_attempts(row["tenant_id"], [job_id])
        return pb.RecordPoisonJobResponse(poison_job=convert.poison_job_message(row, attempts))

    async def GetAssetObjects(
        self, request: pb.GetAssetObjectsRequest, context: object
    ) -> pb.GetAssetObjectsResponse:
        tenant_id = parse_uuid(request.tenant_id, "tenant_id")
        row = await self._repo.get_asset(tenant_id, parse_uuid(request.asset_id, "asset_id"))
        if row is None:
            raise NotFound(f"no asset {request.asset_id}", reason="ASSET_NOT_FOUND")
        renditions = await self._repo.list_renditions(tenant_id, [row["id"]])
        return pb.GetAssetObjectsResponse(
            asset=convert.asset_message(row, renditions),
            original_key=row["original_key"],
            renditions=[convert.rendition_record(r) for r in renditions],
        )
