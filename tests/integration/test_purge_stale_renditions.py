"""A live asset's unreferenced rendition object that is younger than the grace (an
attempt may be between writing it and recording it) survives a real Purge, while the
asset's own renditions stay too. The age rule itself is tested on fakes in
tests/unit/catalog/test_purge_plan.py: S3 modification times cannot be set."""

from __future__ import annotations

import io

from devstack import Stack
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2
from tests.faults.support import make_images, query, replace_service
from tests.helpers import Services, Tenant, upload, wait_for_status


def test_a_fresh_unreferenced_rendition_of_a_live_asset_survives_purge(
    services: Services, stack: Stack, tenant: Tenant
) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    asset_id = upload(services, tenant, make_images(1, seed=15, size=(160, 120))[0]).asset.asset_id
    asset = wait_for_status(services, tenant, asset_id, timeout=60)
    assert asset.status == common_pb2.ASSET_STATUS_READY
    client = stack.s3.client()
    in_progress = f"renditions/{tenant.tenant_id}/{asset_id}/thumb.0123456789abcdef.webp"
    client.put_object(stack.bucket, in_progress, io.BytesIO(b"being written"), 13)
    # A control orphan under no live asset, so the purge is seen to do something.
    orphan = f"renditions/{tenant.tenant_id}/00000000-0000-4000-8000-000000000000/thumb.webp"
    client.put_object(stack.bucket, orphan, io.BytesIO(b"left behind"), 11)

    response = catalog.Purge(
        catalog_pb2.PurgeRequest(dry_run=False, older_than_days=0),
        metadata=tenant.metadata,
        timeout=30,
    )

    purged = {item.object_key for item in response.items}
    assert orphan in purged
    assert in_progress not in purged
    left = {
        o.object_name
        for o in client.list_objects(
            stack.bucket, prefix=f"renditions/{tenant.tenant_id}/{asset_id}/", recursive=True
        )
    }
    assert in_progress in left
    assert len(left) == 1 + len(asset.renditions) and len(asset.renditions) > 0


def test_with_no_grace_a_failed_or_live_assets_unreferenced_renditions_are_reclaimed(
    services: Services, stack: Stack, tenant: Tenant
) -> None:
    """IMAGEPIPE_PURGE_RENDITION_GRACE_SECONDS=0: what a killed attempt left under a live
    asset, or under a failed one (not deleted, so also under the grace), is reclaimed at
    once, and the rows' own objects stay."""
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    images = make_images(2, seed=16, size=(160, 120))
    live, failed = (upload(services, tenant, image).asset.asset_id for image in images)
    kept = [wait_for_status(services, tenant, a, timeout=60) for a in (live, failed)]
    assert all(a.status == common_pb2.ASSET_STATUS_READY and a.renditions for a in kept)
    query(stack, "UPDATE assets SET status = 'failed' WHERE id = $1::uuid", failed)
    client = stack.s3.client()
    left_behind = {
        f"renditions/{tenant.tenant_id}/{asset_id}/thumb.0123456789abcdef.webp"
        for asset_id in (live, failed)
    }
    for key in left_behind:
        client.put_object(stack.bucket, key, io.BytesIO(b"killed attempt"), 14)

    stack.services["catalog"].stop()
    try:
        replace_service(stack, "catalog", IMAGEPIPE_PURGE_RENDITION_GRACE_SECONDS="0")
        response = catalog.Purge(
            catalog_pb2.PurgeRequest(dry_run=False, older_than_days=0),
            metadata=tenant.metadata,
            timeout=30,
        )
    finally:
        stack.services["catalog"].stop()
        replace_service(stack, "catalog")
        # The services that call catalog see it back before the next test uses them.
        for name in ("ingest", "renderer", "quality"):
            stack.services[name].wait_serving()

    purged = {item.object_key for item in response.items}
    assert left_behind <= purged
    left = {
        o.object_name
        for asset_id in (live, failed)
        for o in client.list_objects(
            stack.bucket, prefix=f"renditions/{tenant.tenant_id}/{asset_id}/", recursive=True
        )
    }
    recorded = query(
        stack,
        "SELECT object_key FROM renditions WHERE asset_id = ANY($1::uuid[])",
        [live, failed],
    )
    assert left == {r["object_key"] for r in recorded}
