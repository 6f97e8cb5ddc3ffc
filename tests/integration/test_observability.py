"""What operators see: one request id across all four services, metrics, no secrets in logs."""

from __future__ import annotations

import json
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


def test_every_service_exports_its_metrics_with_counts(
    stack: Stack, services: Services, tenant: Tenant, corpus: Path
) -> None:
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
    for name in SERVICES:
        handled = scrape_metric(stack.metrics_ports[name], "grpc_server_handled_total")
        assert sum(handled.values()) > 0, name
        assert scrape_metric(stack.metrics_ports[name], "grpc_server_handling_seconds_count")
    ingest = stack.metrics_ports["ingest"]
    assert scrape_metric(ingest, "imagepipe_upload_bytes_total")[""] > 0
    assert scrape_metric(ingest, "imagepipe_dedupe_hits_total")[""] >= 1
    renderer = stack.metrics_ports["renderer"]
    per_preset = scrape_metric(renderer, "imagepipe_render_seconds_count")
    assert {'{preset="zoom"}', '{preset="card"}', '{preset="thumb"}'} <= set(per_preset)
    assert scrape_metric(renderer, "imagepipe_rendition_bytes_total")['{format="jpeg"}'] > 0
    outcomes = scrape_metric(renderer, "imagepipe_render_attempts_total")
    assert outcomes.get('{outcome="done"}', 0) > 0
    assert scrape_metric(renderer, "imagepipe_event_loop_lag_seconds_count")[""] > 0
