"""WatchAsset calls the client cancels end cleanly in the catalog: no traceback, no
"Task exception was never retrieved", every watch unsubscribed."""

from __future__ import annotations

import time

import grpc

from devstack import Stack, scrape_metric
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2
from tests.helpers import Services, Tenant, register_directly

WATCHERS = "imagepipe_asset_watchers"
# How long after its start each call is cancelled: from before the first message
# reaches the client to well after, so that cancellations land on every step of the
# call (authentication, the first read, sending, waiting for a change).
CANCEL_AFTER_SECONDS = [i / 2000 for i in range(40)]


def _watchers(stack: Stack) -> float:
    return sum(scrape_metric(stack.metrics_ports["catalog"], WATCHERS).values())


def test_cancelled_watches_leave_no_error_and_no_watcher(
    services: Services, stack: Stack, tenant: Tenant
) -> None:
    log = stack.log_dir / "catalog.log"
    start = log.stat().st_size
    stub = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    # No original behind it: the asset stays unfinished while its render is retried.
    asset_id = register_directly(services, tenant).asset.asset_id
    request = catalog_pb2.WatchAssetRequest(asset_id=asset_id)

    first = stub.WatchAsset(request, metadata=tenant.metadata, timeout=60)
    assert next(first).asset.status in (
        common_pb2.ASSET_STATUS_PENDING,
        common_pb2.ASSET_STATUS_PROCESSING,
    )
    assert _watchers(stack) >= 1
    first.cancel()
    ends = [first.code()]
    for delay in CANCEL_AFTER_SECONDS:
        call = stub.WatchAsset(request, metadata=tenant.metadata, timeout=60)
        time.sleep(delay)
        call.cancel()
        ends.append(call.code())
    # Every call ended by the client, none by the stream finishing on its own.
    assert set(ends) == {grpc.StatusCode.CANCELLED}

    deadline = time.monotonic() + 30
    while _watchers(stack) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _watchers(stack) == 0

    with log.open(errors="replace") as lines:
        lines.seek(start)
        written = lines.read()
    assert '"rpc WatchAsset CANCELLED"' in written
    for sign in ("Task exception was never retrieved", "different Context", "Traceback"):
        assert sign not in written
