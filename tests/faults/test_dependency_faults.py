"""Dependencies going away mid-batch: RabbitMQ, PostgreSQL connections, the S3 server.

Each test restores what it broke, even when it fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import pytest
from minio.error import S3Error

from devstack import Stack
from imagepipe.v1 import renderer_pb2, renderer_pb2_grpc
from services.shared.healthcheck import check as health_status
from tests.faults.support import (
    Uploader,
    classify,
    make_images,
    query,
    rabbitmq_stopped,
    wait_settled,
    wait_until,
)
from tests.helpers import Services, Tenant


def _no_orphans(stack: Stack, tenant: Tenant) -> None:
    rows = query(
        stack,
        """
        SELECT
          (SELECT count(*) FROM assets a WHERE a.tenant_id = $1::uuid
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.asset_id = a.id)) AS assets_without_job,
          (SELECT count(*) FROM renditions r JOIN assets a ON a.id = r.asset_id
             WHERE a.tenant_id = $1::uuid AND a.status <> 'ready') AS renditions_of_unready,
          (SELECT count(*) FROM jobs j WHERE j.tenant_id = $1::uuid
             AND (SELECT count(*) FROM jobs k WHERE k.asset_id = j.asset_id) > 1) AS extra_jobs
        """,
        tenant.tenant_id,
    )[0]
    assert dict(rows) == {"assets_without_job": 0, "renditions_of_unready": 0, "extra_jobs": 0}


@pytest.mark.timeout(300)
def test_rabbitmq_stopped_for_15_seconds_mid_batch(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("broker")
    images = make_images(120, seed=5)
    # Half the batch before the outage (still uploading when it starts), the other half
    # uploaded while the broker is stopped: the outage lasts until those are all
    # answered, so "accepted during the outage" is about calls that really were.
    before = Uploader(services, tenant)
    thread = before.start(images[:60], threads=3)
    assert wait_until(lambda: before.done >= 25, 60)
    during = Uploader(services, tenant)
    renderer = renderer_pb2_grpc.RendererServiceStub(services.renderer)
    modes = set()
    with rabbitmq_stopped():
        outage_began = time.monotonic()
        uploading = during.start(images[60:], threads=3)
        while time.monotonic() < outage_began + 15 or uploading.is_alive():
            assert time.monotonic() < outage_began + 150, "uploads during the outage hang"
            status = renderer.GetRendererStatus(
                renderer_pb2.GetRendererStatusRequest(), metadata=services.admin_metadata, timeout=5
            )
            modes.add(renderer_pb2.ConsumeMode.Name(status.mode))
            time.sleep(0.5)
        outage_ended = time.monotonic()
    thread.join(timeout=120)
    accepted = before.accepted + during.accepted
    wait_settled(stack, tenant, timeout=150)
    outcome = classify(stack, accepted)
    # Every Upload call of the second half, as the client saw it: all inside the outage.
    calls = during.between(outage_began, outage_ended)
    seconds = sorted(a.answered - a.started for a in calls) or [float("nan")]
    print(
        f"\nRabbitMQ stopped {outage_ended - outage_began:.0f} s: {outcome.line()}; "
        f"renderer modes seen {sorted(modes)}; "
        f"{len(calls)} upload calls made and answered during the outage, "
        f"codes {sorted({a.code for a in calls})}, "
        f"answered in {seconds[len(seconds) // 2]:.2f} s (median), {seconds[-1]:.2f} s at most; "
        f"{len(before.retried) + len(during.retried)} calls retried by the client"
    )
    # Accepted during the outage means answered OK at the first call: a client that
    # retried UNAVAILABLE until the broker was back would also end with every upload
    # accepted, and prove nothing about the outbox.
    assert len(calls) == len(during.answers) == 60, (len(calls), len(during.answers))
    assert {a.code for a in calls} == {"OK"}, calls
    assert before.retried == [] and during.retried == [], (before.retried + during.retried)[:3]
    assert before.refused == [] and during.refused == [], (before.refused + during.refused)[:3]
    assert outcome.uploads == 120
    assert outcome.rendered + outcome.recovered == 120
    assert (outcome.lost, outcome.duplicated, outcome.bad_renditions) == (0, 0, 0)
    assert outcome.objects_checked == 3 * 120
    assert "CONSUME_MODE_CATALOG_POLLING" in modes, "the renderer worked from the catalog meanwhile"

    def back_on_the_queue() -> bool:
        return bool(
            renderer.GetRendererStatus(
                renderer_pb2.GetRendererStatusRequest(), metadata=services.admin_metadata
            ).mode
            == renderer_pb2.CONSUME_MODE_BROKER
        )

    assert wait_until(back_on_the_queue, 30), "the renderer did not return to the queue"
    # After the outage, uploads go through the broker again, end to end.
    after = Uploader(services, tenant)
    after.start(make_images(20, seed=15)).join(timeout=60)
    wait_settled(stack, tenant, timeout=60)
    again = classify(stack, after.accepted)
    published = query(
        stack,
        "SELECT count(*) AS n FROM jobs WHERE asset_id = ANY($1::uuid[]) "
        "AND published_at IS NOT NULL",
        after.accepted,
    )[0]["n"]
    print(f"after the outage: {again.line()}, {published} published through the broker")
    assert again.rendered == 20 and published == 20
    assert again.bad_renditions == 0 and again.objects_checked == 3 * 20


@pytest.mark.timeout(300)
def test_postgres_backends_terminated_mid_batch(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("postgres")
    uploader = Uploader(services, tenant)
    thread = uploader.start(make_images(100, seed=6), threads=3)
    terminated = 0
    for progress in (20, 45, 70):
        assert wait_until(partial(uploader.at_least, progress), 90)
        rows = query(
            stack,
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            stack.name,
        )
        terminated += int(rows[0]["n"])
    thread.join(timeout=120)
    wait_settled(stack, tenant, timeout=150)
    outcome = classify(stack, uploader.accepted)
    print(
        f"\nPostgreSQL: {terminated} backends terminated in 3 rounds; {outcome.line()}; "
        f"{len(uploader.retried)} upload calls retried by the client"
    )
    assert terminated > 0
    assert uploader.refused == [], uploader.refused[:3]
    assert outcome.uploads == 100 and outcome.rendered + outcome.recovered == 100
    assert (outcome.lost, outcome.duplicated, outcome.bad_renditions) == (0, 0, 0)
    assert outcome.objects_checked == 3 * 100
    _no_orphans(stack, tenant)
    assert wait_until(lambda: health_status(stack.address("catalog")) == "SERVING", 30)


@pytest.mark.timeout(300)
def test_s3_server_stopped_for_10_seconds_mid_batch(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("objectstore")
    uploader = Uploader(services, tenant)
    thread = uploader.start(make_images(100, seed=7), threads=3)
    assert wait_until(lambda: uploader.done >= 25, 60)
    stack.s3.stop()
    try:
        ingest = stack.address("ingest")
        assert wait_until(lambda: health_status(ingest) == "NOT_SERVING", 8), (
            "ingest should report NOT_SERVING while S3 is gone"
        )
        time.sleep(8)
    finally:
        stack.s3.start()
    assert wait_until(lambda: health_status(stack.address("ingest")) == "SERVING", 30)
    thread.join(timeout=180)
    wait_settled(stack, tenant, timeout=150)
    outcome = classify(stack, uploader.accepted)
    print(
        f"\nS3 stopped 10 s: {outcome.line()}; "
        f"{len(uploader.retried)} upload calls answered UNAVAILABLE and retried by the client"
    )
    # The outage was felt by the client (else the retry path was not exercised) ...
    assert uploader.retried, "no upload was refused while S3 was stopped"
    assert {a.code for a in uploader.retried} == {"UNAVAILABLE"}, uploader.retried[:3]
    # ... and every upload still ended accepted and rendered.
    assert uploader.refused == [], uploader.refused[:3]
    assert outcome.uploads == 100 and outcome.rendered + outcome.recovered == 100
    assert (outcome.lost, outcome.duplicated, outcome.bad_renditions) == (0, 0, 0)
    assert outcome.objects_checked == 3 * 100
    # No upload was answered OK without its original stored.
    client = stack.s3.client()
    keys = query(
        stack,
        "SELECT original_key FROM assets WHERE id = ANY($1::uuid[])",
        uploader.accepted,
    )
    for row in keys:
        try:
            client.stat_object(stack.bucket, row["original_key"])
        except S3Error as error:
            raise AssertionError(f"{row['original_key']} missing: {error.code}") from None
