"""The upload path: stream in, dedupe, validate, store once, register, queue.

Order matters for "a refusal leaves nothing behind": nothing is written to S3, the
catalog or the broker until the bytes are fully received and proven to be an
accepted image. The original goes to S3 before the catalog row exists, so a row
never points at a missing object; an upload interrupted between the two leaves an
orphan object that Purge reclaims.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter

from imagepipe.v1 import catalog_internal_pb2, common_pb2, events_pb2, ingest_pb2
from services.shared.errors import InvalidArgument, ResourceExhausted, Unavailable
from services.shared.imaging.decode import ImageFacts, inspect_image
from services.shared.imaging.hashing import format_hash
from services.shared.logs import get_logger
from services.shared.metadata_wire import metadata_message
from services.shared.sandbox import DecodePool
from services.shared.spool import Spool, StreamLimits, spooled
from services.shared.storage import ObjectNotFound, ObjectStore, original_key

__all__ = [
    "CatalogPort",
    "Decoder",
    "Publisher",
    "SandboxDecoder",
    "UploadResult",
    "UploadSlots",
    "Uploads",
    "check_header",
]

log = get_logger(__name__)

UPLOAD_BYTES = Counter("imagepipe_upload_bytes_total", "Bytes received in Upload streams.")
UPLOADS = Counter("imagepipe_uploads_total", "Upload outcomes.", ["outcome"])
DEDUPE_HITS = Counter(
    "imagepipe_dedupe_hits_total", "Uploads answered with an existing asset of the same bytes."
)

# Header limits (docs/input.md): refused when exceeded, never silently cut, so the
# catalog stores exactly what the caller sent.
MAX_LABELS = 32
MAX_LABEL_KEY = 63
MAX_LABEL_VALUE = 255
MAX_FILENAME = 255
MAX_CONTENT_TYPE = 255
# fullmatch: `$` would also accept a trailing newline, which the database refuses.
# Embedding, override and isolate controls (Unicode's bidirectional formatting characters).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LABEL_KEY = re.compile(r"[a-z0-9]([a-z0-9_.-]*[a-z0-9])?")


class CatalogPort(Protocol):
    async def resolve_duplicate(
        self, tenant_id: str, content_hash: str
    ) -> catalog_internal_pb2.ResolveDuplicateResponse: ...

    async def register_asset(
        self, request: catalog_internal_pb2.RegisterAssetRequest
    ) -> catalog_internal_pb2.RegisterAssetResponse: ...

    async def mark_job_published(self, job_id: str) -> None: ...


class Publisher(Protocol):
    async def publish(self, request: events_pb2.RenderRequest) -> None: ...


class Decoder(Protocol):
    async def inspect(self, path: Path) -> ImageFacts: ...


@dataclass
class UploadResult:
    asset: common_pb2.Asset
    deduplicated: bool
    near_duplicates: list[common_pb2.SimilarAsset] = field(default_factory=list)


def _check_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(
            f"{field} is {len(value)} characters long; at most {limit} are allowed",
            reason="FIELD_TOO_LONG",
            metadata={"field": field, "limit": limit, "length": len(value)},
        )


def check_header(header: ingest_pb2.UploadHeader) -> None:
    """Refuse a header the catalog could not store as sent (NUL characters are
    refused for every request before it reaches a handler: services/shared/wire.py)."""
    _check_length("filename", header.filename, MAX_FILENAME)
    _check_length("content_type", header.content_type, MAX_CONTENT_TYPE)
    _check_filename_characters(header.filename)
    if len(header.labels) > MAX_LABELS:
        raise InvalidArgument(
            f"at most {MAX_LABELS} labels are allowed, got {len(header.labels)}",
            reason="INVALID_LABELS",
            metadata={"limit": MAX_LABELS},
        )
    for key, value in header.labels.items():
        if len(key) > MAX_LABEL_KEY or not _LABEL_KEY.fullmatch(key):
            raise InvalidArgument(
                f"label key {key[:80]!r} must be 1-{MAX_LABEL_KEY} characters of a-z, 0-9, "
                "'_', '.', '-' (starting and ending with a letter or digit)",
                reason="INVALID_LABELS",
            )
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidArgument(
                f"label {key!r} is {len(value)} characters long; at most {MAX_LABEL_VALUE} "
                "are allowed",
                reason="INVALID_LABELS",
                metadata={"limit": MAX_LABEL_VALUE},
            )


def _check_filename_characters(name: str) -> None:
    """Refuse what would make a filename lie when shown: control characters (a newline
    splits log lines and listings) and bidirectional overrides (U+202E turns
    "gnp.exe" around). Everything else, including the narrow no-break space macOS
    puts in screenshot names, is stored exactly as sent, never silently changed."""
    for position, character in enumerate(name):
        if unicodedata.category(character) == "Cc" or character in _BIDI_CONTROLS:
            raise InvalidArgument(
                f"filename has the control character U+{ord(character):04X} at position "
                f"{position}; send the name without control or bidirectional-override "
                "characters",
                reason="INVALID_FILENAME",
                metadata={"position": position},
            )


class UploadSlots:
    """How many Upload streams each tenant has open; refuses one past the limit.

    Per process: with N ingest replicas a tenant may hold N times the limit.
    """

    def __init__(self, per_tenant: int) -> None:
        self._limit = per_tenant
        self._open: dict[str, int] = {}

    def open_count(self, tenant_id: str) -> int:
        return self._open.get(tenant_id, 0)

    @contextlib.contextmanager
    def hold(self, tenant_id: str) -> Iterator[None]:
        held = self._open.get(tenant_id, 0)
        if self._limit and held >= self._limit:
            raise ResourceExhausted(
                f"this tenant already has {held} uploads in progress, the most allowed "
                "(IMAGEPIPE_TENANT_MAX_UPLOADS); wait for one to finish",
                reason="TOO_MANY_UPLOADS",
                metadata={"limit": self._limit},
            )
        self._open[tenant_id] = held + 1
        try:
            yield
        finally:
            remaining = self._open[tenant_id] - 1
            if remaining:
                self._open[tenant_id] = remaining
            else:
                del self._open[tenant_id]


class Uploads:
    """Turns an Upload stream into a stored, registered, queued asset."""

    def __init__(
        self,
        *,
        catalog: CatalogPort,
        store: ObjectStore,
        publisher: Publisher,
        decoder: Decoder,
        limits: StreamLimits,
        max_uploads_per_tenant: int = 0,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._publisher = publisher
        self._decoder = decoder
        self._limits = limits
        self.slots = UploadSlots(max_uploads_per_tenant)

    async def receive(
        self,
        messages: AsyncIterable[ingest_pb2.UploadRequest],
        *,
        tenant_id: str,
        request_id: str,
    ) -> UploadResult:
        try:
            with self.slots.hold(tenant_id):
                async with spooled(
                    messages,
                    ingest_pb2.UploadHeader,
                    {"chunk": "upload"},
                    what="upload",
                    limits=self._limits,
                    on_header=check_header,
                    on_chunk=UPLOAD_BYTES.inc,
                ) as received:
                    if received.header is None:
                        raise InvalidArgument(
                            "empty stream: send an UploadHeader, then the image in chunks",
                            reason="MALFORMED_STREAM",
                        )
                    result = await self._store_upload(
                        received.header, received.spools["chunk"], tenant_id, request_id
                    )
        except Exception:
            UPLOADS.labels("refused").inc()
            raise
        UPLOADS.labels("deduplicated" if result.deduplicated else "stored").inc()
        if result.deduplicated:
            DEDUPE_HITS.inc()
        return result

    async def _store_upload(
        self,
        header: ingest_pb2.UploadHeader,
        spool: Spool,
        tenant_id: str,
        request_id: str,
    ) -> UploadResult:
        content_hash = spool.sha256
        existing = await self._catalog.resolve_duplicate(tenant_id, content_hash)
        if existing.found:
            log.info("duplicate upload", extra={"asset_id": existing.asset.asset_id})
            return UploadResult(existing.asset, True, list(existing.near_duplicates))

        facts = await self._decoder.inspect(spool.path)
        key = original_key(tenant_id, content_hash)
        await self._store.put_file(key, spool.path, spool.size, facts.content_type)
        registration = await self._catalog.register_asset(
            catalog_internal_pb2.RegisterAssetRequest(
                tenant_id=tenant_id,
                content_hash=content_hash,
                perceptual_hash=format_hash(facts.perceptual_hash),
                filename=header.filename,
                declared_content_type=header.content_type,
                content_type=facts.content_type,
                format=facts.wire_format,  # type: ignore[arg-type]
                width=facts.width,
                height=facts.height,
                size_bytes=spool.size,
                frame_count=facts.frame_count,
                labels=dict(header.labels),
                original_key=key,
                request_id=request_id,
                metadata=metadata_message(facts.metadata),
            )
        )
        if not registration.created:
            # A concurrent upload of the same bytes registered first: same answer as a dedupe.
            return UploadResult(registration.asset, True, list(registration.near_duplicates))
        # A purge of a deleted asset with these bytes may have removed the object
        # between our put and the registration; the row must not point at nothing.
        try:
            await self._store.stat(key)
        except ObjectNotFound:
            log.warning("original removed by a concurrent purge; storing it again")
            await self._store.put_file(key, spool.path, spool.size, facts.content_type)
        if registration.deferred:
            log.info(
                "tenant at its in-flight limit; render request left for the relay",
                extra={"job_id": registration.job.job_id},
            )
        else:
            await self._queue(registration.render_request)
        log.info(
            "stored upload",
            extra={"asset_id": registration.asset.asset_id, "job_id": registration.job.job_id},
        )
        return UploadResult(registration.asset, False, list(registration.near_duplicates))

    async def _queue(self, request: events_pb2.RenderRequest) -> None:
        """Publish with confirm, then mark published; on failure the relay catches up."""
        try:
            await self._publisher.publish(request)
            await self._catalog.mark_job_published(request.job_id)
        except Unavailable as error:
            log.warning(
                "render request left in the outbox: %s",
                error.message,
                extra={"job_id": request.job_id},
            )


class SandboxDecoder:
    """Decoder that inspects uploads in the sandboxed process pool."""

    def __init__(self, pool: DecodePool, max_pixels: int) -> None:
        self._pool = pool
        self._max_pixels = max_pixels

    async def inspect(self, path: Path) -> ImageFacts:
        return await self._pool.run(inspect_image, path, self._max_pixels)
