"""Fair share (R9.4): one tenant's bulk upload does not starve another tenant's upload."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devstack import unique_jpeg
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2
from tests.helpers import Services, Tenant, downsized_jpeg, upload

BULK = 500


def _jobs_done(stub: catalog_pb2_grpc.CatalogServiceStub, tenant: Tenant) -> int:
    metrics = stub.GetTenantMetrics(
        catalog_pb2.GetTenantMetricsRequest(), metadata=tenant.metadata, timeout=10
    )
    return sum(c.count for c in metrics.jobs_by_state if c.state == common_pb2.JOB_STATE_DONE)


@pytest.mark.timeout(420)
def test_bulk_tenant_does_not_starve_a_single_upload(
    services: Services, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    bulk = make_tenant("bulk")
    single = make_tenant("single")
    photo = downsized_jpeg(corpus / "photo_olympus_ep3_12mp.jpg", (1600, 1200))
    stub = catalog_pb2_grpc.CatalogServiceStub(services.catalog)

    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda i: upload(services, bulk, unique_jpeg(photo, f"bulk-{i}")), range(BULK))
        )
    done_before = _jobs_done(stub, bulk)
    backlog = BULK - done_before
    assert backlog >= 100, f"only {backlog} of A's jobs were left: the test needs a backlog"
    half_done = done_before + backlog // 2

    started = time.monotonic()
    asset_id = upload(services, single, unique_jpeg(photo, "single")).asset.asset_id
    single_ready = bulk_half = None
    while single_ready is None or bulk_half is None:
        now = time.monotonic() - started
        assert now < 360, "neither finished in time"
        if single_ready is None:
            asset = stub.GetAsset(
                catalog_pb2.GetAssetRequest(asset_id=asset_id), metadata=single.metadata, timeout=10
            ).asset
            if asset.status == common_pb2.ASSET_STATUS_READY:
                single_ready = now
        if bulk_half is None and _jobs_done(stub, bulk) >= half_done:
            bulk_half = now
        time.sleep(0.05)
    print(
        f"\nbacklog of A when B uploaded: {backlog} jobs; B ready after {single_ready:.1f} s; "
        f"A's backlog half done after {bulk_half:.1f} s"
    )
    assert single_ready < bulk_half
