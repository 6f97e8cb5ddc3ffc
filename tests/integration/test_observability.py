"""What operators see: one request id across all four services, metrics, no secrets in logs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from devstack import SERVICES, Stack, scrape_metric
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    ingest_pb2_grpc,
    quality_pb2,
    quality_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
)
from tests.helpers import (
    Services,
    Tenant,
    secrets_in_logs,
    stack_secrets,
    upload_messages,
    wait_for_status,
)

DONE = '{outcome="done"}'


def _log_entries(path: Path, request_id: str) -> list[dict[str, object]]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if request_id in line:
            entries.append(json.loads(line))
    return entries


def test_one_request_id_is_followed_through_all_four_services(
    stack: Stack, services: Services, tenant: Tenant, corpus: Path
) -> None:
    request_id = f"trace-{uuid.uuid4()}"
    metadata = (*tenant.metadata, ("x-request-id", request_id))
    data = (corpus / "orient_Landscape_6.jpg").read_bytes() + uuid.uuid4().bytes
    response = ingest_pb2_grpc.IngestServiceStub(services.ingest).Upload(
        upload_messages(data, "traced.jpg"), metadata=metadata, timeout=60
    )
    asset_id = response.asset.asset_id
    wait_for_status(services, tenant, asset_id)
    catalog_pb2_grpc.CatalogServiceStub(services.catalog).GetAsset(
        catalog_pb2.GetAssetRequest(asset_id=asset_id), metadata=metadata, timeout=10
    )
    quality_pb2_grpc.QualityServiceStub(services.quality).Compare(
        quality_pb2.CompareRequest(asset_id=asset_id), metadata=metadata, timeout=60
    )

    for name in SERVICES:
        entries = _log_entries(stack.log_dir / f"{name}.log", request_id)
        assert entries, f"request id {request_id} not in {name}.log"
        # Structured: the id is a field of JSON lines, with the service and an event.
        assert all(entry.get("request_id") == request_id for entry in entries), name
        assert all(entry.get("service") == name for entry in entries), name
    renderer = _log_entries(stack.log_dir / "renderer.log", request_id)
    assert any(asset_id in json.dumps(entry) or "rendered" in str(entry) for entry in renderer)


def test_service_logs_hold_no_secrets_after_traffic(
    stack: Stack, services: Services, tenant: Tenant, corpus: Path
) -> None:
    data = (corpus / "photo_moto_g9_empty_gps.jpg").read_bytes() + uuid.uuid4().bytes
    response = ingest_pb2_grpc.IngestServiceStub(services.ingest).Upload(
        upload_messages(data, "secret-check.jpg"), metadata=tenant.metadata, timeout=60
    )
    wait_for_status(services, tenant, response.asset.asset_id)
    secrets = {**stack_secrets(stack), "tenant key": tenant.key}
    assert secrets_in_logs(stack.log_dir, secrets) == []


Scrape = dict[str, dict[str, dict[str, float]]]  # service -> metric -> labels -> value
WATCHED = {
    "catalog": ("grpc_server_handled_total", "grpc_server_handling_seconds_count"),
    "quality": ("grpc_server_handled_total", "grpc_server_handling_seconds_count"),
    "ingest": (
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_count",
        "imagepipe_upload_bytes_total",
        "imagepipe_dedupe_hits_total",
    ),
    "renderer": (
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_count",
        "imagepipe_render_seconds_count",
        "imagepipe_rendition_bytes_total",
        "imagepipe_render_attempts_total",
        "imagepipe_event_loop_lag_seconds_count",
    ),
}


def _scrape(stack: Stack) -> Scrape:
    return {
        name: {metric: scrape_metric(stack.metrics_ports[name], metric) for metric in metrics}
        for name, metrics in WATCHED.items()
    }


def _grown(before: Scrape, after: Scrape, service: str, metric: str, labels: str = "") -> float:
    """How much one sample grew between two scrapes (what this test's traffic added)."""
    return after[service][metric].get(labels, 0.0) - before[service][metric].get(labels, 0.0)


def _total_grown(before: Scrape, after: Scrape, service: str, metric: str) -> float:
    return sum(after[service][metric].values()) - sum(before[service][metric].values())


def test_every_service_exports_its_metrics_with_counts(
    stack: Stack, services: Services, tenant: Tenant, corpus: Path
) -> None:
    """Counters grow by what this test's own calls did: deltas, not the session's totals."""
    before = _scrape(stack)
    data = (corpus / "photo_iphone6_gps.jpg").read_bytes() + uuid.uuid4().bytes
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    first = stub.Upload(upload_messages(data, "m.jpg"), metadata=tenant.metadata, timeout=60)
    stub.Upload(upload_messages(data, "m.jpg"), metadata=tenant.metadata, timeout=60)
    wait_for_status(services, tenant, first.asset.asset_id)
    quality_pb2_grpc.QualityServiceStub(services.quality).Compare(
        quality_pb2.CompareRequest(asset_id=first.asset.asset_id),
        metadata=tenant.metadata,
        timeout=60,
    )
    renderer_pb2_grpc.RendererServiceStub(services.renderer).ListPresets(
        renderer_pb2.ListPresetsRequest(), metadata=tenant.metadata, timeout=10
    )

    # The renderer counts its attempt just after the catalog made the asset ready.
    deadline = time.monotonic() + 30
    while True:
        after = _scrape(stack)
        done = _grown(before, after, "renderer", "imagepipe_render_attempts_total", DONE)
        if done >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for name in SERVICES:
        assert _total_grown(before, after, name, "grpc_server_handled_total") > 0, name
        assert _total_grown(before, after, name, "grpc_server_handling_seconds_count") > 0, name
    assert _grown(before, after, "ingest", "imagepipe_upload_bytes_total") >= 2 * len(data)
    assert _grown(before, after, "ingest", "imagepipe_dedupe_hits_total") >= 1
    for preset in ("zoom", "card", "thumb"):
        labels = f'{{preset="{preset}"}}'
        assert _grown(before, after, "renderer", "imagepipe_render_seconds_count", labels) >= 1
    jpeg = '{format="jpeg"}'
    assert _grown(before, after, "renderer", "imagepipe_rendition_bytes_total", jpeg) > 0
    assert done >= 1
    assert _grown(before, after, "renderer", "imagepipe_event_loop_lag_seconds_count") > 0
