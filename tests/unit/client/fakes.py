"""Small in-process servicers a real grpc.aio server runs for the client's tests.

They record what the client sent (metadata, messages) and can be told to answer
UNAVAILABLE a number of times first, or UNIMPLEMENTED, so retries and fallbacks are
exercised over a real HTTP/2 connection rather than mocks.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Never

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from imagepipe.client import format_name
from imagepipe.delivery import delivery_path, preset_version, signed_url
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    quality_pb2,
    quality_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)

TENANT_KEY = "ip_0123456789abcdef_" + "cd" * 20
TENANT_ID = "5b0e7c3a-9f41-4d2e-8a6b-0c1d2e3f4a5b"
# Where the fake catalog's GetDeliveryUrl builds URLs (its IMAGEPIPE_DELIVERY_PUBLIC_URL).
DELIVERY_BASE = "https://img.example.test/cdn"
ADMIN_KEY = "admin-key-for-client-tests"
HTML = b"<!DOCTYPE html><html><body>404</body></html>"

Context = grpc.aio.ServicerContext[Any, Any]


async def abort(
    context: Context, code: grpc.StatusCode, message: str, reason: str, **metadata: str
) -> Never:
    """Fail the call the way imagepipe services do: status + ErrorInfo detail."""
    request_id = _metadata(context).get("x-request-id", "")
    info = error_details_pb2.ErrorInfo(
        reason=reason, domain="imagepipe", metadata={**metadata, "request_id": request_id}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    await context.abort(
        code, message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
    )


async def _unimplemented(context: Context) -> Never:
    await abort(context, grpc.StatusCode.UNIMPLEMENTED, "not in this fake", "NOT_IMPLEMENTED")


def _metadata(context: Context) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


# The service defaults, as the renderer and the catalog give them.
PRESETS = [
    renderer_pb2.Preset(
        name=name,
        max_width=size,
        max_height=size,
        formats=[common_pb2.IMAGE_FORMAT_JPEG],
        quality=85,
        version=f"{size:016x}",
    )
    for name, size in (("zoom", 1200), ("card", 400), ("thumb", 100))
]


@dataclass
class Recorder:
    """What every RPC saw, and the failures still to inject per method."""

    metadata: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, int] = field(default_factory=dict)

    async def enter(self, method: str, context: Context, *, key: str = TENANT_KEY) -> None:
        """Count and record the call; fail it as told, or when the key is wrong."""
        seen = _metadata(context)
        self.metadata.append((method, seen))
        self.calls[method] = self.calls.get(method, 0) + 1
        if self.unavailable.get(method, 0) > 0:
            self.unavailable[method] -= 1
            # No ErrorInfo: what a restarting server or a proxy answers.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        if seen.get("authorization") != f"Bearer {key}":
            await abort(context, grpc.StatusCode.UNAUTHENTICATED, "bad key", "INVALID_API_KEY")


def _asset(data: bytes, header: ingest_pb2.UploadHeader) -> common_pb2.Asset:
    digest = hashlib.sha256(data).hexdigest()
    return common_pb2.Asset(
        asset_id=str(uuid.uuid5(uuid.NAMESPACE_OID, digest)),
        tenant_id=TENANT_ID,
        status=common_pb2.ASSET_STATUS_PENDING,
        content_hash=digest,
        filename=header.filename,
        content_type="image/jpeg",
        format=common_pb2.IMAGE_FORMAT_JPEG,
        width=64,
        height=48,
        size_bytes=len(data),
        labels=dict(header.labels),
        job_id=str(uuid.uuid4()),
    )


RENDITIONS = (
    common_pb2.Rendition(
        preset="card",
        format=common_pb2.IMAGE_FORMAT_JPEG,
        width=400,
        height=300,
        size_bytes=9000,
        content_hash="0a1b2c3d4e5f6071" + "ab" * 24,
        version="0a1b2c3d4e5f6071",
    ),
    common_pb2.Rendition(
        preset="thumb",
        format=common_pb2.IMAGE_FORMAT_JPEG,
        width=100,
        height=75,
        size_bytes=900,
        content_hash="8192a3b4c5d6e7f8" + "cd" * 24,
        version="8192a3b4c5d6e7f8",
    ),
)
# The card in the modern formats too, for tests that make the fake render them.
MODERN_CARDS = (
    common_pb2.Rendition(
        preset="card",
        format=common_pb2.IMAGE_FORMAT_WEBP,
        width=400,
        height=300,
        size_bytes=6000,
        version="1f2e3d4c5b6a7988",
    ),
    common_pb2.Rendition(
        preset="card",
        format=common_pb2.IMAGE_FORMAT_AVIF,
        width=400,
        height=300,
        size_bytes=5000,
        version="99aabbccddeeff00",
    ),
)

# What a ready asset carries: the example ThumbHash published with the format.
PLACEHOLDER = common_pb2.Placeholder(
    thumbhash="1QcSHQRnh493V4dIh4eXh1h4kJUI", dominant_color="#56525a"
)


class Ingest(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, recorder: Recorder, store: dict[str, common_pb2.Asset]) -> None:
        self.recorder = recorder
        self.store = store
        self.streams: list[list[ingest_pb2.UploadRequest]] = []

    async def Upload(
        self, request_iterator: AsyncIterator[ingest_pb2.UploadRequest], context: Context
    ) -> ingest_pb2.UploadResponse:
        messages = [m async for m in request_iterator]
        self.streams.append(messages)
        await self.recorder.enter("Upload", context)
        if not messages or messages[0].WhichOneof("part") != "header":
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "header first", "BAD_STREAM")
        data = b"".join(m.chunk for m in messages[1:])
        if data.lstrip().startswith(b"<"):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "not an accepted image: looks like HTML",
                "IMAGE_UNSUPPORTED_FORMAT",
                sniffed="text/html",
            )
        asset = _asset(data, messages[0].header)
        known = asset.content_hash in self.store
        if not known:
            self.store[asset.content_hash] = asset
        return ingest_pb2.UploadResponse(asset=self.store[asset.content_hash], deduplicated=known)


def _listed(asset: common_pb2.Asset, request: catalog_pb2.ListAssetsRequest) -> bool:
    """ListAssets' filters as the catalog applies them."""
    if any(asset.labels.get(key) != value for key, value in request.labels.items()):
        return False
    bounded = request.HasField("capture_time_from") or request.HasField("capture_time_to")
    if not bounded:
        return True
    if not asset.metadata.HasField("capture_time"):
        return False
    captured = asset.metadata.capture_time.ToDatetime()
    return (
        not request.HasField("capture_time_from")
        or captured >= request.capture_time_from.ToDatetime()
    ) and (
        not request.HasField("capture_time_to") or captured < request.capture_time_to.ToDatetime()
    )


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, recorder: Recorder, store: dict[str, common_pb2.Asset]) -> None:
        self.recorder = recorder
        self.store = store
        self.watch_implemented = False
        # GetAsset reports an asset ready after this many reads of it.
        self.reads_until_ready = 2
        self.reads: dict[str, int] = {}
        self.rendition_bytes = bytes(range(256)) * 5000  # > 1 MiB: several chunks
        # What a ready asset carries; tests may add formats or take renditions away.
        self.renditions: tuple[common_pb2.Rendition, ...] = RENDITIONS
        self.signing = FakeSigning()
        self.list_requests: list[catalog_pb2.ListAssetsRequest] = []
        self.presets = FakePresets()

    def _find(self, asset_id: str) -> common_pb2.Asset | None:
        return next((a for a in self.store.values() if a.asset_id == asset_id), None)

    async def _get(self, asset_id: str, context: Context) -> common_pb2.Asset:
        asset = self._find(asset_id)
        if asset is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such asset", "ASSET_NOT_FOUND")
        self.reads[asset_id] = self.reads.get(asset_id, 0) + 1
        if self.reads[asset_id] > self.reads_until_ready:
            ready = common_pb2.Asset()
            ready.CopyFrom(asset)
            ready.status = common_pb2.ASSET_STATUS_READY
            ready.renditions.extend(self.renditions)
            ready.placeholder.CopyFrom(PLACEHOLDER)
            return ready
        return asset

    async def GetAsset(
        self, request: catalog_pb2.GetAssetRequest, context: Context
    ) -> catalog_pb2.GetAssetResponse:
        await self.recorder.enter("GetAsset", context)
        return catalog_pb2.GetAssetResponse(asset=await self._get(request.asset_id, context))

    async def ListAssets(
        self, request: catalog_pb2.ListAssetsRequest, context: Context
    ) -> catalog_pb2.ListAssetsResponse:
        await self.recorder.enter("ListAssets", context)
        self.list_requests.append(request)
        assets = sorted(
            (a for a in self.store.values() if _listed(a, request)), key=lambda a: a.asset_id
        )
        start = int(request.page_token or 0)
        end = start + request.page_size
        return catalog_pb2.ListAssetsResponse(
            assets=assets[start:end], next_page_token=str(end) if end < len(assets) else ""
        )

    async def WatchAsset(
        self, request: catalog_pb2.WatchAssetRequest, context: Context
    ) -> AsyncIterator[catalog_pb2.WatchAssetResponse]:
        await self.recorder.enter("WatchAsset", context)
        if not self.watch_implemented:
            await abort(
                context,
                grpc.StatusCode.UNIMPLEMENTED,
                "WatchAsset is not implemented by this server yet",
                "NOT_IMPLEMENTED",
            )
        while True:
            asset = await self._get(request.asset_id, context)
            yield catalog_pb2.WatchAssetResponse(asset=asset)
            if asset.status == common_pb2.ASSET_STATUS_READY:
                return

    async def GetRendition(
        self, request: catalog_pb2.GetRenditionRequest, context: Context
    ) -> catalog_pb2.GetRenditionResponse:
        await self.recorder.enter("GetRendition", context)
        response = catalog_pb2.GetRenditionResponse(
            rendition=RENDITIONS[0], url=f"http://s3.invalid/{request.asset_id}/{request.preset}"
        )
        response.url_expire_time.FromSeconds(2_000_000_000)
        return response

    async def ReadRendition(
        self, request: catalog_pb2.ReadRenditionRequest, context: Context
    ) -> AsyncIterator[catalog_pb2.ReadRenditionResponse]:
        await self.recorder.enter("ReadRendition", context)
        data = self.rendition_bytes
        rendition = common_pb2.Rendition()
        rendition.CopyFrom(RENDITIONS[0])
        rendition.size_bytes = len(data)
        yield catalog_pb2.ReadRenditionResponse(rendition=rendition)
        for start in range(0, len(data), 1024 * 1024):
            yield catalog_pb2.ReadRenditionResponse(chunk=data[start : start + 1024 * 1024])

    async def GetJob(
        self, request: catalog_pb2.GetJobRequest, context: Context
    ) -> catalog_pb2.GetJobResponse:
        await self.recorder.enter("GetJob", context)
        return catalog_pb2.GetJobResponse(
            job=common_pb2.Job(job_id=request.job_id, state=common_pb2.JOB_STATE_DONE)
        )

    async def DeleteAsset(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def FindSimilar(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def ListJobs(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def ListPoisonJobs(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def RetryPoisonJob(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def GetTenantMetrics(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def Purge(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def CreateSigningKey(
        self, request: catalog_pb2.CreateSigningKeyRequest, context: Context
    ) -> catalog_pb2.CreateSigningKeyResponse:
        await self.recorder.enter("CreateSigningKey", context)
        key, secret = self.signing.create(request.label)
        return catalog_pb2.CreateSigningKeyResponse(signing_key=key, secret=secret)

    async def ListSigningKeys(
        self, request: catalog_pb2.ListSigningKeysRequest, context: Context
    ) -> catalog_pb2.ListSigningKeysResponse:
        await self.recorder.enter("ListSigningKeys", context)
        return catalog_pb2.ListSigningKeysResponse(signing_keys=self.signing.keys)

    async def RevokeSigningKey(
        self, request: catalog_pb2.RevokeSigningKeyRequest, context: Context
    ) -> catalog_pb2.RevokeSigningKeyResponse:
        await self.recorder.enter("RevokeSigningKey", context)
        key = self.signing.find(request.key_id)
        if key is None:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no signing key {request.key_id!r}",
                "SIGNING_KEY_NOT_FOUND",
            )
        if not key.HasField("revoke_time"):
            key.revoke_time.GetCurrentTime()
        return catalog_pb2.RevokeSigningKeyResponse(signing_key=key)

    async def GetDeliveryUrl(
        self, request: catalog_pb2.GetDeliveryUrlRequest, context: Context
    ) -> catalog_pb2.GetDeliveryUrlResponse:
        """Enough of the real one for the client's wrapper: versions, keys, expiry."""
        await self.recorder.enter("GetDeliveryUrl", context)
        asset = await self._get(request.asset_id, context)
        found = {
            format_name(r.format): r.version for r in asset.renditions if r.preset == request.preset
        }
        fmt = (
            None
            if request.format == common_pb2.IMAGE_FORMAT_UNSPECIFIED
            else format_name(request.format)
        )
        if fmt is not None and fmt not in found:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, "no such format", "FORMAT_NOT_AVAILABLE"
            )
        version = found[fmt] if fmt is not None else preset_version(found.items())
        key = self.signing.find(request.key_id) if request.key_id else self.signing.newest()
        if key is None and (request.key_id or not self.signing.settings.unsigned_delivery):
            await abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, "no signing key", "NO_SIGNING_KEY"
            )
        expires = int(time.time()) + request.ttl_seconds if request.ttl_seconds else None
        response = catalog_pb2.GetDeliveryUrlResponse(
            url=signed_url(
                DELIVERY_BASE,
                delivery_path(asset.tenant_id, asset.asset_id, request.preset, fmt),
                version=version,
                expires=expires,
                key_id=key.key_id if key else None,
                secret=self.signing.secrets[key.key_id] if key else None,
            ),
            version=version,
            key_id=key.key_id if key else "",
        )
        if expires is not None:
            response.expire_time.FromSeconds(expires)
        return response

    async def GetTenantSettings(
        self, request: catalog_pb2.GetTenantSettingsRequest, context: Context
    ) -> catalog_pb2.GetTenantSettingsResponse:
        await self.recorder.enter("GetTenantSettings", context)
        return catalog_pb2.GetTenantSettingsResponse(settings=self.signing.settings)

    async def UpdateTenantSettings(
        self, request: catalog_pb2.UpdateTenantSettingsRequest, context: Context
    ) -> catalog_pb2.UpdateTenantSettingsResponse:
        await self.recorder.enter("UpdateTenantSettings", context)
        paths = list(request.update_mask.paths)
        self.signing.masks.append(paths)
        if paths not in (["unsigned_delivery"], ["keep_gps"]):
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "bad mask", "UPDATE_MASK_REQUIRED"
            )
        setattr(self.signing.settings, paths[0], getattr(request.settings, paths[0]))
        return catalog_pb2.UpdateTenantSettingsResponse(settings=self.signing.settings)

    async def ListTenantPresets(
        self, request: catalog_pb2.ListTenantPresetsRequest, context: Context
    ) -> catalog_pb2.ListTenantPresetsResponse:
        await self.recorder.enter("ListTenantPresets", context)
        return catalog_pb2.ListTenantPresetsResponse(
            presets=list(self.presets.presets.values()), defaults=not self.presets.own
        )

    async def CreatePreset(
        self, request: catalog_pb2.CreatePresetRequest, context: Context
    ) -> catalog_pb2.CreatePresetResponse:
        await self.recorder.enter("CreatePreset", context)
        if request.preset.name in self.presets.presets:
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, "taken", "PRESET_EXISTS")
        return catalog_pb2.CreatePresetResponse(preset=self.presets.store(request.preset))

    async def UpdatePreset(
        self, request: catalog_pb2.UpdatePresetRequest, context: Context
    ) -> catalog_pb2.UpdatePresetResponse:
        await self.recorder.enter("UpdatePreset", context)
        self.presets.masks.append(list(request.update_mask.paths))
        current = self.presets.presets.get(request.preset.name)
        if current is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such preset", "PRESET_NOT_FOUND")
        assert current is not None
        changed = renderer_pb2.Preset()
        changed.CopyFrom(current)
        request.update_mask.MergeMessage(request.preset, changed)
        return catalog_pb2.UpdatePresetResponse(preset=self.presets.store(changed))

    async def DeletePreset(
        self, request: catalog_pb2.DeletePresetRequest, context: Context
    ) -> catalog_pb2.DeletePresetResponse:
        await self.recorder.enter("DeletePreset", context)
        if self.presets.presets.pop(request.name, None) is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such preset", "PRESET_NOT_FOUND")
        self.presets.own = True
        return catalog_pb2.DeletePresetResponse()

    async def SetFocalPoint(
        self, request: catalog_pb2.SetFocalPointRequest, context: Context
    ) -> catalog_pb2.SetFocalPointResponse:
        await self.recorder.enter("SetFocalPoint", context)
        asset = common_pb2.Asset(asset_id=request.asset_id, status=common_pb2.ASSET_STATUS_READY)
        if request.HasField("focal_point"):
            asset.focal_point.CopyFrom(request.focal_point)
        return catalog_pb2.SetFocalPointResponse(
            asset=asset, job_id="j-focus" if request.HasField("focal_point") else ""
        )

    async def StartBackfill(
        self, request: catalog_pb2.StartBackfillRequest, context: Context
    ) -> catalog_pb2.StartBackfillResponse:
        await self.recorder.enter("StartBackfill", context)
        self.presets.backfill = catalog_pb2.Backfill(
            backfill_id="b-1",
            scope=request.scope,
            preset=request.preset,
            state=catalog_pb2.BACKFILL_STATE_RUNNING,
            total=len(request.asset_ids) or 3,
        )
        return catalog_pb2.StartBackfillResponse(backfill=self.presets.backfill)

    async def GetBackfill(
        self, request: catalog_pb2.GetBackfillRequest, context: Context
    ) -> catalog_pb2.GetBackfillResponse:
        """One more asset done at each call, until all are."""
        await self.recorder.enter("GetBackfill", context)
        backfill = self.presets.backfill
        if backfill is None or request.backfill_id != backfill.backfill_id:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no backfill", "BACKFILL_NOT_FOUND")
        assert backfill is not None
        backfill.done = min(backfill.done + 1, backfill.total)
        if backfill.done == backfill.total:
            backfill.state = catalog_pb2.BACKFILL_STATE_FINISHED
            backfill.finish_time.FromSeconds(1_800_000_000)
        return catalog_pb2.GetBackfillResponse(backfill=backfill)


@dataclass
class FakePresets:
    """The tenant's presets (the defaults until it changes one) and its backfill."""

    presets: dict[str, renderer_pb2.Preset] = field(
        default_factory=lambda: {p.name: p for p in PRESETS}
    )
    own: bool = False
    masks: list[list[str]] = field(default_factory=list)
    backfill: catalog_pb2.Backfill | None = None

    def store(self, preset: renderer_pb2.Preset) -> renderer_pb2.Preset:
        stored = renderer_pb2.Preset()
        stored.CopyFrom(preset)
        stored.version = f"{len(self.presets) + len(self.masks):016x}"
        self.presets[stored.name] = stored
        self.own = True
        return stored


@dataclass
class FakeSigning:
    """The tenant's signing keys (secrets beside them) and its settings."""

    keys: list[common_pb2.SigningKey] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    settings: common_pb2.TenantSettings = field(default_factory=common_pb2.TenantSettings)
    masks: list[list[str]] = field(default_factory=list)

    def create(self, label: str) -> tuple[common_pb2.SigningKey, str]:
        key = common_pb2.SigningKey(key_id=secrets.token_hex(8), label=label)
        key.create_time.GetCurrentTime()
        self.keys.append(key)
        self.secrets[key.key_id] = secrets.token_urlsafe(32)
        return key, self.secrets[key.key_id]

    def find(self, key_id: str) -> common_pb2.SigningKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def newest(self) -> common_pb2.SigningKey | None:
        active = [k for k in self.keys if not k.HasField("revoke_time")]
        return active[-1] if active else None


class Renderer(renderer_pb2_grpc.RendererServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def ListPresets(
        self, request: renderer_pb2.ListPresetsRequest, context: Context
    ) -> renderer_pb2.ListPresetsResponse:
        await self.recorder.enter("ListPresets", context)
        return renderer_pb2.ListPresetsResponse(presets=PRESETS)

    async def GetRendererStatus(self, request: object, context: Context) -> Never:
        await _unimplemented(context)


class Quality(quality_pb2_grpc.QualityServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def Compare(
        self, request: quality_pb2.CompareRequest, context: Context
    ) -> quality_pb2.CompareResponse:
        await self.recorder.enter("Compare", context)
        return quality_pb2.CompareResponse(
            asset_id=request.asset_id,
            renditions=[
                quality_pb2.RenditionQuality(
                    preset="card",
                    format=common_pb2.IMAGE_FORMAT_JPEG,
                    width=400,
                    height=300,
                    size_bytes=9000,
                    original_size_bytes=120_000,
                    quality=85,
                    scores=common_pb2.QualityScores(psnr_db=38.25, ssim=0.9812, hash_distance=2),
                    good=True,
                ),
                quality_pb2.RenditionQuality(
                    preset="thumb",
                    format=common_pb2.IMAGE_FORMAT_JPEG,
                    width=100,
                    height=75,
                    size_bytes=900,
                    original_size_bytes=120_000,
                    quality=85,
                    scores=common_pb2.QualityScores(psnr_infinite=True, ssim=1.0),
                    good=True,
                ),
            ],
        )

    async def CompareImages(self, request: object, context: Context) -> Never:
        await _unimplemented(context)


class TenantAdmin(tenant_admin_pb2_grpc.TenantAdminServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def CreateTenant(
        self, request: tenant_admin_pb2.CreateTenantRequest, context: Context
    ) -> tenant_admin_pb2.CreateTenantResponse:
        await self.recorder.enter("CreateTenant", context, key=ADMIN_KEY)
        return tenant_admin_pb2.CreateTenantResponse(
            tenant=common_pb2.Tenant(tenant_id="t-1", name=request.name),
            api_key=common_pb2.ApiKey(key_id="0123456789abcdef", tenant_id="t-1"),
            secret_key=TENANT_KEY,
        )

    async def ListTenants(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def CreateApiKey(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def ListApiKeys(self, request: object, context: Context) -> Never:
        await _unimplemented(context)

    async def RevokeApiKey(self, request: object, context: Context) -> Never:
        await _unimplemented(context)


@dataclass
class FakeServer:
    """Every fake on one port: the client is pointed at it for all four services."""

    address: str
    server: grpc.aio.Server
    recorder: Recorder
    ingest: Ingest
    catalog: Catalog

    @classmethod
    async def start(cls) -> FakeServer:
        recorder = Recorder()
        store: dict[str, common_pb2.Asset] = {}
        ingest = Ingest(recorder, store)
        catalog = Catalog(recorder, store)
        server = grpc.aio.server()
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(catalog, server)
        renderer_pb2_grpc.add_RendererServiceServicer_to_server(Renderer(recorder), server)
        quality_pb2_grpc.add_QualityServiceServicer_to_server(Quality(recorder), server)
        tenant_admin_pb2_grpc.add_TenantAdminServiceServicer_to_server(
            TenantAdmin(recorder), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return cls(f"127.0.0.1:{port}", server, recorder, ingest, catalog)

    async def stop(self) -> None:
        await self.server.stop(grace=None)

    def env(self) -> dict[str, str]:
        """The client's environment variables pointing at this server."""
        return {
            "IMAGEPIPE_API_KEY": TENANT_KEY,
            "IMAGEPIPE_ADMIN_KEY": ADMIN_KEY,
            **{
                f"IMAGEPIPE_{name}_ADDR": self.address
                for name in ("INGEST", "CATALOG", "RENDERER", "QUALITY")
            },
        }
