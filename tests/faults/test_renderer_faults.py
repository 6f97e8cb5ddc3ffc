"""Renderer faults: unreadable originals, crashes mid-batch, crash loops, SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from devstack import Stack
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)
from services.shared.broker import Topology, render_message
from tests.faults.support import (
    Uploader,
    classify,
    kill_hard,
    make_images,
    query,
    replace_service,
    wait_settled,
    wait_until,
)
from tests.helpers import Services, Tenant, register_directly, wait_for_status

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def _publish(stack: Stack, request: object) -> None:
    async def run() -> None:
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(
                Topology(prefix=stack.prefix, delivery_limit=1).exchange
            )
            await exchange.publish(render_message(request), Topology.WORK_KEY)  # type: ignore[arg-type]

    asyncio.run(run())


def _parked(stack: Stack, job_id: str) -> bool:
    """Whether the dead-letter queue holds the job's message (left in place)."""

    async def run() -> bool:
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(
                Topology(prefix=stack.prefix, delivery_limit=1).dead_queue
            )
            held = []
            found = False
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                held.append(message)
                found |= message.message_id == job_id
            for message in held:
                await message.nack(requeue=True)
            return found

    return asyncio.run(run())


@pytest.mark.timeout(180)
def test_unreadable_original_backs_off_then_poisons_then_replays(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("unreadable")
    data = (CORPUS / "png_palette_trns.png").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    key = f"originals/{tenant.tenant_id}/{digest}"
    # The asset is registered but its original never reached the store.
    registered = register_directly(
        services,
        tenant,
        content_hash=digest,
        perceptual_hash="0f0f0f0f0f0f0f0f",
        width=300,
        height=225,
        size_bytes=len(data),
    )
    job_id = registered.job.job_id
    _publish(stack, registered.render_request)

    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    asset = wait_for_status(services, tenant, registered.asset.asset_id, timeout=60)
    assert asset.status == common_pb2.ASSET_STATUS_FAILED
    job = catalog.GetJob(catalog_pb2.GetJobRequest(job_id=job_id), metadata=tenant.metadata).job
    assert job.state == common_pb2.JOB_STATE_DEAD
    starts = [a.start_time.ToDatetime() for a in job.attempt_history]
    assert len(starts) == 4, job.attempt_history
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    print(f"\nunreadable original: attempts at gaps {[round(g, 2) for g in gaps]} s")
    for gap, delay in zip(gaps, (2, 4, 8), strict=True):
        assert delay <= gap < delay + 1, gaps
    assert all("missing from the object store" in a.error for a in job.attempt_history)

    (poison,) = catalog.ListPoisonJobs(
        catalog_pb2.ListPoisonJobsRequest(), metadata=tenant.metadata
    ).poison_jobs
    assert poison.job_id == job_id
    assert poison.reason == catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED
    assert len(poison.request.attempts) == 4
    assert wait_until(lambda: _parked(stack, job_id), 10), "the dead-letter queue does not hold it"

    stack.s3.client().put_object(stack.bucket, key, io.BytesIO(data), len(data))
    catalog.RetryPoisonJob(
        catalog_pb2.RetryPoisonJobRequest(poison_job_id=poison.poison_job_id),
        metadata=tenant.metadata,
    )
    replayed = wait_for_status(services, tenant, registered.asset.asset_id, timeout=30)
    assert replayed.status == common_pb2.ASSET_STATUS_READY
    assert len(replayed.renditions) == 3
    print(
        f"unreadable original: {classify(stack, [registered.asset.asset_id]).line()} (after replay)"
    )


@pytest.mark.timeout(300)
def test_renderer_killed_twice_mid_batch_loses_nothing(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("sigkill")
    uploader = Uploader(services, tenant)
    thread = uploader.start(make_images(120, seed=1))
    for ready_before_kill in (20, 60):
        assert wait_until(partial(_at_least_ready, stack, tenant, ready_before_kill), 120), (
            "renders did not progress"
        )
        kill_hard(stack.services["renderer"])
        replace_service(stack, "renderer")
    thread.join(timeout=120)
    wait_settled(stack, tenant, timeout=120)
    outcome = classify(stack, uploader.accepted)
    print(f"\nrenderer SIGKILL x2: {outcome.line()}")
    assert uploader.refused == []
    assert outcome.uploads == 120
    assert outcome.rendered + outcome.recovered == 120
    assert (outcome.lost, outcome.duplicated, outcome.poisoned, outcome.bad_renditions) == (
        0,
        0,
        0,
        0,
    )


def _at_least_ready(stack: Stack, tenant: Tenant, count: int) -> bool:
    return _ready(stack, tenant) >= count


def _ready(stack: Stack, tenant: Tenant) -> int:
    return int(
        query(
            stack,
            "SELECT count(*) AS n FROM assets WHERE tenant_id = $1::uuid AND status = 'ready'",
            tenant.tenant_id,
        )[0]["n"]
    )


@pytest.mark.timeout(300)
def test_an_image_that_kills_the_renderer_every_time_ends_as_poison(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    """A renderer that dies (SIGKILL, the way a segfault or an OOM kill ends it) each
    time it starts one particular image: after the delivery limit the message is
    dead-lettered and recorded as poison; the rest of the batch is unaffected."""
    tenant = make_tenant("crashloop")
    stack.services["renderer"].stop()
    uploader = Uploader(services, tenant)
    doomed_data = (CORPUS / "photo_craft-beer_6000x4000.jpg").read_bytes()
    uploader.upload_one(doomed_data)
    (doomed_asset,) = uploader.accepted
    doomed_job = query(stack, "SELECT id FROM jobs WHERE asset_id = $1::uuid", doomed_asset)[0][
        "id"
    ]
    uploader.start(make_images(20, seed=3)).join(timeout=120)

    def poisoned() -> bool:
        return bool(query(stack, "SELECT 1 FROM poison_jobs WHERE job_id = $1", doomed_job))

    # One job at a time, so that each crash takes down only the doomed job's delivery.
    one_at_a_time = {"IMAGEPIPE_RENDER_CONCURRENCY": "1"}

    async def crash_whenever_it_starts_the_doomed_image() -> int:
        connection = await asyncpg.connect(stack.database_url)
        try:
            kills, seen = 0, 0
            stack.services["renderer"] = stack.start_service("renderer", **one_at_a_time)
            deadline = time.monotonic() + 150
            while kills < 12 and time.monotonic() < deadline:
                started = await connection.fetchval(
                    "SELECT count(*) FROM job_attempts WHERE job_id = $1", doomed_job
                )
                if started > seen:  # the renderer just began the doomed image: it "crashes"
                    seen = started
                    kill_hard(stack.services["renderer"])
                    kills += 1
                    # The next renderer starts at once; the watch goes on meanwhile.
                    stack.services["renderer"] = stack.start_service("renderer", **one_at_a_time)
                elif await connection.fetchval(
                    "SELECT 1 FROM poison_jobs WHERE job_id = $1", doomed_job
                ):
                    return kills
                await asyncio.sleep(0.002)
            return kills
        finally:
            await connection.close()

    kills = asyncio.run(crash_whenever_it_starts_the_doomed_image())
    assert wait_until(poisoned, 60), f"no poison job after {kills} crashes"
    wait_settled(stack, tenant, timeout=120)

    (poison,) = query(stack, "SELECT reason FROM poison_jobs WHERE job_id = $1", doomed_job)
    assert poison["reason"] == "delivery_limit"
    outcome = classify(stack, uploader.accepted)
    others = classify(stack, [a for a in uploader.accepted if a != doomed_asset])
    print(f"\ncrash loop: {kills} crashes; {outcome.line()}")
    assert outcome.poisoned == 1 and outcome.lost == 0 and outcome.duplicated == 0
    assert others.rendered == 20, "the rest of the batch is unaffected"
    stack.services["renderer"].stop()
    replace_service(stack, "renderer")  # back to the usual concurrency


@pytest.mark.timeout(240)
def test_sigterm_mid_batch_exits_within_grace_and_loses_nothing(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("sigterm")
    uploader = Uploader(services, tenant)
    thread = uploader.start(make_images(80, seed=4))
    assert wait_until(lambda: _ready(stack, tenant) >= 15, 60)
    renderer = stack.services["renderer"]
    assert renderer.process is not None
    started = time.monotonic()
    renderer.signal(signal.SIGTERM)
    code = renderer.process.wait(timeout=30)
    exited_after = time.monotonic() - started
    replace_service(stack, "renderer")
    thread.join(timeout=120)
    wait_settled(stack, tenant, timeout=120)
    outcome = classify(stack, uploader.accepted)
    print(f"\nrenderer SIGTERM: exited with {code} after {exited_after:.1f} s; {outcome.line()}")
    assert code == 0
    assert exited_after < 10 + 2  # IMAGEPIPE_SHUTDOWN_GRACE_SECONDS + slack
    assert outcome.uploads == 80 and outcome.rendered + outcome.recovered == 80
    assert (outcome.lost, outcome.duplicated, outcome.bad_renditions) == (0, 0, 0)
