"""What the delivery use cases need from the outside, as protocols.

The catalog is reached through `CatalogLookup` (catalog.py adapts the gRPC client;
caches.CachedCatalog keeps its answers for the lookup TTL), object bytes through the
`ObjectReader`, the reads of the shared ObjectStore protocol (s3.S3Reader in production,
the shared MemoryObjectStore in unit tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from services.delivery.model import Access, Resolution

__all__ = ["CatalogLookup", "ObjectReader", "Readiness"]


class ObjectReader(Protocol):
    async def get_bytes(self, key: str) -> bytes: ...

    def iter_chunks(
        self, key: str, chunk_size: int, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The object's bytes from `offset`, `length` of them (None: to the end), a piece
        of at most `chunk_size` at a time. Closing the iterator early releases the
        connection."""
        ...


class CatalogLookup(Protocol):
    async def access(self, tenant_id: str, key_id: str) -> Access:
        """How the tenant's URLs are checked; key_id empty for an unsigned URL."""
        ...

    async def resolve(self, tenant_id: str, asset_id: str, preset: str) -> Resolution:
        """The asset's status and the preset's renditions in every format."""
        ...

    async def resolve_again(self, tenant_id: str, asset_id: str, preset: str) -> Resolution:
        """As resolve, but from the source when an answer may be stale (a URL names a
        version the last answer did not know)."""
        ...


class Readiness(Protocol):
    @property
    def ready(self) -> bool:
        """True while the dependencies answer and the service is not draining."""
        ...
