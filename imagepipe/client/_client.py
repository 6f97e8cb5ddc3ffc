"""AsyncClient: one facade over the tenant-facing imagepipe services.

Every call carries the key as ``authorization: Bearer <key>``, an ``x-request-id``
(generated when the caller gives none) and a deadline. Unary reads are retried by
gRPC itself on UNAVAILABLE (retry policy in the channel's service config); uploads
are retried here, from the first byte, because a client stream cannot be replayed by
gRPC and an upload is idempotent by content hash. Every failure surfaces as
:class:`ImagepipeError`.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import random
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Self, TypeAlias, TypeVar

import grpc

from imagepipe.client._channels import DEFAULT_ADDRESSES, open_channel
from imagepipe.client.errors import ImagepipeError
from imagepipe.client.names import TERMINAL_STATUSES, parse_formats, parse_status, status_name
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

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "CreatedTenant",
    "RenditionContent",
    "RenditionLink",
    "UploadResult",
]

CHUNK_SIZE = 1024 * 1024  # the contract's largest Upload chunk
DEFAULT_TIMEOUT = 30.0
# Uploads get DEFAULT_TIMEOUT plus the time to send their bytes at this slow rate, so
# a 50 MiB original on a modest link is not cut off by a deadline sized for reads.
MIN_UPLOAD_RATE = 1024 * 1024  # bytes per second
# Assumed size when a stream's length cannot be known in advance (the server's cap).
UNKNOWN_UPLOAD_SIZE = 50 * 1024 * 1024
POLL_INTERVAL = 0.25

ENV_API_KEY = "IMAGEPIPE_API_KEY"
ENV_ADMIN_KEY = "IMAGEPIPE_ADMIN_KEY"

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Metadata: TypeAlias = tuple[tuple[str, str], ...]
_Format: TypeAlias = common_pb2.ImageFormat.ValueType
_Status: TypeAlias = common_pb2.AssetStatus.ValueType

Source: TypeAlias = str | os.PathLike[str] | BinaryIO


@dataclass(frozen=True)
class UploadResult:
    """What Upload answered."""

    asset: common_pb2.Asset
    deduplicated: bool
    near_duplicates: tuple[common_pb2.SimilarAsset, ...]
    request_id: str

    @property
    def asset_id(self) -> str:
        return self.asset.asset_id


@dataclass(frozen=True)
class RenditionLink:
    """A rendition's metadata and a presigned URL to download it until expire_time."""

    rendition: common_pb2.Rendition
    url: str
    expire_time: datetime | None


@dataclass(frozen=True)
class RenditionContent:
    """A rendition's metadata and its bytes."""

    rendition: common_pb2.Rendition
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class CreatedTenant:
    """A new tenant and its first key; the secret is shown only once, store it now."""

    tenant: common_pb2.Tenant
    api_key: common_pb2.ApiKey
    secret_key: str = field(repr=False)


def new_request_id() -> str:
    return uuid.uuid4().hex


