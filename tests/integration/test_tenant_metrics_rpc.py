"""GetTenantMetrics, answered from the usage counters, equals the full recount: through
the running stack (uploads rendered by the renderer, a duplicate, a delete, the same
bytes uploaded again after the delete)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from devstack import Stack
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2
from tests.faults.support import make_images, query
from tests.helpers import Services, Tenant, upload, wait_for_status


def _name(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


def _as_row(metrics: catalog_pb2.GetTenantMetricsResponse) -> dict[str, Any]:
    """The response in the shape of a tenant_usage_recount row."""
    return {
        "asset_count": metrics.asset_count,
        "assets_by_status": {
            _name(common_pb2.AssetStatus.Name(s.status), "ASSET_STATUS_"): s.count
            for s in metrics.assets_by_status
        },
        "rendition_count": metrics.rendition_count,
        "original_bytes": metrics.original_bytes,
        "rendition_bytes": metrics.rendition_bytes,
        "logical_bytes": metrics.logical_bytes,
        "physical_bytes": metrics.physical_bytes,
        "deduplicated_uploads": metrics.deduplicated_uploads,
        "jobs_by_state": {
            _name(common_pb2.JobState.Name(s.state), "JOB_STATE_"): s.count
            for s in metrics.jobs_by_state
        },
        "poison_job_count": metrics.poison_job_count,
        "renditions_by_format": {
            _name(common_pb2.ImageFormat.Name(f.format), "IMAGE_FORMAT_"): [f.count, f.size_bytes]
            for f in metrics.renditions_by_format
        },
    }


def test_get_tenant_metrics_equals_the_recount(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    tenant = make_tenant("usage")
    images = make_images(3, seed=41, size=(160, 120))
    assets = [upload(services, tenant, image).asset.asset_id for image in images]
    assert upload(services, tenant, images[1]).deduplicated
    for asset_id in assets:
        wait_for_status(services, tenant, asset_id)
    catalog.DeleteAsset(
        catalog_pb2.DeleteAssetRequest(asset_id=assets[0]), metadata=tenant.metadata
    )
    # The same bytes again: a new asset on the original key the deleted one still holds.
    again = upload(services, tenant, images[0]).asset.asset_id
    wait_for_status(services, tenant, again)

    metrics = catalog.GetTenantMetrics(
        catalog_pb2.GetTenantMetricsRequest(), metadata=tenant.metadata, timeout=10
    )
    (row,) = query(stack, "SELECT * FROM tenant_usage_recount($1::uuid)", tenant.tenant_id)
    recount = {
        name: json.loads(value) if isinstance(value, str) else value for name, value in row.items()
    }
    assert _as_row(metrics) == recount
    assert metrics.asset_count == 3 and metrics.deduplicated_uploads == 1
    assert metrics.assets_by_status and metrics.renditions_by_format
