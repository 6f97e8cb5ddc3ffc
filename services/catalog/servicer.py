"""CatalogService: the tenant-facing reads. Translation only; logic lives in assets.py."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import catalog_pb2 as pb
from imagepipe.v1 import catalog_pb2_grpc as pb_grpc
from services.catalog import assets, poison
from services.catalog.purge import run_purge
from services.catalog.renditions import choose_rendition
from services.catalog.repository import CatalogRepository
from services.catalog.watch import AssetWatchHub
from services.shared.auth import current_tenant_id
from services.shared.errors import InvalidArgument, NotFound, Unavailable
from services.shared.settings import Settings
from services.shared.spool import MAX_CHUNK_BYTES
from services.shared.storage import ObjectNotFound, ObjectStore

__all__ = ["CatalogServicer"]

MAX_URL_TTL_SECONDS = 7 * 86400
FINAL_STATUSES = ("ready", "failed", "deleted")


def _tenant() -> uuid.UUID:
    return uuid.UUID(current_tenant_id())


class CatalogServicer(pb_grpc.CatalogServiceServicer):
    def __init__(
        self,
        repo: CatalogRepository,
        store: ObjectStore,
        watch: AssetWatchHub,
        settings: Settings,
    ) -> None:
        self._repo = repo
        self._store = store
        self._watch = watch
        self._settings = settings

    async def GetAsset(self, request: pb.GetAssetRequest, context: object) -> pb.GetAssetResponse:
        return pb.GetAssetResponse(
            asset=await assets.get_asset(self._repo, _tenant(), request.asset_id)
        )

    async def ListAssets(
        self, request: pb.ListAssetsRequest, context: object
    ) -> pb.ListAssetsResponse:
        page, token = await assets.list_assets(
            self._repo, _tenant(), request.status, request.page_size, request.page_token
        )
        return pb.ListAssetsResponse(assets=page, next_page_token=token)

    async def GetJob(self, request: pb.GetJobRequest, context: object) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=await assets.get_job(self._repo, _tenant(), request.job_id))

    async def WatchAsset(
        self, request: pb.WatchAssetRequest, context: object
    ) -> AsyncIterator[pb.WatchAssetResponse]:
        tenant_id = _tenant()
        asset_id = assets.parse_uuid(request.asset_id, "asset_id")
        # Subscribe before the first read, so no change can slip between the two.
        with self._watch.subscribe(asset_id) as changed:
            last = None
            while True:
                row = await self._repo.get_asset(tenant_id, asset_id, include_deleted=True)
                if row is None:
                    raise NotFound(f"no asset {request.asset_id}", reason="ASSET_NOT_FOUND")
                if row["status"] != last:
                    last = row["status"]
                    yield pb.WatchAssetResponse(
                        asset=await assets.asset_with_renditions(self._repo, row)
                    )
                if last in FINAL_STATUSES:
                    return
                await changed.wait()
                changed.clear()

    async def DeleteAsset(
        self, request: pb.DeleteAssetRequest, context: object
    ) -> pb.DeleteAssetResponse:
        return pb.DeleteAssetResponse(
            asset=await assets.delete_asset(self._repo, _tenant(), request.asset_id)
        )

    async def FindSimilar(
        self, request: pb.FindSimilarRequest, context: object
    ) -> pb.FindSimilarResponse:
        found = await assets.find_similar(
            self._repo, _tenant(), request, self._settings.similarity_threshold
        )
        return pb.FindSimilarResponse(assets=found)

    async def GetRendition(
        self, request: pb.GetRenditionRequest, context: object
    ) -> pb.GetRenditionResponse:
        ttl = request.url_ttl_seconds or self._settings.presign_ttl_seconds
        if ttl > MAX_URL_TTL_SECONDS:
            raise InvalidArgument(
                f"url_ttl_seconds is at most {MAX_URL_TTL_SECONDS} (7 days)", reason="INVALID_TTL"
            )
        chosen = await choose_rendition(
            self._repo, _tenant(), request.asset_id, request.preset, request.accept_formats
        )
        lifetime = dt.timedelta(seconds=ttl)
        expires = Timestamp()
        expires.FromDatetime(dt.datetime.now(dt.UTC) + lifetime)
        return pb.GetRenditionResponse(
            rendition=chosen.rendition,
            url=await self._store.presigned_get(chosen.object_key, lifetime),
            url_expire_time=expires,
        )

    async def ReadRendition(
        self, request: pb.ReadRenditionRequest, context: object
    ) -> AsyncIterator[pb.ReadRenditionResponse]:
        chosen = await choose_rendition(
            self._repo, _tenant(), request.asset_id, request.preset, request.accept_formats
        )
        yield pb.ReadRenditionResponse(rendition=chosen.rendition)
        try:
            async for chunk in self._store.iter_chunks(chosen.object_key, MAX_CHUNK_BYTES):
                yield pb.ReadRenditionResponse(chunk=chunk)
        except ObjectNotFound as missing:
            # A row without its object: report it as a dependency fault, not a bug.
            raise Unavailable(missing.message, reason=missing.reason) from None

    async def ListJobs(self, request: pb.ListJobsRequest, context: object) -> pb.ListJobsResponse:
        jobs, token = await assets.list_jobs(
            self._repo,
            _tenant(),
            state=request.state,
            asset_id=request.asset_id,
            requested_size=request.page_size,
            token=request.page_token,
        )
        return pb.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def ListPoisonJobs(
        self, request: pb.ListPoisonJobsRequest, context: object
    ) -> pb.ListPoisonJobsResponse:
        page, token = await poison.list_poison_jobs(
            self._repo, _tenant(), request.include_replayed, request.page_size, request.page_token
        )
        return pb.ListPoisonJobsResponse(poison_jobs=page, next_page_token=token)

    async def RetryPoisonJob(
        self, request: pb.RetryPoisonJobRequest, context: object
    ) -> pb.RetryPoisonJobResponse:
        replayed, job = await poison.retry_poison_job(self._repo, _tenant(), request.poison_job_id)
        return pb.RetryPoisonJobResponse(poison_job=replayed, job=job)

    async def GetTenantMetrics(
        self, request: pb.GetTenantMetricsRequest, context: object
    ) -> pb.GetTenantMetricsResponse:
        tenant_id = _tenant()
        return assets.metrics_message(tenant_id, await self._repo.tenant_metrics(tenant_id))

    async def Purge(self, request: pb.PurgeRequest, context: object) -> pb.PurgeResponse:
        return await run_purge(
            self._repo,
            self._store,
            _tenant(),
            dry_run=request.dry_run if request.HasField("dry_run") else True,
            older_than_days=(
                request.older_than_days
                if request.HasField("older_than_days")
                else self._settings.purge_days
            ),
            rendition_grace=dt.timedelta(seconds=self._settings.purge_rendition_grace_seconds),
        )
