"""The CatalogLookup port over the catalog's internal gRPC API: protobuf in, model out."""

from __future__ import annotations

from imagepipe.delivery import EXTENSIONS, preset_version
from imagepipe.v1 import catalog_internal_pb2 as internal_pb2
from imagepipe.v1 import common_pb2
from services.delivery.model import Access, AssetStatus, Rendition, Resolution
from services.shared.clients import CatalogInternalClient
from services.shared.storage import rendition_version

__all__ = ["CatalogAdapter", "resolution_from_proto"]

_STATUS = {
    common_pb2.ASSET_STATUS_PENDING: AssetStatus.PENDING,
    common_pb2.ASSET_STATUS_PROCESSING: AssetStatus.PROCESSING,
    common_pb2.ASSET_STATUS_READY: AssetStatus.READY,
    common_pb2.ASSET_STATUS_FAILED: AssetStatus.FAILED,
    common_pb2.ASSET_STATUS_DELETED: AssetStatus.DELETED,
}
_FORMAT = {
    common_pb2.IMAGE_FORMAT_JPEG: "jpeg",
    common_pb2.IMAGE_FORMAT_WEBP: "webp",
    common_pb2.IMAGE_FORMAT_AVIF: "avif",
}


def _rendition(found: internal_pb2.DeliverableRendition) -> Rendition | None:
    image_format = _FORMAT.get(found.format)
    if image_format is None or image_format not in EXTENSIONS:
        return None  # a format no delivery URL can name
    return Rendition(
        format=image_format,
        object_key=found.object_key,
        content_hash=found.content_hash,
        # The key names the bytes too: the same version, for a catalog that left it out.
        version=found.version or rendition_version(found.object_key),
        size_bytes=found.size_bytes,
        content_type=found.content_type or f"image/{image_format}",
    )


def resolution_from_proto(response: internal_pb2.ResolveDeliveryResponse) -> Resolution:
    renditions = tuple(
        rendition for found in response.renditions if (rendition := _rendition(found))
    )
    version = response.preset_version
    if renditions and not version:
        version = preset_version((r.format, r.version) for r in renditions)
    return Resolution(
        status=_STATUS.get(response.status, AssetStatus.UNKNOWN),
        renditions=renditions,
        preset_version=version,
    )


class CatalogAdapter:
    """CatalogLookup through CatalogInternalService (GetDeliveryAccess, ResolveDelivery)."""

    def __init__(self, client: CatalogInternalClient) -> None:
        self._client = client

    async def access(self, tenant_id: str, key_id: str) -> Access:
        response = await self._client.get_delivery_access(tenant_id, key_id)
        return Access(
            tenant_found=response.tenant_found,
            unsigned_delivery=response.unsigned_delivery,
            key_secret=response.key_secret,
        )

    async def resolve(self, tenant_id: str, asset_id: str, preset: str) -> Resolution:
        return resolution_from_proto(
            await self._client.resolve_delivery(tenant_id, asset_id, preset)
        )

    async def resolve_again(self, tenant_id: str, asset_id: str, preset: str) -> Resolution:
        return await self.resolve(tenant_id, asset_id, preset)
