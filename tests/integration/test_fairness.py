"""Fair share (R9.4): one tenant's bulk upload does not starve another tenant's upload.

How long B waits is bench/timings.py's to report; this test asserts the order.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devstack import Stack, unique_jpeg
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2
from tests.faults.support import query
from tests.helpers import Services, Tenant, downsized_jpeg, upload, wait_for_status

BULK = 500


def _jobs_done(stub: catalog_pb2_grpc.CatalogServiceStub, tenant: Tenant) -> int:
    metrics = stub.GetTenantMetrics(
        catalog_pb2.GetTenantMetricsRequest(), metadata=tenant.metadata, timeout=10
    )
    return sum(c.count for c in metrics.jobs_by_state if c.state == common_pb2.JOB_STATE_DONE)


@pytest.mark.timeout(420)
def test_bulk_tenant_does_not_starve_a_single_upload(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    bulk = make_tenant("bulk")
    single = make_tenant("single")
    photo = downsized_jpeg(corpus / "photo_olympus_ep3_12mp.jpg", (1600, 1200))
    stub = catalog_pb2_grpc.CatalogServiceStub(services.catalog)

    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda i: upload(services, bulk, unique_jpeg(photo, f"bulk-{i}")), range(BULK))
        )
    backlog = BULK - _jobs_done(stub, bulk)
    assert backlog >= 100, f"only {backlog} of A's jobs were left: the test needs a backlog"
    asset_id = upload(services, single, unique_jpeg(photo, "single")).asset.asset_id
    asset = wait_for_status(services, single, asset_id, timeout=360)
    assert asset.status == common_pb2.ASSET_STATUS_READY
    # An ordering from the catalog's own records, not two durations measured by polling:
    # of A's jobs still unfinished when B's job was created, how many finished before it.
    (row,) = query(
        stack,
        """
        SELECT count(*) FILTER (WHERE a.finished_at IS NULL OR a.finished_at > b.created_at)
                 AS backlog,
               count(*) FILTER (WHERE a.finished_at > b.created_at
                                  AND a.finished_at <= b.finished_at) AS overtook
        FROM jobs a, jobs b
        WHERE a.tenant_id = $1::uuid AND b.id = $2::uuid
        """,
        bulk.tenant_id,
        asset.job_id,
    )
    print(
        f"\nbacklog of A when B uploaded: {row['backlog']} jobs; "
        f"{row['overtook']} of them finished before B's"
    )
    assert row["backlog"] >= 100, "the test needs a backlog when B uploads"
    assert row["overtook"] < row["backlog"] // 2
