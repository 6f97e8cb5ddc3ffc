"""CatalogService: the tenant-facing calls. Translation only: request in, use case,
message out."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import aclosing

from imagepipe.v1 import catalog_pb2 as pb
from imagepipe.v1 import catalog_pb2_grpc as pb_grpc
from services.catalog.api import convert, requests
from services.catalog.api.convert import asset_message, job_message, poison_job_message
from services.catalog.model import Rendition
from services.catalog.ports import AssetWatch, Stores
from services.catalog.usecases import (
    assets,
    backfills,
    delivery,
    jobs,
    poison,
    presets,
    purge,
    signing_keys,
    similar,
    tenants,
)
from services.catalog.usecases.renditions import choose_rendition
from services.shared.errors import Unavailable
from services.shared.preset_wire import preset_message, preset_messages
from services.shared.settings import Settings
from services.shared.spool import MAX_CHUNK_BYTES
from services.shared.storage import ObjectNotFound, ObjectStore

__all__ = ["CatalogServicer"]


class CatalogServicer(pb_grpc.CatalogServiceServicer):
    def __init__(
        self, stores: Stores, objects: ObjectStore, watch: AssetWatch, settings: Settings
    ) -> None:
        self._stores = stores
        self._objects = objects
        self._watch = watch
        self._settings = settings
        self._pepper = settings.key_pepper.get_secret_value()
        self._signing = delivery.UrlSigning(settings.delivery_public_url, self._pepper)

    async def GetAsset(self, request: pb.GetAssetRequest, context: object) -> pb.GetAssetResponse:
        tenant_id = requests.tenant()
        asset_id = requests.parse_uuid(request.asset_id, "asset_id")
        found = await assets.get_asset(self._stores.assets, tenant_id=tenant_id, asset_id=asset_id)
        return pb.GetAssetResponse(asset=asset_message(found))

    async def ListAssets(
        self, request: pb.ListAssetsRequest, context: object
    ) -> pb.ListAssetsResponse:
        tenant_id = requests.tenant()
        page = await assets.list_assets(
            self._stores.assets,
            tenant_id=tenant_id,
            where=requests.asset_filter(request),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListAssetsResponse(
            assets=[asset_message(a) for a in page.items], next_page_token=page.next_page_token
        )

    async def GetJob(self, request: pb.GetJobRequest, context: object) -> pb.GetJobResponse:
        tenant_id = requests.tenant()
        job_id = requests.parse_uuid(request.job_id, "job_id")
        found = await jobs.get_job(self._stores.jobs, tenant_id=tenant_id, job_id=job_id)
        return pb.GetJobResponse(job=job_message(found.job, found.attempts))

    async def WatchAsset(
        self, request: pb.WatchAssetRequest, context: object
    ) -> AsyncIterator[pb.WatchAssetResponse]:
        tenant_id = requests.tenant()
        asset_id = requests.parse_uuid(request.asset_id, "asset_id")
        # Closed here, whichever way the call ends, so the subscription goes with it.
        async with aclosing(
            jobs.watch_asset(
                self._stores.assets, self._watch, tenant_id=tenant_id, asset_id=asset_id
            )
        ) as changes:
            async for found in changes:
                yield pb.WatchAssetResponse(asset=asset_message(found))

    async def DeleteAsset(
        self, request: pb.DeleteAssetRequest, context: object
    ) -> pb.DeleteAssetResponse:
        tenant_id = requests.tenant()
        asset_id = requests.parse_uuid(request.asset_id, "asset_id")
        found = await assets.delete_asset(
            self._stores.assets, tenant_id=tenant_id, asset_id=asset_id
        )
        return pb.DeleteAssetResponse(asset=asset_message(found))

    async def FindSimilar(
        self, request: pb.FindSimilarRequest, context: object
    ) -> pb.FindSimilarResponse:
        tenant_id = requests.tenant()
        target, max_distance, limit = requests.similar_target(
            request, self._settings.similarity_threshold
        )
        found = await similar.find_similar(
            self._stores.assets,
            tenant_id=tenant_id,
            target=target,
            max_distance=max_distance,
            limit=limit,
        )
        return pb.FindSimilarResponse(assets=convert.similar_messages(found))

    async def GetRendition(
        self, request: pb.GetRenditionRequest, context: object
    ) -> pb.GetRenditionResponse:
        lifetime = requests.url_ttl(request.url_ttl_seconds, self._settings.presign_ttl_seconds)
        chosen = await self._choose(request)
        expires = convert.timestamp(dt.datetime.now(dt.UTC) + lifetime)
        return pb.GetRenditionResponse(
            rendition=convert.rendition_message(chosen),
            url=await self._objects.presigned_get(chosen.object_key, lifetime),
            url_expire_time=expires,
        )

    async def ReadRendition(
        self, request: pb.ReadRenditionRequest, context: object
    ) -> AsyncIterator[pb.ReadRenditionResponse]:
        chosen = await self._choose(request)
        yield pb.ReadRenditionResponse(rendition=convert.rendition_message(chosen))
        try:
            async for chunk in self._objects.iter_chunks(chosen.object_key, MAX_CHUNK_BYTES):
                yield pb.ReadRenditionResponse(chunk=chunk)
        except ObjectNotFound as missing:
            # A row without its object: report it as a dependency fault, not a bug.
            raise Unavailable(missing.message, reason=missing.reason) from None

    async def _choose(self, request: pb.GetRenditionRequest | pb.ReadRenditionRequest) -> Rendition:
        tenant_id = requests.tenant()
        accept = [requests.known_format(f, "accept_formats") for f in request.accept_formats]
        return await choose_rendition(
            self._stores.assets,
            tenant_id=tenant_id,
            asset_id=requests.parse_uuid(request.asset_id, "asset_id"),
            preset=request.preset,
            accept=accept,
        )

    async def ListJobs(self, request: pb.ListJobsRequest, context: object) -> pb.ListJobsResponse:
        tenant_id = requests.tenant()
        state = requests.state_filter(request.state)
        asset_id = requests.parse_uuid(request.asset_id, "asset_id") if request.asset_id else None
        page = await jobs.list_jobs(
            self._stores.jobs,
            self._stores.assets,
            tenant_id=tenant_id,
            state=state,
            asset_id=asset_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListJobsResponse(
            jobs=[job_message(j.job, j.attempts) for j in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListPoisonJobs(
        self, request: pb.ListPoisonJobsRequest, context: object
    ) -> pb.ListPoisonJobsResponse:
        page = await poison.list_poison_jobs(
            self._stores.poison,
            self._stores.jobs,
            tenant_id=requests.tenant(),
            include_replayed=request.include_replayed,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListPoisonJobsResponse(
            poison_jobs=[poison_job_message(p) for p in page.items],
            next_page_token=page.next_page_token,
        )

    async def RetryPoisonJob(
        self, request: pb.RetryPoisonJobRequest, context: object
    ) -> pb.RetryPoisonJobResponse:
        tenant_id = requests.tenant()
        replayed = await poison.retry_poison_job(
            self._stores.poison,
            self._stores.jobs,
            tenant_id=tenant_id,
            poison_job_id=requests.parse_uuid(request.poison_job_id, "poison_job_id"),
        )
        return pb.RetryPoisonJobResponse(
            poison_job=poison_job_message(replayed.poison_job), job=job_message(replayed.job)
        )

    async def GetTenantMetrics(
        self, request: pb.GetTenantMetricsRequest, context: object
    ) -> pb.GetTenantMetricsResponse:
        tenant_id = requests.tenant()
        metrics = await tenants.tenant_metrics(self._stores.usage, tenant_id=tenant_id)
        return convert.metrics_message(tenant_id, metrics)

    async def Purge(self, request: pb.PurgeRequest, context: object) -> pb.PurgeResponse:
        report = await purge.run_purge(
            self._stores.purge,
            self._objects,
            tenant_id=requests.tenant(),
            dry_run=request.dry_run if request.HasField("dry_run") else True,
            older_than_days=(
                request.older_than_days
                if request.HasField("older_than_days")
                else self._settings.purge_days
            ),
            rendition_grace=dt.timedelta(seconds=self._settings.purge_rendition_grace_seconds),
        )
        return convert.purge_response(report)

    async def CreateSigningKey(
        self, request: pb.CreateSigningKeyRequest, context: object
    ) -> pb.CreateSigningKeyResponse:
        issued = await signing_keys.create_signing_key(
            self._stores.tenants,
            tenant_id=requests.tenant(),
            label=request.label,
            pepper=self._pepper,
        )
        return pb.CreateSigningKeyResponse(
            signing_key=convert.signing_key_message(issued.signing_key), secret=issued.secret
        )

    async def ListSigningKeys(
        self, request: pb.ListSigningKeysRequest, context: object
    ) -> pb.ListSigningKeysResponse:
        keys = await signing_keys.list_signing_keys(
            self._stores.tenants, tenant_id=requests.tenant()
        )
        return pb.ListSigningKeysResponse(
            signing_keys=[convert.signing_key_message(k) for k in keys]
        )

    async def RevokeSigningKey(
        self, request: pb.RevokeSigningKeyRequest, context: object
    ) -> pb.RevokeSigningKeyResponse:
        revoked = await signing_keys.revoke_signing_key(
            self._stores.tenants, tenant_id=requests.tenant(), key_id=request.key_id
        )
        return pb.RevokeSigningKeyResponse(signing_key=convert.signing_key_message(revoked))

    async def GetDeliveryUrl(
        self, request: pb.GetDeliveryUrlRequest, context: object
    ) -> pb.GetDeliveryUrlResponse:
        made = await delivery.delivery_url(
            self._stores.assets,
            self._stores.tenants,
            tenant_id=requests.tenant(),
            request=delivery.UrlRequest(
                asset_id=requests.parse_uuid(request.asset_id, "asset_id"),
                preset=requests.preset_name(request.preset),
                image_format=requests.delivery_format(request.format),
                ttl_seconds=request.ttl_seconds,
                key_id=request.key_id,
            ),
            signing=self._signing,
            now=dt.datetime.now(dt.UTC),
        )
        return pb.GetDeliveryUrlResponse(
            url=made.url,
            version=made.version,
            expire_time=convert.timestamp(made.expires_at),
            key_id=made.key_id,
        )

    async def GetTenantSettings(
        self, request: pb.GetTenantSettingsRequest, context: object
    ) -> pb.GetTenantSettingsResponse:
        settings = await tenants.get_tenant_settings(
            self._stores.tenants, tenant_id=requests.tenant()
        )
        return pb.GetTenantSettingsResponse(settings=convert.tenant_settings_message(settings))

    async def UpdateTenantSettings(
        self, request: pb.UpdateTenantSettingsRequest, context: object
    ) -> pb.UpdateTenantSettingsResponse:
        settings = await tenants.update_tenant_settings(
            self._stores.tenants,
            tenant_id=requests.tenant(),
            values=convert.tenant_settings(request.settings),
            paths=list(request.update_mask.paths),
        )
        return pb.UpdateTenantSettingsResponse(settings=convert.tenant_settings_message(settings))

    async def ListTenantPresets(
        self, request: pb.ListTenantPresetsRequest, context: object
    ) -> pb.ListTenantPresetsResponse:
        found = await presets.list_presets(self._stores.presets, tenant_id=requests.tenant())
        return pb.ListTenantPresetsResponse(
            presets=preset_messages(found.presets), defaults=not found.own
        )

    async def CreatePreset(
        self, request: pb.CreatePresetRequest, context: object
    ) -> pb.CreatePresetResponse:
        created = await presets.create_preset(
            self._stores.presets,
            tenant_id=requests.tenant(),
            fields=convert.preset_fields(request.preset, creating=True),
        )
        return pb.CreatePresetResponse(preset=preset_message(created))

    async def UpdatePreset(
        self, request: pb.UpdatePresetRequest, context: object
    ) -> pb.UpdatePresetResponse:
        updated = await presets.update_preset(
            self._stores.presets,
            tenant_id=requests.tenant(),
            name=requests.preset_name(request.preset.name),
            fields=convert.preset_fields(request.preset, creating=False),
            paths=list(request.update_mask.paths),
        )
        return pb.UpdatePresetResponse(preset=preset_message(updated))

    async def DeletePreset(
        self, request: pb.DeletePresetRequest, context: object
    ) -> pb.DeletePresetResponse:
        await presets.delete_preset(
            self._stores.presets,
            tenant_id=requests.tenant(),
            name=requests.preset_name(request.name),
        )
        return pb.DeletePresetResponse()

    async def SetFocalPoint(
        self, request: pb.SetFocalPointRequest, context: object
    ) -> pb.SetFocalPointResponse:
        changed = await backfills.set_focal_point(
            self._stores.backfills,
            self._stores.presets,
            self._stores.assets,
            tenant_id=requests.tenant(),
            asset_id=requests.parse_uuid(request.asset_id, "asset_id"),
            point=requests.focal_point(request),
        )
        return pb.SetFocalPointResponse(
            asset=asset_message(changed.asset), job_id=str(changed.job.id) if changed.job else ""
        )

    async def StartBackfill(
        self, request: pb.StartBackfillRequest, context: object
    ) -> pb.StartBackfillResponse:
        started = await backfills.start_backfill(
            self._stores.backfills,
            self._stores.presets,
            self._stores.purge,
            tenant_id=requests.tenant(),
            scope=requests.backfill_scope(request.scope),
            preset=requests.preset_name(request.preset) if request.preset else "",
            asset_ids=[requests.parse_uuid(a, "asset_ids") for a in request.asset_ids],
        )
        return pb.StartBackfillResponse(backfill=convert.backfill_message(started))

    async def GetBackfill(
        self, request: pb.GetBackfillRequest, context: object
    ) -> pb.GetBackfillResponse:
        found = await backfills.get_backfill(
            self._stores.backfills,
            tenant_id=requests.tenant(),
            backfill_id=requests.parse_uuid(request.backfill_id, "backfill_id"),
        )
        return pb.GetBackfillResponse(backfill=convert.backfill_message(found))
