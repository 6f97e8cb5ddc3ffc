"""A rendered asset's renditions name their bytes, and ResolveDelivery points at them.

- every rendition's content_hash is the SHA-256 of the bytes stored for it (read back
  with ReadRendition) and its version the first 16 digits, which its object key carries;
- ResolveDelivery names the same objects, hashes and sizes, and the preset's version;
- on PostgreSQL, the lookup answers one preset's renditions of the tenant's asset, with
  its status (deleted ones included), and nothing of another tenant's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path

from imagepipe.delivery import preset_version
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)
from services.catalog.model import AssetStatus, NewRendition
from services.shared.imaging.formats import format_name
from services.shared.storage import rendition_version
from tests.helpers import Services, Tenant, upload, wait_for_status
from tests.integration.catalog_db import catalog_database, new_job, new_tenant

LEASE = dt.timedelta(seconds=60)


def _read(
    catalog: catalog_pb2_grpc.CatalogServiceStub, tenant: Tenant, asset_id: str, preset: str
) -> bytes:
    parts = list(
        catalog.ReadRendition(
            catalog_pb2.ReadRenditionRequest(asset_id=asset_id, preset=preset),
            metadata=tenant.metadata,
        )
    )
    return b"".join(p.chunk for p in parts[1:])


def test_rendered_renditions_carry_the_hash_of_their_stored_bytes(
    services: Services, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    tenant = make_tenant("hashes")
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    uploaded = upload(services, tenant, (corpus / "bmp_hopper_24bit.bmp").read_bytes())
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id, timeout=60)
    assert asset.status == common_pb2.ASSET_STATUS_READY
    assert {r.preset for r in asset.renditions} == {"zoom", "card", "thumb"}

    objects = internal.GetAssetObjects(
        catalog_internal_pb2.GetAssetObjectsRequest(
            tenant_id=tenant.tenant_id, asset_id=asset.asset_id
        ),
        metadata=services.internal_metadata,
    )
    keys = {r.rendition.preset: r.object_key for r in objects.renditions}
    for rendition in asset.renditions:
        data = _read(catalog, tenant, asset.asset_id, rendition.preset)
        assert len(data) == rendition.size_bytes
        assert rendition.content_hash == hashlib.sha256(data).hexdigest()
        assert rendition.version == rendition.content_hash[:16]
        assert rendition_version(keys[rendition.preset]) == rendition.version

        resolved = internal.ResolveDelivery(
            catalog_internal_pb2.ResolveDeliveryRequest(
                tenant_id=tenant.tenant_id, asset_id=asset.asset_id, preset=rendition.preset
            ),
            metadata=services.internal_metadata,
        )
        assert resolved.status == common_pb2.ASSET_STATUS_READY
        (served,) = resolved.renditions
        assert (served.object_key, served.content_hash, served.version) == (
            keys[rendition.preset],
            rendition.content_hash,
            rendition.version,
        )
        assert (served.size_bytes, served.content_type) == (len(data), "image/jpeg")
        assert resolved.preset_version == preset_version(
            [(format_name(rendition.format), rendition.version)]
        )


def _rendition(tenant_id: uuid.UUID, asset_id: uuid.UUID, preset: str, fmt: str) -> NewRendition:
    digest = hashlib.sha256(f"{asset_id}{preset}{fmt}".encode()).hexdigest()
    return NewRendition(
        preset=preset,
        format=fmt,
        object_key=f"renditions/{tenant_id}/{asset_id}/{preset}.{digest[:16]}.{fmt}",
        width=10,
        height=10,
        size_bytes=100,
        quality=80,
        psnr_db=None,
        psnr_infinite=None,
        ssim=None,
        hash_distance=None,
        content_sha256=digest,
    )


async def test_the_lookup_answers_one_presets_renditions_with_the_assets_status() -> None:
    async with catalog_database("delivery_lookup") as repo:
        tenant_id, other = await new_tenant(repo), await new_tenant(repo, "other")
        asset_id, job_id = await new_job(repo, tenant_id)
        pending_id, _ = await new_job(repo, tenant_id)
        started = await repo.jobs.start_attempt(job_id, "test", LEASE)
        made = [
            _rendition(tenant_id, asset_id, preset, fmt)
            for preset in ("card", "thumb")
            for fmt in ("webp", "avif", "jpeg")
        ]
        assert await repo.jobs.complete_job(job_id, started.attempt, made, None, None)

        found = await repo.assets.preset_renditions(tenant_id, asset_id, "card")
        assert found is not None and found.status == AssetStatus.READY
        assert [r.format for r in found.renditions] == ["avif", "jpeg", "webp"]
        wanted = {(r.format, r.object_key, r.content_sha256) for r in made if r.preset == "card"}
        assert {(r.format, r.object_key, r.content_sha256) for r in found.renditions} == wanted

        none_yet = await repo.assets.preset_renditions(tenant_id, pending_id, "card")
        assert none_yet is not None
        assert (none_yet.status, none_yet.renditions) == (AssetStatus.PENDING, ())
        no_preset = await repo.assets.preset_renditions(tenant_id, asset_id, "poster")
        assert no_preset is not None and no_preset.renditions == ()
        assert await repo.assets.preset_renditions(other, asset_id, "card") is None
        assert await repo.assets.preset_renditions(tenant_id, uuid.uuid4(), "card") is None

        await repo.assets.delete_asset(tenant_id, asset_id)
        deleted = await repo.assets.preset_renditions(tenant_id, asset_id, "card")
        assert deleted is not None and deleted.status == AssetStatus.DELETED
