"""In-memory collaborators of the delivery core: a catalog that answers as
GetDeliveryAccess and ResolveDelivery do, a clock, and a store that counts reads and
notices when a stream is closed.

`Harness` wires them the way services/delivery/wiring.py wires the real adapters, and
`Harness.request` sends one request through DeliveryCore.handle.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from imagepipe.delivery import delivery_path, preset_version, signed_url
from services.delivery.caches import CachedCatalog, ObjectCache
from services.delivery.core import DeliveryCore
from services.delivery.model import Access, AssetStatus, Rendition, Resolution
from services.delivery.reply import ObjectStream, Reply, Request
from services.delivery.usecases import DeliveryPolicy, RenditionService
from services.shared.errors import Unavailable
from services.shared.storage import (
    MemoryObjectStore,
    ObjectNotFound,
    rendition_key,
    rendition_version,
)

NOW = 1_800_000_000.0
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MIME = {"jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif"}
EXT = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeTenant:
    unsigned_delivery: bool = False
    keys: dict[str, str] = field(default_factory=dict)  # key id -> secret (active only)


@dataclass
class FakeAsset:
    status: AssetStatus
    renditions: dict[str, list[Rendition]] = field(default_factory=dict)  # by preset


class FakeCatalog:
    """CatalogLookup over dicts; counts calls; can be made unavailable or held."""

    def __init__(self) -> None:
        self.tenants: dict[str, FakeTenant] = {}
        self.assets: dict[tuple[str, str], FakeAsset] = {}
        self.calls: Counter[str] = Counter()
        self.available = True
        self.gate: asyncio.Event | None = None  # when set: calls wait for it

    async def _enter(self, name: str) -> None:
        self.calls[name] += 1
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if not self.available:
            raise Unavailable("catalog is unavailable: connection refused")

    async def access(self, tenant_id: str, key_id: str) -> Access:
        await self._enter("access")
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            return Access(tenant_found=False, unsigned_delivery=False, key_secret="")
        return Access(True, tenant.unsigned_delivery, tenant.keys.get(key_id, ""))

    async def resolve_again(self, tenant_id: str, asset_id: str, preset: str) -> Resolution:
        return await self.resolve(tenant_id, asset_id, preset)

    async def resolve(self, tenant_id: str, asset_id: str, preset: str) -> Resolution:
        await self._enter("resolve")
        asset = self.assets.get((tenant_id, asset_id))
        if asset is None:
            return Resolution(AssetStatus.UNKNOWN, (), "")
        found = tuple(asset.renditions.get(preset, ()))
        version = preset_version((r.format, r.version) for r in found) if found else ""
        return Resolution(asset.status, found, version)


class CountingStore(MemoryObjectStore):
    """MemoryObjectStore that counts whole reads, notes the pieces it streams and the
    streams closed before their end."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.pieces: list[int] = []
        self.closed_early = 0
        # When set: streams hand out their first piece, then wait for it to be set.
        self.hold: asyncio.Event | None = None

    async def get_bytes(self, key: str) -> bytes:
        self.reads += 1
        return await super().get_bytes(key)

    async def iter_chunks(
        self, key: str, chunk_size: int, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        finished = False
        self._require()
        if key not in self.objects:
            raise ObjectNotFound(key)
        data = self.objects[key][0]
        end = len(data) if length is None else min(len(data), offset + length)
        try:
            for start in range(offset, end, chunk_size):
                await asyncio.sleep(0)
                piece = data[start : min(start + chunk_size, end)]
                self.pieces.append(len(piece))
                yield piece
                if self.hold is not None:
                    await self.hold.wait()
            finished = True
        finally:
            if not finished:
                self.closed_early += 1


class FakeReadiness:
    def __init__(self) -> None:
        self.ready = True


@dataclass
class Published:
    """An asset whose renditions are in the catalog and the store."""

    tenant_id: str
    asset_id: str
    renditions: dict[str, dict[str, Rendition]]  # preset -> format -> rendition
    data: dict[str, bytes]  # object key -> bytes

    def path(self, preset: str, image_format: str | None = None) -> str:
        return delivery_path(self.tenant_id, self.asset_id, preset, image_format)

    def rendition(self, preset: str, image_format: str) -> Rendition:
        return self.renditions[preset][image_format]

    def bytes_of(self, preset: str, image_format: str) -> bytes:
        return self.data[self.rendition(preset, image_format).object_key]


class Harness:
    def __init__(
        self,
        *,
        ttl: float = 30.0,
        max_age: int = 60,
        cache_bytes: int = 1 << 20,
        max_object_bytes: int = 16 * 1024,
        chunk_bytes: int = 4096,
    ) -> None:
        self.clock = FakeClock()
        self.catalog = FakeCatalog()
        self.store = CountingStore()
        self.readiness = FakeReadiness()
        self.policy = DeliveryPolicy(
            max_age_seconds=max_age,
            lookup_ttl_seconds=ttl,
            retry_after_seconds=5,
            chunk_bytes=chunk_bytes,
        )
        self.lookups = CachedCatalog(self.catalog, ttl, timer=self.clock)
        objects = ObjectCache(self.store, max_bytes=cache_bytes, max_object_bytes=max_object_bytes)
        renditions = RenditionService(
            catalog=self.lookups,
            store=self.store,
            objects=objects,
            policy=self.policy,
            clock=self.clock,
        )
        self.core = DeliveryCore(renditions, self.readiness, self.policy)

    def tenant(self, *, unsigned: bool = False) -> tuple[str, str, str]:
        """A new tenant with one signing key: (tenant id, key id, secret)."""
        tenant_id, key_id, secret = str(uuid.uuid4()), secrets.token_hex(8), "k" * 43
        self.catalog.tenants[tenant_id] = FakeTenant(unsigned, {key_id: secret})
        return tenant_id, key_id, secret

    def publish(
        self,
        tenant_id: str,
        formats: dict[str, dict[str, bytes]],
        *,
        status: AssetStatus = AssetStatus.READY,
    ) -> Published:
        """An asset with renditions: preset -> format -> bytes, stored and catalogued."""
        asset_id = str(uuid.uuid4())
        asset = FakeAsset(status)
        published = Published(tenant_id, asset_id, {}, {})
        for preset, by_format in formats.items():
            for image_format, data in by_format.items():
                content_hash = hashlib.sha256(data).hexdigest()
                key = rendition_key(tenant_id, asset_id, preset, EXT[image_format], content_hash)
                self.store.objects[key] = (data, MIME[image_format], _EPOCH)
                rendition = Rendition(
                    format=image_format,
                    object_key=key,
                    content_hash=content_hash,
                    version=rendition_version(key),
                    size_bytes=len(data),
                    content_type=MIME[image_format],
                )
                asset.renditions.setdefault(preset, []).append(rendition)
                published.renditions.setdefault(preset, {})[image_format] = rendition
                published.data[key] = data
        self.catalog.assets[(tenant_id, asset_id)] = asset
        return published

    async def request(self, url: str, method: str = "GET", **headers: str) -> Reply:
        """Headers by keyword: if_none_match="..." is If-None-Match."""
        parts = urlsplit(url)
        return await self.core.handle(
            Request(
                method,
                parts.path,
                dict(parse_qsl(parts.query, keep_blank_values=True)),
                {name.replace("_", "-").lower(): value for name, value in headers.items()},
            )
        )


def sign(
    path: str, key_id: str, secret: str, *, version: str | None = None, expires: int | None = None
) -> str:
    """A signed path + query, as the client library makes them."""
    return signed_url("", path, version=version, expires=expires, key_id=key_id, secret=secret)


async def body_of(reply: Reply) -> bytes:
    """The whole body of a reply, a stream read to its end (and closed)."""
    if isinstance(reply.body, ObjectStream):
        pieces = [piece async for piece in reply.body]
        await reply.body.aclose()
        return b"".join(pieces)
    return reply.body or b""
