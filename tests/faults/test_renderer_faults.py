"""Renderer faults: unreadable originals, crashes mid-batch, crash loops, SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aio_pika
import pytest

from devstack import Stack
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)
from services.shared.broker import Topology, render_message
from services.shared.settings import Settings
from tests.faults.support import (
    Uploader,
    classify,
    crash_whenever_it_starts,
    during_a_job,
    interrupted_attempts,
    kill_during_a_job,
    make_images,
    query,
    replace_service,
    wait_settled,
    wait_until,
    worker_of,
)
from tests.helpers import Services, Tenant, register_directly, wait_for_status

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
DEFAULT_DELIVERY_LIMIT = Settings.model_fields["delivery_limit"].default


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
    # Each retry waits at least its delay (the delay queues' TTLs); how much longer it
    # takes depends on the machine and is bench/timings.py's to report, not a test's.
    for gap, delay in zip(gaps, (2, 4, 8), strict=True):
        assert gap >= delay, gaps
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
    killed = []
    for ready_before_kill in (20, 60):
        assert wait_until(partial(_at_least_ready, stack, tenant, ready_before_kill), 120), (
            "renders did not progress"
        )
        killed.append(kill_during_a_job(stack, stack.services["renderer"], timeout=60))
        replace_service(stack, "renderer")
    thread.join(timeout=120)
    wait_settled(stack, tenant, timeout=120)
    outcome = classify(stack, uploader.accepted)
    # Attempts the killed processes never finished: the jobs each kill interrupted.
    interrupted = [interrupted_attempts(stack, worker, at) for worker, at in killed]
    print(f"\nrenderer SIGKILL x2: {outcome.line()}; jobs interrupted by each kill {interrupted}")
    assert all(interrupted), "a kill landed while no job was in progress: nothing was proved"
    assert uploader.refused == []
    assert outcome.uploads == 120
    assert outcome.rendered + outcome.recovered == 120
    assert outcome.recovered >= len({job for jobs in interrupted for job in jobs})
    assert (outcome.lost, outcome.duplicated, outcome.poisoned, outcome.bad_renditions) == (
        0,
        0,
        0,
        0,
    )
    assert outcome.objects_checked == 3 * 120
    # Each interrupted job was finished by a later attempt.
    for jobs in interrupted:
        finished = query(
            stack,
            "SELECT count(*) AS n FROM jobs WHERE id = ANY($1::uuid[]) "
            "AND state = 'done' AND attempts > 1",
            jobs,
        )[0]["n"]
        assert finished == len(jobs), jobs


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

    killed: list[str] = []  # worker names of the renderers started, in order
    kills = crash_whenever_it_starts(
        stack,
        doomed_job,
        env=one_at_a_time,
        max_kills=12,
        timeout=150,
        started=lambda renderer: killed.append(worker_of(renderer)),
    )
    assert wait_until(poisoned, 60), f"no poison job after {kills} crashes"
    wait_settled(stack, tenant, timeout=120)

    (poison,) = query(stack, "SELECT reason FROM poison_jobs WHERE job_id = $1", doomed_job)
    assert poison["reason"] == "delivery_limit"
    outcome = classify(stack, uploader.accepted)
    others = classify(stack, [a for a in uploader.accepted if a != doomed_asset])
    workers = [
        r["worker"]
        for r in query(
            stack,
            "SELECT worker FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
            doomed_job,
        )
    ]
    limit = int(stack.env().get("IMAGEPIPE_DELIVERY_LIMIT", DEFAULT_DELIVERY_LIMIT))
    print(
        f"\ncrash loop: {kills} crashes, {len(workers)} attempts of the doomed job "
        f"(delivery limit {limit}); {outcome.line()}"
    )
    # RabbitMQ dead-letters a message returned more than `limit` times: the doomed
    # image is delivered, and its renderer killed, exactly limit + 1 times.
    assert kills == limit + 1, f"{kills} crashes before poison, delivery limit {limit}"
    # Each delivery was started by a fresh renderer, the one killed for it.
    assert workers == killed[:kills], (workers, killed)
    assert outcome.poisoned == 1 and outcome.lost == 0 and outcome.duplicated == 0
    assert others.rendered == 20, "the rest of the batch is unaffected"
    assert others.bad_renditions == 0 and others.objects_checked == 3 * 20
    stack.services["renderer"].stop()
    replace_service(stack, "renderer")  # back to the usual concurrency


@pytest.mark.timeout(240)
def test_sigterm_mid_batch_finishes_its_jobs_and_loses_nothing(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("sigterm")
    uploader = Uploader(services, tenant)
    thread = uploader.start(make_images(80, seed=4))
    assert wait_until(lambda: _ready(stack, tenant) >= 15, 60)
    renderer = stack.services["renderer"]
    assert renderer.process is not None
    worker = worker_of(renderer)
    signalled_at = during_a_job(stack, worker, partial(renderer.signal, signal.SIGTERM), 60)
    # A hang guard, not a timing claim: the grace period is 10 s.
    code = renderer.process.wait(timeout=60)
    events = _events(renderer.log_file)  # before a new renderer appends to the same file
    replace_service(stack, "renderer")
    thread.join(timeout=120)
    wait_settled(stack, tenant, timeout=120)
    outcome = classify(stack, uploader.accepted)
    # Attempts of the terminated renderer that were running when SIGTERM landed.
    in_flight = query(
        stack,
        "SELECT job_id, outcome FROM job_attempts WHERE worker = $1 "
        "AND started_at <= $2 AND (finished_at IS NULL OR finished_at >= $2)",
        worker,
        signalled_at,
    )
    print(
        f"\nrenderer SIGTERM: exited with {code}; {len(in_flight)} jobs in flight at the "
        f"signal, outcomes {sorted(str(r['outcome']) for r in in_flight)}; {outcome.line()}"
    )
    assert code == 0
    assert in_flight, "no job was in progress when SIGTERM landed: nothing was proved"
    # Graceful: what it had started, it finished (within the grace period) itself.
    assert all(r["outcome"] == "succeeded" for r in in_flight), in_flight
    assert events[-1] == "renderer stopped", events[-5:]
    assert outcome.uploads == 80 and outcome.rendered + outcome.recovered == 80
    assert (outcome.lost, outcome.duplicated, outcome.bad_renditions) == (0, 0, 0)
    assert outcome.objects_checked == 3 * 80


def _events(log_file: Path) -> list[str]:
    return [
        str(json.loads(line).get("event"))
        for line in log_file.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
