"""The delivery service's caches: catalog answers for a short TTL, small objects by key.

- `CachedCatalog` keeps GetDeliveryAccess answers per (tenant, key id) and
  ResolveDelivery answers per (tenant, asset, preset) for the lookup TTL, so a delete
  or a revocation takes effect within it; an asset still being rendered is looked up
  again after at most a second. Concurrent misses of one key make one call.
- `ObjectCache` keeps whole small objects in an LRU bounded in bytes. Object keys name
  their bytes (services/shared/storage.py), so an entry is never stale.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache, TLRUCache, TTLCache

from services.delivery.metrics import CACHE
from services.delivery.model import Access, Resolution
from services.delivery.ports import CatalogLookup, ObjectReader

__all__ = ["CachedCatalog", "LookupCache", "ObjectCache", "SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Entries, not bytes: a Resolution is a few hundred bytes, so this is tens of MiB at most,
# and a flood of made-up ids cannot grow it further.
LOOKUP_ENTRIES = 100_000
# While an asset waits for its renditions, a page polling it should see them soon.
IN_PROGRESS_TTL_SECONDS = 1.0
# A URL naming a version the cached answer does not know asks the catalog again, at most
# this often per asset and preset: signed URLs cannot make up versions, unsigned ones
# could, and must not turn every request into a catalog call.
REFRESH_INTERVAL_SECONDS = 1.0


class SingleFlight(Generic[K, V]):
    """Concurrent loads of one key share one call.

    The call runs in a task of its own, so a caller that goes away (a client that
    disconnected) neither cancels it for the others nor loses what it stores.
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """The loaded value, and whether this caller joined a call already under way."""
        task = self._calls.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.ensure_future(load())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task), joined

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone


class LookupCache(Generic[K, V]):
    """A TTL cache (per-entry TTL) in front of a loader, with single flight."""

    def __init__(
        self,
        name: str,
        *,
        ttl_of: Callable[[V], float],
        maxsize: int = LOOKUP_ENTRIES,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hits = CACHE.labels(name, "hit")
        self._misses = CACHE.labels(name, "miss")
        self._entries: TLRUCache[K, V] = TLRUCache(
            maxsize, ttu=lambda _key, value, now: now + ttl_of(value), timer=timer
        )
        self._flight: SingleFlight[K, V] = SingleFlight()

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        cached = self._entries.get(key)
        if cached is not None:
            self._hits.inc()
            return cached

        async def load_and_keep() -> V:
            value = await load()
            self._entries[key] = value
            return value

        value, joined = await self._flight.run(key, load_and_keep)
        (self._hits if joined else self._misses).inc()
        return value


class CachedCatalog:
    """A CatalogLookup that remembers the answers of another for the lookup TTL."""

    def __init__(
        self,
        catalog: CatalogLookup,
        ttl_seconds: float,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        in_progress = min(ttl_seconds, IN_PROGRESS_TTL_SECONDS)

        def resolution_ttl(resolution: Resolution) -> float:
            waiting = resolution.in_progress and not resolution.renditions
            return in_progress if waiting else ttl_seconds

        self._access: LookupCache[tuple[str, str], Access] = LookupCache(
            "lookup", ttl_of=lambda _access: ttl_seconds, timer=timer
        )
        self._resolutions: LookupCache[tuple[str, str, str], Resolution] = LookupCache(
            "lookup", ttl_of=resolution_ttl, timer=timer
        )
        self._refreshed: TTLCache[tuple[str, str, str], bool] = TTLCache(
            LOOKUP_ENTRIES, ttl=REFRESH_INTERVAL_SECONDS, timer=timer
        )

    async def access(self, tenant_id: str, key_id: str) -> Access:
        return await self._access.get(
            (tenant_id, key_id), lambda: self._catalog.access(tenant_id, key_id)
        )

    async def resolve(self, tenant_id: str, asset_id: str, preset: str) -> Resolution:
        return await self._resolutions.get(
            (tenant_id, asset_id, preset),
            lambda: self._catalog.resolve(tenant_id, asset_id, preset),
        )

    async def resolve_again(self, tenant_id: str, asset_id: str, preset: str) -> Resolution:
        key = (tenant_id, asset_id, preset)
        if key not in self._refreshed:
            self._refreshed[key] = True
            self._resolutions.forget(key)
        return await self.resolve(tenant_id, asset_id, preset)


class ObjectCache:
    """Whole small objects in memory, least recently used first out, bounded in bytes."""

    def __init__(self, store: ObjectReader, *, max_bytes: int, max_object_bytes: int) -> None:
        self._store = store
        self._enabled = max_bytes > 0
        self._max_object_bytes = min(max_object_bytes, max_bytes)
        self._objects: LRUCache[str, bytes] = LRUCache(max(max_bytes, 1), getsizeof=len)
        self._flight: SingleFlight[str, bytes] = SingleFlight()
        self._hits = CACHE.labels("object", "hit")
        self._misses = CACHE.labels("object", "miss")

    def keeps(self, size: int) -> bool:
        """Whether an object of `size` bytes is served from here (0 bytes of cache: none)."""
        return self._enabled and size <= self._max_object_bytes

    async def get(self, key: str) -> bytes:
        cached = self._objects.get(key)
        if cached is not None:
            self._hits.inc()
            return cached

        async def read_and_keep() -> bytes:
            data = await self._store.get_bytes(key)
            if len(data) <= self._max_object_bytes:
                self._objects[key] = data
            return data

        data, joined = await self._flight.run(key, read_and_keep)
        (self._hits if joined else self._misses).inc()
        return data
