"""What the client's calls return, beyond the contract's own messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from imagepipe.v1 import common_pb2

__all__ = [
    "CreatedSigningKey",
    "CreatedTenant",
    "DeliveryLink",
    "RenditionContent",
    "RenditionLink",
    "UploadResult",
]


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


@dataclass(frozen=True)
class DeliveryLink:
    """A delivery URL and what it carries: the version, the expiry, the signing key.

    `expire_time` is timezone-aware UTC (None: the URL does not expire); `key_id` is
    empty for an unsigned URL.
    """

    url: str
    version: str
    expire_time: datetime | None
    key_id: str

    @property
    def signed(self) -> bool:
        return bool(self.key_id)


@dataclass(frozen=True)
class CreatedSigningKey:
    """A new signing key and its secret; the secret is shown only once, store it now."""

    signing_key: common_pb2.SigningKey
    secret: str = field(repr=False)

    @property
    def key_id(self) -> str:
        return self.signing_key.key_id
