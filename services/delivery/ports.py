"""What the delivery use cases need from the outside, as protocols.

The catalog is reached through `CatalogLookup` (catalog.py adapts the gRPC client;
caches.CachedCatalog keeps its answers for the lookup TTL), object bytes through the
shared `ObjectStore` (S3 in production, MemoryObjectStore in unit tests).
"""

from __future__ import annotations

from typing import Protocol

from services.delivery.model import Access, Resolution
from services.shared.storage import ObjectStore

__all__ = ["CatalogLookup", "ObjectStore", "Readiness"]


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
