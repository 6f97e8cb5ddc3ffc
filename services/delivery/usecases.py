"""Serving one delivery URL: access, resolution, version, validators, range, body.

The decisions, in order:
1. access: a signature that verifies with an active key of the URL's tenant, or an
   unsigned URL of a tenant that allows them; then the expiry (403 otherwise);
2. resolution: the asset and the preset's renditions; the format named, or the one
   the Accept header prefers (404 when there is nothing to serve);
3. version: a `v` that is not the current one is redirected to the current URL (302),
   re-signed with the same key and expiry;
4. validators and range: 304 on a matching If-None-Match, 206 / 416 on Range;
5. body: small objects from the in-memory cache, others streamed from the store.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagepipe.delivery import DeliveryPath, ParsedQuery, canonical_string, signed_url, verify
from services.delivery.caches import ObjectCache
from services.delivery.conditional import (
    IMMUTABLE_SECONDS,
    Unsatisfiable,
    cache_control,
    if_range_allows,
    none_match,
    parse_range,
)
from services.delivery.model import Access, AssetStatus, Rendition, Resolution
from services.delivery.negotiation import choose_format
from services.delivery.ports import CatalogLookup, ObjectReader
from services.delivery.reply import ObjectStream, Reply, Request, error_reply
from services.shared.errors import InvalidArgument, NotFound, PermissionDenied
from services.shared.logs import get_logger
from services.shared.settings import Settings
from services.shared.storage import ObjectNotFound

__all__ = ["DeliveryPolicy", "RenditionService", "check_signature", "choose_rendition"]

log = get_logger(__name__)

RETRY_AFTER = "retry_after_seconds"  # error metadata the HTTP mapping turns into Retry-After


@dataclass(frozen=True)
class DeliveryPolicy:
    max_age_seconds: int
    lookup_ttl_seconds: float
    retry_after_seconds: int
    chunk_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            max_age_seconds=settings.delivery_max_age_seconds,
            lookup_ttl_seconds=settings.delivery_lookup_ttl_seconds,
            retry_after_seconds=settings.delivery_retry_after_seconds,
            chunk_bytes=settings.delivery_chunk_bytes,
        )


def check_signature(access: Access, target: DeliveryPath, query: ParsedQuery) -> str | None:
    """The secret the URL was signed with (None for an accepted unsigned URL)."""
    if query.signature is None:
        if access.tenant_found and access.unsigned_delivery:
            return None
        raise PermissionDenied(
            "this URL carries no signature and its tenant serves signed URLs only; "
            "sign it (k and s) with one of the tenant's signing keys",
            reason="SIGNATURE_REQUIRED",
        )
    if not access.key_secret:
        raise PermissionDenied(
            f"signing key {query.key_id} is not an active key of this URL's tenant "
            "(unknown or revoked); sign with an active key",
            reason="SIGNING_KEY_UNKNOWN",
        )
    canonical = canonical_string(
        target.path, version=query.version, expires=query.expires, key_id=query.key_id
    )
    if not verify(access.key_secret, canonical, query.signature):
        raise PermissionDenied(
            "the signature does not match this URL; sign exactly its path and v, e, k",
            reason="SIGNATURE_INVALID",
        )
    return access.key_secret


def _nothing_to_serve(resolution: Resolution, retry_after: int) -> NotFound:
    if resolution.status is AssetStatus.UNKNOWN:
        return NotFound("no such asset", reason="ASSET_NOT_FOUND")
    if resolution.status is AssetStatus.DELETED:
        return NotFound("the asset was deleted", reason="ASSET_DELETED")
    if resolution.in_progress:
        return NotFound(
            f"the asset's renditions are still being made; retry in {retry_after} s",
            reason="NOT_READY",
            metadata={RETRY_AFTER: retry_after},
        )
    return NotFound("the asset has no rendition of this preset", reason="RENDITION_NOT_FOUND")


def choose_rendition(
    resolution: Resolution, target: DeliveryPath, accept: str | None, *, retry_after: int
) -> tuple[Rendition, str]:
    """The rendition to serve and the version the URL should carry."""
    if resolution.status in (AssetStatus.UNKNOWN, AssetStatus.DELETED) or not (
        resolution.renditions
    ):
        raise _nothing_to_serve(resolution, retry_after)
    by_format = {rendition.format: rendition for rendition in resolution.renditions}
    if target.format is None:
        return by_format[choose_format(accept, by_format)], resolution.preset_version
    chosen = by_format.get(target.format)
    if chosen is None:
        raise NotFound(
            f"this preset is not rendered as {target.format}; "
            f"it is as {', '.join(sorted(by_format))}",
            reason="FORMAT_NOT_AVAILABLE",
            metadata={"formats": ",".join(sorted(by_format))},
        )
    return chosen, chosen.version


class RenditionService:
    """The delivery of one rendition URL (GET or HEAD)."""

    def __init__(
        self,
        *,
        catalog: CatalogLookup,
        store: ObjectReader,
        objects: ObjectCache,
        policy: DeliveryPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._objects = objects
        self._policy = policy
        self._clock = clock

    async def serve(self, request: Request, target: DeliveryPath, query: ParsedQuery) -> Reply:
        now = self._clock()
        secret = await self._authorize(target, query, now)
        rendition, current = await self._choose(request, target, fresh=False)
        if query.version is not None and query.version != current:
            # The URL may name bytes newer than a cached answer knows: ask again before
            # sending anyone from a new version back to an old one.
            rendition, current = await self._choose(request, target, fresh=True)
        if query.version is not None and query.version != current:
            return self._redirect(target, query, secret, current, now)
        headers = {"ETag": rendition.etag, "Cache-Control": self._lifetime(query, now)}
        if none_match(request.header("if-none-match"), rendition.etag):
            return Reply(304, headers)
        return await self._representation(request, rendition, headers)

    async def _choose(
        self, request: Request, target: DeliveryPath, *, fresh: bool
    ) -> tuple[Rendition, str]:
        lookup = self._catalog.resolve_again if fresh else self._catalog.resolve
        resolution = await lookup(target.tenant_id, target.asset_id, target.preset)
        return choose_rendition(
            resolution,
            target,
            request.header("accept"),
            retry_after=self._policy.retry_after_seconds,
        )

    async def _authorize(self, target: DeliveryPath, query: ParsedQuery, now: float) -> str | None:
        if (query.signature is None) != (query.key_id is None):
            raise InvalidArgument(
                "k and s go together: a signed URL names its key in k and carries s",
                reason="BAD_PARAMETER",
            )
        access = await self._catalog.access(target.tenant_id, query.key_id or "")
        secret = check_signature(access, target, query)
        if query.expires is not None and query.expires < now:
            expired = dt.datetime.fromtimestamp(query.expires, dt.UTC).isoformat()
            raise PermissionDenied(
                f"this URL expired at {expired}; ask for a new one", reason="URL_EXPIRED"
            )
        return secret

    def _seconds_left(self, query: ParsedQuery, now: float) -> int | None:
        return None if query.expires is None else max(0, int(query.expires - now))

    def _lifetime(self, query: ParsedQuery, now: float) -> str:
        """Versioned: immutable (until the expiry); unversioned: the configured max-age."""
        left = self._seconds_left(query, now)
        if query.version is not None:
            return cache_control(
                max_age=IMMUTABLE_SECONDS if left is None else left, immutable=True
            )
        max_age = self._policy.max_age_seconds
        return cache_control(max_age=max_age if left is None else min(max_age, left))

    def _redirect(
        self, target: DeliveryPath, query: ParsedQuery, secret: str | None, current: str, now: float
    ) -> Reply:
        """To the URL of the current version: an absolute-path reference, so the client
        resolves it against the base it reached this service at."""
        location = signed_url(
            "",
            target.path,
            version=current,
            expires=query.expires,
            key_id=query.key_id if secret is not None else None,
            secret=secret,
        )
        left = self._seconds_left(query, now)
        max_age = self._policy.max_age_seconds
        lifetime = cache_control(max_age=max_age if left is None else min(max_age, left))
        headers = {"Location": location, "Cache-Control": lifetime, "Content-Length": "0"}
        return Reply(302, headers)

    async def _representation(
        self, request: Request, rendition: Rendition, headers: dict[str, str]
    ) -> Reply:
        size = rendition.size_bytes
        headers |= {"Content-Type": rendition.content_type, "Accept-Ranges": "bytes"}
        byte_range = None
        if if_range_allows(request.header("if-range"), rendition.etag):
            try:
                byte_range = parse_range(request.header("range"), size)
            except Unsatisfiable:
                return error_reply(
                    416,
                    "RANGE_NOT_SATISFIABLE",
                    f"the range asked for is outside the {size} bytes of this image",
                    {"Content-Range": f"bytes */{size}", "Cache-Control": "no-store"},
                )
        start, length = (0, size) if byte_range is None else (byte_range.start, byte_range.length)
        if byte_range is not None:
            headers["Content-Range"] = byte_range.content_range(size)
        headers["Content-Length"] = str(length)
        status = 200 if byte_range is None else 206
        if request.method == "HEAD":
            return Reply(status, headers)
        return Reply(status, headers, await self._body(rendition, start, length))

    async def _body(self, rendition: Rendition, start: int, length: int) -> bytes | ObjectStream:
        size = rendition.size_bytes
        try:
            if self._objects.keeps(size):
                data = await self._objects.get(rendition.object_key)
                return data[start : start + length]
            if size <= self._policy.chunk_bytes:
                # No bigger than one streamed piece: one read, sent in one write.
                data = await self._store.get_bytes(rendition.object_key)
                return data[start : start + length]
            # Streamed: one piece in memory at a time, however large the object.
            whole = start == 0 and length == size
            chunks = self._store.iter_chunks(
                rendition.object_key,
                self._policy.chunk_bytes,
                offset=start,
                length=None if whole else length,  # no Range header for the whole object
            )
            first = await anext(chunks, b"")
            return ObjectStream(first, chunks, length)
        except ObjectNotFound:
            log.warning(
                "the catalog lists a rendition the object store does not have",
                extra={"key": rendition.object_key},
            )
            raise
