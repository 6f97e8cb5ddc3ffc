"""AsyncClient: one facade over the tenant-facing imagepipe services.

Every call carries the key as ``authorization: Bearer <key>``, an ``x-request-id``
(generated when the caller gives none) and a deadline. Unary reads are retried by
gRPC itself on UNAVAILABLE (retry policy in the channel's service config); uploads
are retried by :mod:`imagepipe.client._upload`, from the first byte, because a client
stream cannot be replayed by gRPC and an upload is idempotent by content hash. Every
failure surfaces as :class:`ImagepipeError`, mapped in :mod:`imagepipe.client._errors`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeAlias, Unpack

import grpc

from imagepipe.client._calls import ENV_ADMIN_KEY, ENV_API_KEY, Calls, new_request_id
from imagepipe.client._channels import DEFAULT_ADDRESSES
from imagepipe.client._delivery import (
    ENV_SIGNING_KEY_ID,
    ENV_SIGNING_SECRET,
    DeliveryCalls,
    Signer,
)
from imagepipe.client._errors import malformed_stream, map_rpc_errors
from imagepipe.client._presets import PresetCalls
from imagepipe.client._results import (
    CreatedSigningKey,
    CreatedTenant,
    DeliveryLink,
    RenditionContent,
    RenditionLink,
    UploadResult,
)
from imagepipe.client._settings import (
    DEFAULT_DELIVERY_URL,
    DEFAULT_TIMEOUT,
    ClientOptions,
    ClientSettings,
)
from imagepipe.client._upload import (
    CHUNK_SIZE,
    UNKNOWN_UPLOAD_SIZE,
    Source,
    Upload,
    UploadSource,
    upload_header,
)
from imagepipe.client._wait import POLL_INTERVAL, AssetWait
from imagepipe.client.errors import ImagepipeError
from imagepipe.client.names import parse_formats, parse_status
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ingest_pb2_grpc,
    quality_pb2,
    quality_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_DELIVERY_URL",
    "DEFAULT_TIMEOUT",
    "ENV_DELIVERY_URL",
    "AsyncClient",
    "CreatedSigningKey",
    "CreatedTenant",
    "DeliveryLink",
    "RenditionContent",
    "RenditionLink",
    "UploadResult",
    "new_request_id",
]

_Format: TypeAlias = common_pb2.ImageFormat.ValueType
_Status: TypeAlias = common_pb2.AssetStatus.ValueType

ENV_DELIVERY_URL = "IMAGEPIPE_DELIVERY_URL"


class AsyncClient(DeliveryCalls, PresetCalls):
    """Tenant (and admin) access to ingest, catalog, renderer and quality, the
    delivery URLs of renditions (signed locally; see DeliveryCalls), and the tenant's
    presets, focal points and backfills (PresetCalls).

    Use it as an async context manager, or call :meth:`close`; channels are opened on
    first use, inside the running event loop::

        async with AsyncClient.from_env() as client:
            result = await client.upload("photo.jpg")
            asset = await client.wait_ready(result.asset_id)
    """

    def __init__(self, api_key: str | None = None, **options: Unpack[ClientOptions]) -> None:
        """Every option is keyword-only and has a default: see ClientSettings."""
        settings = ClientSettings(api_key=api_key, **options)
        self._calls = Calls(settings)
        self._signer = Signer(
            settings.delivery_url, settings.signing_key_id, settings.signing_secret
        )
        self._upload_attempts = settings.upload_attempts
        self._min_upload_rate = settings.min_upload_rate

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Keys and addresses from IMAGEPIPE_* variables; keyword arguments win.

        A missing IMAGEPIPE_API_KEY is reported by the first tenant call, so an admin
        who only has IMAGEPIPE_ADMIN_KEY can still create tenants. IMAGEPIPE_DELIVERY_URL,
        IMAGEPIPE_SIGNING_KEY_ID and IMAGEPIPE_SIGNING_SECRET configure delivery URLs.
        """
        env = os.environ if environ is None else environ
        settings: dict[str, Any] = {
            "api_key": env.get(ENV_API_KEY) or None,
            "admin_key": env.get(ENV_ADMIN_KEY) or None,
            "delivery_url": env.get(ENV_DELIVERY_URL) or DEFAULT_DELIVERY_URL,
            "signing_key_id": env.get(ENV_SIGNING_KEY_ID) or None,
            "signing_secret": env.get(ENV_SIGNING_SECRET) or None,
        }
        for service, default in DEFAULT_ADDRESSES.items():
            settings[f"{service}_addr"] = env.get(f"IMAGEPIPE_{service.upper()}_ADDR") or default
        settings.update(overrides)
        return cls(**settings)

    @property
    def addresses(self) -> Mapping[str, str]:
        return dict(self._calls.addresses)

    @property
    def timeout(self) -> float:
        """The default deadline of a call, in seconds."""
        return self._calls.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._calls.timeout = seconds

    def require_api_key(self) -> None:
        """Raise the error a tenant call would, without calling (for up-front checks)."""
        self._calls.tenant_metadata("")

    def require_admin_key(self) -> None:
        """Raise the error an admin call would, without calling."""
        self._calls.admin_metadata("")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._calls.close()

    def _catalog(self) -> catalog_pb2_grpc.CatalogServiceAsyncStub:
        return catalog_pb2_grpc.CatalogServiceStub(self._calls.channel("catalog"))

    def upload_timeout(self, size: int | None) -> float:
        """The deadline of one upload attempt of `size` bytes (None: unknown)."""
        size = UNKNOWN_UPLOAD_SIZE if size is None else size
        return self.timeout + size / self._min_upload_rate

    # -- ingest -------------------------------------------------------------------

    async def upload(
        self,
        source: Source,
        *,
        filename: str | None = None,
        labels: Mapping[str, str] | None = None,
        content_type: str | None = None,
        on_progress: Callable[[int], None] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> UploadResult:
        """Stream one image: an UploadHeader, then chunks of exactly 1 MiB (last smaller).

        `source` is a path or a binary file opened by the caller (read from its current
        position, left open). `on_progress` gets the bytes handed to gRPC so far in the
        current attempt; it restarts at 0 when an UNAVAILABLE attempt is retried, which
        happens only for seekable sources (the stream is replayed from its start).
        `timeout` is per attempt; by default it grows with the size. A path that cannot
        be read raises OSError, before anything is sent.
        """
        rid = request_id or new_request_id()
        metadata = self._calls.tenant_metadata(rid)
        opened = await asyncio.to_thread(UploadSource.open, source, filename)
        try:
            upload = Upload(
                opened, upload_header(opened.filename, labels, content_type), on_progress
            )
            return await upload.send(
                ingest_pb2_grpc.IngestServiceStub(self._calls.channel("ingest")),
                metadata=metadata,
                request_id=rid,
                timeout=timeout or self.upload_timeout(opened.size),
                attempts=self._upload_attempts,
            )
        finally:
            await asyncio.to_thread(opened.close)

    # -- catalog ------------------------------------------------------------------

    async def get_asset(
        self, asset_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> common_pb2.Asset:
        response = await self._calls.tenant(
            self._catalog().GetAsset,
            catalog_pb2.GetAssetRequest(asset_id=asset_id),
            request_id,
            timeout,
        )
        return response.asset

    async def list_assets(
        self,
        status: str | _Status | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        captured_from: datetime | None = None,
        captured_to: datetime | None = None,
        page_size: int = 100,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[common_pb2.Asset]:
        """Every live asset, newest first, page after page; only those in `status`,
        carrying every one of `labels`, and captured at or after `captured_from` and
        before `captured_to` (a time without a timezone is UTC), when given. An asset
        whose original gives no capture time meets no capture-time bound."""
        rid = request_id or new_request_id()
        metadata = self._calls.tenant_metadata(rid)
        stub = self._catalog()
        wanted = common_pb2.ASSET_STATUS_UNSPECIFIED if status is None else parse_status(status)
        template = catalog_pb2.ListAssetsRequest(
            page_size=page_size, status=wanted, labels=dict(labels or {})
        )
        for field, moment in (
            ("capture_time_from", captured_from),
            ("capture_time_to", captured_to),
        ):
            if moment is not None:
                aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
                getattr(template, field).FromDatetime(aware)

        def request_for(token: str) -> catalog_pb2.ListAssetsRequest:
            request = catalog_pb2.ListAssetsRequest()
            request.CopyFrom(template)
            request.page_token = token
            return request

        async for page in self._calls.pages(stub.ListAssets, request_for, metadata, rid, timeout):
            for asset in page.assets:
                yield asset

    async def wait_ready(
        self,
        asset_id: str,
        timeout: float = 60.0,
        *,
        poll_interval: float = POLL_INTERVAL,
        request_id: str | None = None,
    ) -> common_pb2.Asset:
        """The asset once it is ready or failed (or deleted: it will not change again).

        Watches with WatchAsset; a server without it (UNIMPLEMENTED) is polled with
        GetAsset every `poll_interval` seconds instead. Raises ImagepipeError with
        DEADLINE_EXCEEDED (reason WAIT_TIMEOUT) when `timeout` passes first.
        """
        rid = request_id or new_request_id()
        wait = AssetWait(
            self._catalog(),
            asset_id,
            metadata=self._calls.tenant_metadata(rid),
            request_id=rid,
            read_timeout=self.timeout,
        )
        return await wait.run(timeout, poll_interval)

    async def get_rendition(
        self,
        asset_id: str,
        preset: str,
        accept: Iterable[str | _Format] = (),
        *,
        url_ttl_seconds: int = 0,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> RenditionLink:
        """Metadata and a presigned URL of a rendition in the first accepted format.

        `accept` lists formats by preference (``"webp"``, ``"jpeg"``, or enum values);
        empty accepts any, preferring JPEG.
        """
        response = await self._calls.tenant(
            self._catalog().GetRendition,
            catalog_pb2.GetRenditionRequest(
                asset_id=asset_id,
                preset=preset,
                accept_formats=parse_formats(accept),
                url_ttl_seconds=url_ttl_seconds,
            ),
            request_id,
            timeout,
        )
        expire = (
            response.url_expire_time.ToDatetime() if response.HasField("url_expire_time") else None
        )
        return RenditionLink(rendition=response.rendition, url=response.url, expire_time=expire)

    async def read_rendition_content(
        self,
        asset_id: str,
        preset: str,
        accept: Iterable[str | _Format] = (),
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> RenditionContent:
        """A rendition's metadata and bytes, streamed through catalog."""
        rid = request_id or new_request_id()
        stub = self._catalog()
        rendition: common_pb2.Rendition | None = None
        parts: list[bytes] = []
        with map_rpc_errors(rid):
            call = stub.ReadRendition(
                catalog_pb2.ReadRenditionRequest(
                    asset_id=asset_id, preset=preset, accept_formats=parse_formats(accept)
                ),
                timeout=timeout or self.timeout,
                metadata=self._calls.tenant_metadata(rid),
            )
            async for message in call:
                if message.WhichOneof("part") == "rendition":
                    rendition = message.rendition
                elif rendition is None:
                    raise malformed_stream("ReadRendition sent bytes before the metadata", rid)
                else:
                    parts.append(message.chunk)
        if rendition is None:
            raise malformed_stream("ReadRendition ended without the rendition's metadata", rid)
        data = b"".join(parts)
        if rendition.size_bytes and len(data) != rendition.size_bytes:
            raise ImagepipeError(
                grpc.StatusCode.DATA_LOSS,
                f"got {len(data)} bytes of a {rendition.size_bytes}-byte rendition",
                reason="RENDITION_TRUNCATED",
                request_id=rid,
            )
        return RenditionContent(rendition=rendition, data=data)

    async def read_rendition(
        self,
        asset_id: str,
        preset: str,
        accept: Iterable[str | _Format] = (),
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """A rendition's bytes (see read_rendition_content for its metadata too)."""
        content = await self.read_rendition_content(
            asset_id, preset, accept, request_id=request_id, timeout=timeout
        )
        return content.data

    async def get_job(
        self, job_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> common_pb2.Job:
        response = await self._calls.tenant(
            self._catalog().GetJob,
            catalog_pb2.GetJobRequest(job_id=job_id),
            request_id,
            timeout,
        )
        return response.job

    async def watch(
        self, asset_id: str, *, timeout: float = 300.0, request_id: str | None = None
    ) -> AsyncIterator[common_pb2.Asset]:
        """The asset now, then each time its status changes, until ready/failed/deleted."""
        rid = request_id or new_request_id()
        stub = self._catalog()
        call = stub.WatchAsset(
            catalog_pb2.WatchAssetRequest(asset_id=asset_id),
            timeout=timeout,
            metadata=self._calls.tenant_metadata(rid),
        )
        try:
            with map_rpc_errors(rid):
                async for update in call:
                    yield update.asset
        finally:
            call.cancel()

    async def delete_asset(
        self, asset_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> common_pb2.Asset:
        """Soft-delete an asset; Purge reclaims its objects later."""
        response = await self._calls.tenant(
            self._catalog().DeleteAsset,
            catalog_pb2.DeleteAssetRequest(asset_id=asset_id),
            request_id,
            timeout,
        )
        return response.asset

    async def find_similar(
        self,
        *,
        asset_id: str = "",
        perceptual_hash: str = "",
        max_distance: int = 0,
        limit: int = 0,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> list[common_pb2.SimilarAsset]:
        """Near duplicates of an asset or of a 16-hex-digit hash, closest first."""
        request = catalog_pb2.FindSimilarRequest(max_distance=max_distance, limit=limit)
        if asset_id:
            request.asset_id = asset_id
        else:
            request.perceptual_hash = perceptual_hash
        response = await self._calls.tenant(
            self._catalog().FindSimilar, request, request_id, timeout
        )
        return list(response.assets)

    async def tenant_metrics(
        self, *, request_id: str | None = None, timeout: float | None = None
    ) -> catalog_pb2.GetTenantMetricsResponse:
        """Counts and bytes of the calling tenant."""
        return await self._calls.tenant(
            self._catalog().GetTenantMetrics,
            catalog_pb2.GetTenantMetricsRequest(),
            request_id,
            timeout,
        )

    async def purge(
        self,
        *,
        apply: bool = False,
        older_than_days: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> catalog_pb2.PurgeResponse:
        """List (the default) or delete unreferenced objects older than the cut-off."""
        request = catalog_pb2.PurgeRequest(dry_run=not apply)
        if older_than_days is not None:
            request.older_than_days = older_than_days
        return await self._calls.tenant(
            self._catalog().Purge, request, request_id, timeout or 300.0
        )

    async def list_poison_jobs(
        self,
        *,
        include_replayed: bool = False,
        page_size: int = 100,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[catalog_pb2.PoisonJob]:
        """Jobs given up on, newest first (replayed ones too with include_replayed)."""
        rid = request_id or new_request_id()
        metadata = self._calls.tenant_metadata(rid)
        stub = self._catalog()

        def request_for(token: str) -> catalog_pb2.ListPoisonJobsRequest:
            return catalog_pb2.ListPoisonJobsRequest(
                page_size=page_size, page_token=token, include_replayed=include_replayed
            )

        async for page in self._calls.pages(
            stub.ListPoisonJobs, request_for, metadata, rid, timeout
        ):
            for poison_job in page.poison_jobs:
                yield poison_job

    async def retry_poison_job(
        self, poison_job_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> catalog_pb2.RetryPoisonJobResponse:
        """Queue a poison job's render again with a fresh retry budget."""
        return await self._calls.tenant(
            self._catalog().RetryPoisonJob,
            catalog_pb2.RetryPoisonJobRequest(poison_job_id=poison_job_id),
            request_id,
            timeout,
        )

    # -- quality and renderer -----------------------------------------------------

    async def compare(
        self, asset_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> quality_pb2.CompareResponse:
        """PSNR, SSIM and hash distance of every rendition against the original."""
        return await self._calls.tenant(
            quality_pb2_grpc.QualityServiceStub(self._calls.channel("quality")).Compare,
            quality_pb2.CompareRequest(asset_id=asset_id),
            request_id,
            timeout,
        )

    async def list_presets(
        self, *, request_id: str | None = None, timeout: float | None = None
    ) -> list[renderer_pb2.Preset]:
        """The configured rendition presets, largest first."""
        response = await self._calls.tenant(
            renderer_pb2_grpc.RendererServiceStub(self._calls.channel("renderer")).ListPresets,
            renderer_pb2.ListPresetsRequest(),
            request_id,
            timeout,
        )
        return list(response.presets)

    # -- admin --------------------------------------------------------------------

    async def create_tenant(
        self, name: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> CreatedTenant:
        """Create a tenant with its first API key (needs the admin key)."""
        rid = request_id or new_request_id()
        stub = tenant_admin_pb2_grpc.TenantAdminServiceStub(self._calls.channel("catalog"))
        response = await self._calls.unary(
            stub.CreateTenant,
            tenant_admin_pb2.CreateTenantRequest(name=name),
            self._calls.admin_metadata(rid),
            rid,
            timeout,
        )
        return CreatedTenant(
            tenant=response.tenant, api_key=response.api_key, secret_key=response.secret_key
        )
