"""CatalogInternalService: what the other services need from the catalog. Translation
only: request in, use case, message out."""

from __future__ import annotations

import datetime as dt

from imagepipe.v1 import catalog_internal_pb2 as pb
from imagepipe.v1 import catalog_internal_pb2_grpc as pb_grpc
from imagepipe.v1 import common_pb2, events_pb2
from services.catalog.api import convert, requests
from services.catalog.api.convert import asset_message, job_message
from services.catalog.model import RenderRequestWithAttempts
from services.catalog.ports import Stores
from services.catalog.usecases import assets, delivery, jobs
from services.catalog.usecases.tenants import KeyAuthenticator
from services.shared.logs import request_id_var
from services.shared.settings import Settings

__all__ = ["CatalogInternalServicer"]


def _requests(claimed: list[RenderRequestWithAttempts]) -> list[events_pb2.RenderRequest]:
    return [convert.render_request_message(c.request, c.attempts) for c in claimed]


class CatalogInternalServicer(pb_grpc.CatalogInternalServiceServicer):
    def __init__(self, stores: Stores, authenticator: KeyAuthenticator, settings: Settings) -> None:
        self._stores = stores
        self._authenticator = authenticator
        self._threshold = settings.similarity_threshold
        self._delivery_limit = settings.delivery_limit
        self._pepper = settings.key_pepper.get_secret_value()

    async def Authenticate(
        self, request: pb.AuthenticateRequest, context: object
    ) -> pb.AuthenticateResponse:
        principal = await self._authenticator.authenticate(request.api_key)
        return pb.AuthenticateResponse(tenant_id=principal.tenant_id, key_id=principal.key_id)

    async def ResolveDuplicate(
        self, request: pb.ResolveDuplicateRequest, context: object
    ) -> pb.ResolveDuplicateResponse:
        found = await assets.resolve_duplicate(
            self._stores.assets,
            tenant_id=requests.parse_uuid(request.tenant_id, "tenant_id"),
            content_hash=request.content_hash,
            # The upload's request id (forwarded by ingest): a retried upload is not
            # its own duplicate.
            request_id=request_id_var.get(),
            similarity_threshold=self._threshold,
        )
        if found is None:
            return pb.ResolveDuplicateResponse(found=False)
        return pb.ResolveDuplicateResponse(
            found=True,
            asset=asset_message(found.asset),
            near_duplicates=convert.similar_messages(found.near_duplicates),
        )

    async def RegisterAsset(
        self, request: pb.RegisterAssetRequest, context: object
    ) -> pb.RegisterAssetResponse:
        tenant_id = requests.parse_uuid(request.tenant_id, "tenant_id")
        image_format, perceptual_hash = requests.checked_registration(request)
        registered = await assets.register_asset(
            self._stores.assets,
            self._stores.jobs,
            new=convert.new_asset(
                request,
                tenant_id=tenant_id,
                image_format=image_format,
                perceptual_hash=perceptual_hash,
            ),
            similarity_threshold=self._threshold,
        )
        return pb.RegisterAssetResponse(
            asset=asset_message(registered.asset),
            created=registered.created,
            deferred=registered.deferred,
            near_duplicates=convert.similar_messages(registered.near_duplicates),
            job=job_message(registered.job) if registered.job else None,
            render_request=(
                convert.render_request_message(registered.render_request)
                if registered.render_request
                else None
            ),
        )

    async def MarkJobPublished(
        self, request: pb.MarkJobPublishedRequest, context: object
    ) -> pb.MarkJobPublishedResponse:
        job = await jobs.mark_published(
            self._stores.jobs, job_id=requests.parse_uuid(request.job_id, "job_id")
        )
        return pb.MarkJobPublishedResponse(job=job_message(job))

    async def ClaimUnpublishedJobs(
        self, request: pb.ClaimUnpublishedJobsRequest, context: object
    ) -> pb.ClaimUnpublishedJobsResponse:
        claimed = await jobs.claim_unpublished(
            self._stores.jobs,
            limit=requests.claim_limit(request.limit),
            lease=requests.lease(request.lease_seconds),
            min_age=dt.timedelta(seconds=request.min_age_seconds),
            owner=request.owner,
            stuck_after=requests.optional_seconds(request.stuck_after_seconds),
        )
        return pb.ClaimUnpublishedJobsResponse(render_requests=_requests(claimed))

    async def ClaimRenderJobs(
        self, request: pb.ClaimRenderJobsRequest, context: object
    ) -> pb.ClaimRenderJobsResponse:
        claimed = await jobs.claim_for_render(
            self._stores.jobs,
            self._stores.poison,
            convert.encode_request,
            limit=requests.claim_limit(request.limit),
            lease=requests.lease(request.lease_seconds),
            owner=request.owner,
            delivery_limit=self._delivery_limit,
        )
        return pb.ClaimRenderJobsResponse(render_requests=_requests(claimed))

    async def StartJobAttempt(
        self, request: pb.StartJobAttemptRequest, context: object
    ) -> pb.StartJobAttemptResponse:
        job, attempt = await jobs.start_attempt(
            self._stores.jobs,
            job_id=requests.parse_uuid(request.job_id, "job_id"),
            worker=request.worker,
            lease=requests.lease(request.lease_seconds),
        )
        return pb.StartJobAttemptResponse(
            proceed=attempt > 0, job=job_message(job), attempt=attempt
        )

    async def CompleteJob(
        self, request: pb.CompleteJobRequest, context: object
    ) -> pb.CompleteJobResponse:
        job_id = requests.parse_uuid(request.job_id, "job_id")
        formats = requests.checked_completion(request)
        placeholder = request.placeholder if request.HasField("placeholder") else None
        job = await jobs.complete_job(
            self._stores.jobs,
            job_id=job_id,
            attempt=request.attempt,
            renditions=convert.new_renditions(request, formats),
            thumbhash=placeholder.thumbhash or None if placeholder else None,
            dominant_color=placeholder.dominant_color or None if placeholder else None,
        )
        return pb.CompleteJobResponse(job=job_message(job))

    async def FailJobAttempt(
        self, request: pb.FailJobAttemptRequest, context: object
    ) -> pb.FailJobAttemptResponse:
        job = await jobs.fail_attempt(
            self._stores.jobs,
            convert.encode_request,
            job_id=requests.parse_uuid(request.job_id, "job_id"),
            attempt=request.attempt,
            error=request.error,
            transient=request.transient,
            retry_after=requests.optional_seconds(request.retry_after_seconds),
        )
        return pb.FailJobAttemptResponse(job=job_message(job))

    async def RecordPoisonJob(
        self, request: pb.RecordPoisonJobRequest, context: object
    ) -> pb.RecordPoisonJobResponse:
        reason = requests.poison_reason(request.reason)
        recorded = await jobs.record_poison(
            self._stores.jobs,
            self._stores.poison,
            job_id=requests.parse_uuid(request.request.job_id, "request.job_id"),
            reason=reason,
            error=request.error,
            request=request.request.SerializeToString(),
            delivery_limit=self._delivery_limit,
        )
        if recorded.poison_job is None:
            return pb.RecordPoisonJobResponse(spared=recorded.spared)
        return pb.RecordPoisonJobResponse(
            poison_job=convert.poison_job_message(recorded.poison_job)
        )

    async def GetAssetObjects(
        self, request: pb.GetAssetObjectsRequest, context: object
    ) -> pb.GetAssetObjectsResponse:
        tenant_id = requests.parse_uuid(request.tenant_id, "tenant_id")
        found = await assets.get_asset(
            self._stores.assets,
            tenant_id=tenant_id,
            asset_id=requests.parse_uuid(request.asset_id, "asset_id"),
        )
        return pb.GetAssetObjectsResponse(
            asset=asset_message(found),
            original_key=found.asset.original_key,
            renditions=[convert.rendition_record(r) for r in found.renditions],
        )

    async def GetDeliveryAccess(
        self, request: pb.GetDeliveryAccessRequest, context: object
    ) -> pb.GetDeliveryAccessResponse:
        access = await delivery.delivery_access(
            self._stores.tenants,
            tenant_id=requests.parse_uuid(request.tenant_id, "tenant_id"),
            key_id=request.key_id,
            pepper=self._pepper,
        )
        return pb.GetDeliveryAccessResponse(
            tenant_found=access.tenant_found,
            unsigned_delivery=access.unsigned_delivery,
            key_secret=access.key_secret,
        )

    async def ResolveDelivery(
        self, request: pb.ResolveDeliveryRequest, context: object
    ) -> pb.ResolveDeliveryResponse:
        resolved = await delivery.resolve_delivery(
            self._stores.assets,
            tenant_id=requests.parse_uuid(request.tenant_id, "tenant_id"),
            asset_id=requests.parse_uuid(request.asset_id, "asset_id"),
            preset=requests.preset_name(request.preset),
            accept=[requests.known_format(f, "accept_formats") for f in request.accept_formats],
        )
        return pb.ResolveDeliveryResponse(
            status=(
                convert.ASSET_STATUS[resolved.status]
                if resolved.status is not None
                else common_pb2.ASSET_STATUS_UNSPECIFIED
            ),
            renditions=[convert.deliverable_rendition(r) for r in resolved.renditions],
            preset_version=resolved.preset_version,
        )
