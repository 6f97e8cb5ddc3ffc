"""What the delivery service knows of the catalog: plain values, no protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Access", "AssetStatus", "Rendition", "Resolution"]


class AssetStatus(enum.Enum):
    UNKNOWN = "unknown"  # no such asset for this tenant
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(frozen=True)
class Access:
    """How a tenant's URLs are checked."""

    tenant_found: bool
    unsigned_delivery: bool
    key_secret: str  # empty: the key named is not an active key of this tenant


@dataclass(frozen=True)
class Rendition:
    format: str  # jpeg, webp, avif (imagepipe.delivery.EXTENSIONS' keys)
    object_key: str
    content_hash: str  # may be empty for renditions recorded before it was kept
    version: str
    size_bytes: int
    content_type: str

    @property
    def etag(self) -> str:
        """A strong validator: the bytes' hash, or the version that names them."""
        return f'"{self.content_hash or self.version}"'


@dataclass(frozen=True)
class Resolution:
    status: AssetStatus
    renditions: tuple[Rendition, ...]
    preset_version: str  # a negotiated URL's version; empty without renditions

    @property
    def in_progress(self) -> bool:
        return self.status in (AssetStatus.PENDING, AssetStatus.PROCESSING)
