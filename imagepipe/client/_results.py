"""What the client's calls return, beyond the contract's own messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from imagepipe.v1 import common_pb2

__all__ = ["CreatedTenant", "RenditionContent", "RenditionLink", "UploadResult"]


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