class _UploadSource:
    """The bytes of one upload, re-readable from the start when the file is seekable.

    Reads are positional and serialised: a failed attempt's reader may still be busy
    in a worker thread when the next attempt starts, and must not move the next
    attempt's position.
    """

    def __init__(self, file: IO[bytes], *, owned: bool, filename: str) -> None:
        self.file = file
        self.owned = owned
        self.filename = filename
        self.start: int | None = None
        self.size: int | None = None
        self._lock = threading.Lock()
        if file.seekable():
            self.start = file.tell()
            self.size = file.seek(0, os.SEEK_END) - self.start
            file.seek(self.start)

    @classmethod
    def open(cls, source: Source, filename: str | None) -> _UploadSource:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            return cls(path.open("rb"), owned=True, filename=filename or path.name)
        name = getattr(source, "name", "")
        fallback = Path(name).name if isinstance(name, str) else ""
        return cls(source, owned=False, filename=filename or fallback)

    @property
    def rewindable(self) -> bool:
        return self.start is not None

    def read_chunk(self, offset: int) -> bytes:
        """CHUNK_SIZE bytes from `offset`, fewer only at the end.

        Loops because pipes and raw streams may return short reads. `offset` is
        ignored for unseekable sources, which are read once, in order.
        """
        with self._lock:
            if self.start is not None:
                self.file.seek(self.start + offset)
            parts: list[bytes] = []
            wanted = CHUNK_SIZE
            while wanted:
                part = self.file.read(wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
            return b"".join(parts)

    def close(self) -> None:
        with self._lock:
            if self.owned:
                self.file.close()


class AsyncClient:
    """Tenant (and admin) access to ingest, catalog, renderer and quality.

    Use it as an async context manager, or call :meth:`close`; channels are opened on
    first use, inside the running event loop::

        async with AsyncClient.from_env() as client:
            result = await client.upload("photo.jpg")
            asset = await client.wait_ready(result.asset_id)
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        admin_key: str | None = None,
        ingest_addr: str = DEFAULT_ADDRESSES["ingest"],
        catalog_addr: str = DEFAULT_ADDRESSES["catalog"],
        renderer_addr: str = DEFAULT_ADDRESSES["renderer"],
        quality_addr: str = DEFAULT_ADDRESSES["quality"],
        timeout: float = DEFAULT_TIMEOUT,
        retry_attempts: int = 4,
        upload_attempts: int = 4,
        min_upload_rate: float = MIN_UPLOAD_RATE,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if timeout <= 0 or min_upload_rate <= 0:
            raise ValueError("timeout and min_upload_rate must be positive")
        if upload_attempts < 1:
            raise ValueError("upload_attempts must be at least 1")
        self._api_key = api_key or None
        self._admin_key = admin_key or None
        self._addresses = {
            "ingest": ingest_addr,
            "catalog": catalog_addr,
            "renderer": renderer_addr,
            "quality": quality_addr,
        }
        self.timeout = timeout
        self._retry_attempts = retry_attempts
        self._upload_attempts = upload_attempts
        self._min_upload_rate = min_upload_rate
        self._credentials = credentials
        self._channel_options = tuple(channel_options)
        # One channel per address: services that share an address share a connection.
        self._channels: dict[str, grpc.aio.Channel] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Keys and addresses from IMAGEPIPE_* variables; keyword arguments win.

        A missing IMAGEPIPE_API_KEY is reported by the first tenant call, so an admin
        who only has IMAGEPIPE_ADMIN_KEY can still create tenants.
        """
        env = os.environ if environ is None else environ
        settings: dict[str, Any] = {
            "api_key": env.get(ENV_API_KEY) or None,
            "admin_key": env.get(ENV_ADMIN_KEY) or None,
        }
        for service, default in DEFAULT_ADDRESSES.items():
            settings[f"{service}_addr"] = env.get(f"IMAGEPIPE_{service.upper()}_ADDR") or default
        settings.update(overrides)
        return cls(**settings)

    @property
    def addresses(self) -> Mapping[str, str]:
        return dict(self._addresses)

    def require_api_key(self) -> None:
        """Raise the error a tenant call would, without calling (for up-front checks)."""
        self._tenant_metadata("")

    def require_admin_key(self) -> None:
        """Raise the error an admin call would, without calling."""
        self._admin_metadata("")

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
        channels = list(self._channels.values())
        self._channels.clear()
        await asyncio.gather(*(channel.close() for channel in channels))

    # -- plumbing -----------------------------------------------------------------

    def _channel(self, service: str) -> grpc.aio.Channel:
        address = self._addresses[service]
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(
                address,
                credentials=self._credentials,
                retry_attempts=self._retry_attempts,
                options=self._channel_options,
            )
            self._channels[address] = channel
        return channel

    def _tenant_metadata(self, request_id: str) -> _Metadata:
        if not self._api_key:
            raise ImagepipeError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"no tenant API key: set {ENV_API_KEY} or pass api_key",
                reason="API_KEY_MISSING",
                request_id=request_id,
            )
        return (("authorization", f"Bearer {self._api_key}"), ("x-request-id", request_id))

    def _admin_metadata(self, request_id: str) -> _Metadata:
        if not self._admin_key:
            raise ImagepipeError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"no admin key: set {ENV_ADMIN_KEY} or pass admin_key",
                reason="ADMIN_KEY_MISSING",
                request_id=request_id,
            )
        return (("authorization", f"Bearer {self._admin_key}"), ("x-request-id", request_id))

    def _catalog(self) -> catalog_pb2_grpc.CatalogServiceAsyncStub:
        return catalog_pb2_grpc.CatalogServiceStub(self._channel("catalog"))

    async def _tenant_call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        request_id: str | None,
        timeout: float | None,
    ) -> _Response:
        """One unary call as the tenant; a new request id unless the caller gave one."""
        rid = request_id or new_request_id()
        return await self._unary(method, request, self._tenant_metadata(rid), rid, timeout)

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        metadata: _Metadata,
        request_id: str,
        timeout: float | None,
    ) -> _Response:
        try:
            return await method(request, timeout=timeout or self.timeout, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise ImagepipeError.from_rpc_error(error, request_id) from None

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
        metadata = self._tenant_metadata(rid)
        opened = await asyncio.to_thread(_UploadSource.open, source, filename)
        try:
            header = ingest_pb2.UploadHeader(
                filename=opened.filename,
                content_type=content_type
                if content_type is not None
                else mimetypes.guess_type(opened.filename)[0] or "",
                labels=dict(labels or {}),
            )
            stub = ingest_pb2_grpc.IngestServiceStub(self._channel("ingest"))
            deadline = timeout or self.upload_timeout(opened.size)
            attempt = 0
            while True:
                attempt += 1
                try:
                    response = await stub.Upload(
                        self._upload_requests(opened, header, on_progress),
                        timeout=deadline,
                        metadata=metadata,
                    )
                except grpc.aio.AioRpcError as error:
                    retry = (
                        error.code() == grpc.StatusCode.UNAVAILABLE
                        and opened.rewindable
                        and attempt < self._upload_attempts
                    )
                    if not retry:
                        raise ImagepipeError.from_rpc_error(error, rid) from None
                    await asyncio.sleep(_backoff(attempt))
                    continue
                return UploadResult(
                    asset=response.asset,
                    deduplicated=response.deduplicated,
                    near_duplicates=tuple(response.near_duplicates),
                    request_id=rid,
                )
        finally:
            await asyncio.to_thread(opened.close)

    @staticmethod
    async def _upload_requests(
        source: _UploadSource,
        header: ingest_pb2.UploadHeader,
        on_progress: Callable[[int], None] | None,
    ) -> AsyncIterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=header)
        sent = 0
        if on_progress is not None:
            on_progress(sent)
        while chunk := await asyncio.to_thread(source.read_chunk, sent):
            yield ingest_pb2.UploadRequest(chunk=chunk)
            sent += len(chunk)
            if on_progress is not None:
                on_progress(sent)

    # -- catalog ------------------------------------------------------------------

    async def get_asset(
        self, asset_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> common_pb2.Asset:
        response = await self._tenant_call(
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
        page_size: int = 100,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[common_pb2.Asset]:
        """Every live asset (or those in `status`), newest first, page after page."""
        rid = request_id or new_request_id()
        metadata = self._tenant_metadata(rid)
        stub = self._catalog()
        wanted = common_pb2.ASSET_STATUS_UNSPECIFIED if status is None else parse_status(status)
        token = ""
        while True:
            page = await self._unary(
                stub.ListAssets,
                catalog_pb2.ListAssetsRequest(page_size=page_size, page_token=token, status=wanted),
                metadata,
                rid,
                timeout,
            )
            for asset in page.assets:
                yield asset
            token = page.next_page_token
            if not token:
                return

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
        metadata = self._tenant_metadata(rid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stub = self._catalog()
        watch = True
        last: common_pb2.Asset | None = None
        unreachable: ImagepipeError | None = None

        def expired() -> ImagepipeError:
            if last is None and unreachable is not None:
                # Never got an answer: the unreachable server is the news, not the wait.
                return unreachable
            seen = f" (still {status_name(last.status)})" if last is not None else ""
            return ImagepipeError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"asset {asset_id} not ready after {timeout:g} s{seen}",
                reason="WAIT_TIMEOUT",
                metadata={"asset_id": asset_id},
                request_id=rid,
            )

        while (remaining := deadline - loop.time()) > 0:
            if watch:
                try:
                    call = stub.WatchAsset(
                        catalog_pb2.WatchAssetRequest(asset_id=asset_id),
                        timeout=remaining,
                        metadata=metadata,
                    )
                    try:
                        async for update in call:
                            last = update.asset
                            if last.status in TERMINAL_STATUSES:
                                return last
                    finally:
                        call.cancel()  # no-op once the stream has ended on its own
                except grpc.aio.AioRpcError as error:
                    code = error.code()
                    if code == grpc.StatusCode.UNIMPLEMENTED:
                        watch = False
                        continue
                    if code == grpc.StatusCode.UNAVAILABLE:
                        unreachable = ImagepipeError.from_rpc_error(error, rid)
                    elif code != grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise ImagepipeError.from_rpc_error(error, rid) from None
                # The stream ended early, timed out or the server went away: the loop
                # condition decides whether there is time to watch again.
            else:
                try:
                    response = await self._unary(
                        stub.GetAsset,
                        catalog_pb2.GetAssetRequest(asset_id=asset_id),
                        metadata,
                        rid,
                        min(self.timeout, remaining),
                    )
                except ImagepipeError as error:
                    if error.code == grpc.StatusCode.UNAVAILABLE:
                        unreachable = error
                    elif error.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise
                else:
                    last = response.asset
                    if last.status in TERMINAL_STATUSES:
                        return last
            await asyncio.sleep(max(0.0, min(poll_interval, deadline - loop.time())))
        raise expired()

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
        response = await self._tenant_call(
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
        try:
            call = stub.ReadRendition(
                catalog_pb2.ReadRenditionRequest(
                    asset_id=asset_id, preset=preset, accept_formats=parse_formats(accept)
                ),
                timeout=timeout or self.timeout,
                metadata=self._tenant_metadata(rid),
            )
            async for message in call:
                if message.WhichOneof("part") == "rendition":
                    rendition = message.rendition
                elif rendition is None:
                    raise _malformed("ReadRendition sent bytes before the metadata", rid)
                else:
                    parts.append(message.chunk)
        except grpc.aio.AioRpcError as error:
            raise ImagepipeError.from_rpc_error(error, rid) from None
        if rendition is None:
            raise _malformed("ReadRendition ended without the rendition's metadata", rid)
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
        response = await self._tenant_call(
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
            metadata=self._tenant_metadata(rid),
        )
        try:
            async for update in call:
                yield update.asset
        except grpc.aio.AioRpcError as error:
            raise ImagepipeError.from_rpc_error(error, rid) from None
        finally:
            call.cancel()

    async def delete_asset(
        self, asset_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> common_pb2.Asset:
        """Soft-delete an asset; Purge reclaims its objects later."""
        response = await self._tenant_call(
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
        response = await self._tenant_call(
            self._catalog().FindSimilar, request, request_id, timeout
        )
        return list(response.assets)

    async def tenant_metrics(
        self, *, request_id: str | None = None, timeout: float | None = None
    ) -> catalog_pb2.GetTenantMetricsResponse:
        """Counts and bytes of the calling tenant."""
        return await self._tenant_call(
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
        return await self._tenant_call(self._catalog().Purge, request, request_id, timeout or 300.0)

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
        metadata = self._tenant_metadata(rid)
        stub = self._catalog()
        token = ""
        while True:
            page = await self._unary(
                stub.ListPoisonJobs,
                catalog_pb2.ListPoisonJobsRequest(
                    page_size=page_size, page_token=token, include_replayed=include_replayed
                ),
                metadata,
                rid,
                timeout,
            )
            for poison_job in page.poison_jobs:
                yield poison_job
            token = page.next_page_token
            if not token:
                return

    async def retry_poison_job(
        self, poison_job_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> catalog_pb2.RetryPoisonJobResponse:
        """Queue a poison job's render again with a fresh retry budget."""
        return await self._tenant_call(
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
        return await self._tenant_call(
            quality_pb2_grpc.QualityServiceStub(self._channel("quality")).Compare,
            quality_pb2.CompareRequest(asset_id=asset_id),
            request_id,
            timeout,
        )

    async def list_presets(
        self, *, request_id: str | None = None, timeout: float | None = None
    ) -> list[renderer_pb2.Preset]:
        """The configured rendition presets, largest first."""
        response = await self._tenant_call(
            renderer_pb2_grpc.RendererServiceStub(self._channel("renderer")).ListPresets,
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
        stub = tenant_admin_pb2_grpc.TenantAdminServiceStub(self._channel("catalog"))
        response = await self._unary(
            stub.CreateTenant,
            tenant_admin_pb2.CreateTenantRequest(name=name),
            self._admin_metadata(rid),
            rid,
            timeout,
        )
        return CreatedTenant(
            tenant=response.tenant, api_key=response.api_key, secret_key=response.secret_key
        )


def _backoff(attempt: int) -> float:
    """Seconds before retry `attempt` + 1: exponential from 0.25 s, capped, jittered."""
    return min(2.0, 0.25 * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def _malformed(message: str, request_id: str) -> ImagepipeError:
    return ImagepipeError(
        grpc.StatusCode.INTERNAL, message, reason="MALFORMED_STREAM", request_id=request_id
    )
