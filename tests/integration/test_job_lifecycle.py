"""The job state machine, through the internal RPCs: fencing, the outbox, the reaper,
and the fresh retry budget of a replayed poison job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aio_pika
import grpc
import pytest

from devstack import Stack
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    events_pb2,
)
from services.shared.broker import Topology
from tests.faults.support import query
from tests.helpers import Services, Tenant, register_directly

# Far in the future for the relay, so these hand-driven jobs are never published.
NEVER = 3600


def _register(services: Services, tenant: Tenant) -> catalog_internal_pb2.RegisterAssetResponse:
    return register_directly(services, tenant, width=2, height=2, size_bytes=10)


@pytest.fixture
def internal(services: Services) -> Callable[..., object]:
    stub = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)

    def call(method: str, request: object) -> object:
        return getattr(stub, method)(request, metadata=services.internal_metadata)

    return call


def test_only_the_newest_attempt_may_commit(
    internal: Callable[..., object], services: Services, tenant: Tenant, stack: Stack
) -> None:
    job_id = _register(services, tenant).job.job_id
    start = catalog_internal_pb2.StartJobAttemptRequest(
        job_id=job_id, worker="w1", lease_seconds=60
    )
    first = internal("StartJobAttempt", start)
    second = internal(
        "StartJobAttempt", catalog_internal_pb2.StartJobAttemptRequest(job_id=job_id, worker="w2")
    )
    assert (first.attempt, second.attempt) == (1, 2)  # type: ignore[attr-defined]
    rendition = catalog_internal_pb2.RenditionRecord(
        rendition=common_pb2.Rendition(
            preset="thumb", format=common_pb2.IMAGE_FORMAT_JPEG, width=1, height=1, size_bytes=1
        ),
        object_key="k",
    )
    with pytest.raises(grpc.RpcError) as stale:
        internal(
            "CompleteJob",
            catalog_internal_pb2.CompleteJobRequest(
                job_id=job_id, attempt=1, renditions=[rendition]
            ),
        )
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # A stale failure does not move the job either.
    internal(
        "FailJobAttempt",
        catalog_internal_pb2.FailJobAttemptRequest(job_id=job_id, attempt=1, error="late"),
    )
    internal(
        "CompleteJob",
        catalog_internal_pb2.CompleteJobRequest(job_id=job_id, attempt=2, renditions=[rendition]),
    )
    # Repeating the newest attempt's completion is harmless.
    internal(
        "CompleteJob",
        catalog_internal_pb2.CompleteJobRequest(job_id=job_id, attempt=2, renditions=[rendition]),
    )
    rows = query(
        stack,
        "SELECT outcome, count(*) AS n FROM job_attempts WHERE job_id = $1::uuid GROUP BY outcome",
        job_id,
    )
    assert {r["outcome"]: r["n"] for r in rows} == {"failed": 1, "succeeded": 1}
    assert query(stack, "SELECT state FROM jobs WHERE id = $1::uuid", job_id)[0]["state"] == "done"


def test_a_failure_outside_the_broker_waits_in_the_outbox(
    internal: Callable[..., object], services: Services, tenant: Tenant, stack: Stack
) -> None:
    job_id = _register(services, tenant).job.job_id
    internal(
        "StartJobAttempt",
        catalog_internal_pb2.StartJobAttemptRequest(job_id=job_id, worker="poller"),
    )
    internal(
        "FailJobAttempt",
        catalog_internal_pb2.FailJobAttemptRequest(
            job_id=job_id,
            attempt=1,
            error="object store down",
            transient=True,
            retry_after_seconds=NEVER,
        ),
    )
    (job,) = query(
        stack,
        "SELECT state, not_before > now() + interval '50 minutes' AS later "
        "FROM jobs WHERE id = $1::uuid",
        job_id,
    )
    assert (job["state"], job["later"]) == ("pending", True)
    claimed = internal(
        "ClaimRenderJobs",
        catalog_internal_pb2.ClaimRenderJobsRequest(limit=500, lease_seconds=1, owner="t"),
    )
    assert job_id not in [r.job_id for r in claimed.render_requests]  # type: ignore[attr-defined]
    (attempt,) = query(stack, "SELECT transient FROM job_attempts WHERE job_id = $1::uuid", job_id)
    assert attempt["transient"] is True


def test_an_abandoned_attempt_goes_back_to_the_outbox(
    internal: Callable[..., object], services: Services, tenant: Tenant, stack: Stack
) -> None:
    job_id = _register(services, tenant).job.job_id
    internal(
        "StartJobAttempt",
        catalog_internal_pb2.StartJobAttemptRequest(job_id=job_id, worker="dead", lease_seconds=1),
    )
    # The renderer holding it died long ago: its lease expired more than 30 s back.
    query(
        stack,
        "UPDATE jobs SET lease_expires_at = now() - interval '1 minute' WHERE id = $1::uuid",
        job_id,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the relay of ingest reaps and publishes it
        state = query(stack, "SELECT state, published_at FROM jobs WHERE id = $1::uuid", job_id)[0]
        if state["published_at"] is not None:
            break
        time.sleep(0.2)
    assert state["published_at"] is not None, state


def test_a_replayed_poison_job_gets_a_fresh_budget(
    internal: Callable[..., object], services: Services, tenant: Tenant, stack: Stack
) -> None:
    registered = _register(services, tenant)
    job_id = registered.job.job_id
    for attempt in range(1, 5):
        internal(
            "StartJobAttempt",
            catalog_internal_pb2.StartJobAttemptRequest(job_id=job_id, worker="w"),
        )
        internal(
            "FailJobAttempt",
            catalog_internal_pb2.FailJobAttemptRequest(job_id=job_id, attempt=attempt, error="bad"),
        )
    poison = internal(
        "RecordPoisonJob",
        catalog_internal_pb2.RecordPoisonJobRequest(
            request=registered.render_request,
            error="bad",
            reason=catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
        ),
    ).poison_job  # type: ignore[attr-defined]
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)

    def replay() -> catalog_pb2.RetryPoisonJobResponse:
        response: catalog_pb2.RetryPoisonJobResponse = catalog.RetryPoisonJob(
            catalog_pb2.RetryPoisonJobRequest(poison_job_id=poison.poison_job_id),
            metadata=tenant.metadata,
        )
        return response

    def claim() -> list[events_pb2.RenderRequest]:
        claimed = internal(
            "ClaimUnpublishedJobs",
            catalog_internal_pb2.ClaimUnpublishedJobsRequest(
                limit=500, lease_seconds=1, min_age_seconds=0, owner="t"
            ),
        )
        return [r for r in claimed.render_requests if r.job_id == job_id]  # type: ignore[attr-defined]

    async def replay_and_catch_the_request() -> tuple[
        catalog_pb2.RetryPoisonJobResponse, list[events_pb2.RenderRequest]
    ]:
        """Replay, then take the replayed job's render request from whoever gets it
        first: this test's claim or ingest's relay (seen on a queue tapping the work
        exchange), so there is always a request to check."""
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel()
            topology = Topology(prefix=stack.prefix, delivery_limit=1)
            tap = await channel.declare_queue(exclusive=True)
            await tap.bind(await channel.get_exchange(topology.exchange), Topology.WORK_KEY)
            replayed = await asyncio.to_thread(replay)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                mine = await asyncio.to_thread(claim)
                while (message := await tap.get(fail=False, no_ack=True)) is not None:
                    if message.message_id == job_id:
                        mine.append(events_pb2.RenderRequest.FromString(message.body))
                if mine:
                    return replayed, mine
                await asyncio.sleep(0.1)
            raise AssertionError("nobody built a render request for the replayed job")

    replayed, requests = asyncio.run(replay_and_catch_the_request())
    assert replayed.job.state in (
        common_pb2.JOB_STATE_PENDING,
        common_pb2.JOB_STATE_QUEUED,
        common_pb2.JOB_STATE_RUNNING,
    )
    again = replay()
    assert again.poison_job.replay_time == replayed.poison_job.replay_time, (
        "replaying twice changes nothing"
    )
    # Its budget is fresh: the four failed attempts before the replay do not travel
    # with the request (a renderer would poison it at its first failure otherwise).
    assert requests
    for request in requests:
        assert len(request.attempts) == 0, request.attempts
