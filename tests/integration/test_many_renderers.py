"""Renderers are competing consumers (R4.10): any number share one queue, none twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devstack import ServiceProcess, Stack, unique_jpeg
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, ingest_pb2
from tests.helpers import Services, Tenant, downsized_jpeg, upload, wait_for_status

EXTRA_RENDERERS = 3
IMAGES = 24


def _rendered_job_ids(log_file: Path) -> set[str]:
    jobs = set()
    for line in log_file.read_text(errors="replace").splitlines():
        if '"rendered"' in line:
            jobs.add(str(json.loads(line).get("job_id")))
    return jobs


@pytest.mark.timeout(300)
def test_four_renderer_processes_share_the_queue(
    stack: Stack, services: Services, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    tenant = make_tenant("many")
    extras: list[ServiceProcess] = []
    try:
        for index in range(EXTRA_RENDERERS):
            extras.append(
                stack.start_service(
                    "renderer", instance=f"many-{index}", IMAGEPIPE_RENDER_CONCURRENCY="1"
                )
            )
        for extra in extras:
            extra.wait_serving()
        before = _rendered_job_ids(stack.log_dir / "renderer.log")
        photo = downsized_jpeg(corpus / "photo_iphone6_gps.jpg", (1632, 1224))

        def send(index: int) -> ingest_pb2.UploadResponse:
            return upload(services, tenant, unique_jpeg(photo, f"many-{index}"))

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(send, range(IMAGES)))
        assets = [wait_for_status(services, tenant, r.asset.asset_id, 120) for r in responses]
        assert all(a.status == common_pb2.ASSET_STATUS_READY for a in assets)

        job_ids = {a.job_id for a in assets}
        by_renderer = {
            "main": (_rendered_job_ids(stack.log_dir / "renderer.log") - before) & job_ids
        }
        for extra in extras:
            by_renderer[extra.log_file.stem] = _rendered_job_ids(extra.log_file) & job_ids
        print("\njobs per renderer process:", {k: len(v) for k, v in by_renderer.items()})
        # Every job rendered to completion by exactly one of them; each of them took work.
        done = [job for jobs in by_renderer.values() for job in jobs]
        assert sorted(done) == sorted(job_ids)
        assert all(by_renderer.values()), by_renderer
        catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
        for asset in assets:
            job = catalog.GetJob(
                catalog_pb2.GetJobRequest(job_id=asset.job_id), metadata=tenant.metadata
            ).job
            assert job.state == common_pb2.JOB_STATE_DONE and job.attempts == 1
    finally:
        for extra in extras:
            extra.stop()
