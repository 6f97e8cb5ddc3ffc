"""The outbox relay and reconciler on fakes: what it claims, when it stops a pass,
and when it also republishes stuck jobs."""

from __future__ import annotations

import uuid

from imagepipe.v1 import catalog_internal_pb2, events_pb2
from services.ingest.relay import STUCK_AFTER_SECONDS, OutboxRelay, RelaySchedule
from services.shared.errors import Unavailable
from services.shared.retry_policy import DEFAULT_POLICY


class FakeCatalog:
    def __init__(self, jobs: int) -> None:
        self.jobs = [events_pb2.RenderRequest(job_id=str(uuid.uuid4())) for _ in range(jobs)]
        self.claims: list[int] = []  # stuck_after_seconds of each claim
        self.marked: list[str] = []
        self.mark_down = False

    async def claim_unpublished_jobs(
        self, request: catalog_internal_pb2.ClaimUnpublishedJobsRequest
    ) -> list[events_pb2.RenderRequest]:
        self.claims.append(request.stuck_after_seconds)
        return self.jobs[: request.limit]

    async def mark_job_published(self, job_id: str) -> None:
        if self.mark_down:
            raise Unavailable("catalog is unavailable")
        self.marked.append(job_id)


class FakePublisher:
    def __init__(self, *, fail_at: int = -1, ready: int | None = 0) -> None:
        self.fail_at = fail_at
        self.ready = ready
        self.connected = True
        self.published: list[str] = []

    async def publish(self, request: events_pb2.RenderRequest) -> None:
        if len(self.published) == self.fail_at:
            raise Unavailable("publish not confirmed", reason="BROKER_UNAVAILABLE")
        self.published.append(request.job_id)

    async def ready_messages(self) -> int | None:
        return self.ready


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _relay(catalog: FakeCatalog, publisher: FakePublisher, clock: Clock) -> OutboxRelay:
    return OutboxRelay(
        catalog,
        publisher,
        RelaySchedule(reconcile_seconds=10, stuck_after_seconds=38),
        clock=clock,
    )


async def test_a_pass_publishes_then_marks_each_job() -> None:
    catalog, publisher = FakeCatalog(3), FakePublisher()
    assert await _relay(catalog, publisher, Clock()).run_once() == 3
    assert publisher.published == catalog.marked == [j.job_id for j in catalog.jobs]


async def test_a_pass_stops_at_the_first_unconfirmed_publish() -> None:
    catalog, publisher = FakeCatalog(3), FakePublisher(fail_at=1)
    assert await _relay(catalog, publisher, Clock()).run_once() == 1
    # The rest keep their lease and are retried by a later pass, in order.
    assert catalog.marked == [catalog.jobs[0].job_id]


async def test_a_pass_stops_when_the_confirm_cannot_be_recorded() -> None:
    catalog, publisher = FakeCatalog(3), FakePublisher()
    catalog.mark_down = True
    assert await _relay(catalog, publisher, Clock()).run_once() == 0
    assert len(publisher.published) == 1, "published once, then stopped"


async def test_nothing_is_claimed_while_the_broker_is_down() -> None:
    catalog, publisher = FakeCatalog(3), FakePublisher()
    publisher.connected = False
    assert await _relay(catalog, publisher, Clock()).run_once() == 0
    assert catalog.claims == []


async def test_the_reconciler_claims_stuck_jobs_every_interval_when_the_queue_is_empty() -> None:
    catalog, publisher, clock = FakeCatalog(0), FakePublisher(ready=0), Clock()
    relay = _relay(catalog, publisher, clock)
    for now in (0.0, 5.0, 10.0, 12.0, 19.9, 20.0):
        clock.now = now
        await relay.run_once()
    assert catalog.claims == [0, 0, 38, 0, 0, 38]


async def test_the_reconciler_waits_while_the_queue_has_a_backlog_or_is_unknown() -> None:
    catalog, clock = FakeCatalog(0), Clock()
    for ready in (5, None):
        relay = _relay(catalog, FakePublisher(ready=ready), clock)
        clock.now += 10
        await relay.run_once()
    assert catalog.claims == [0, 0]


def test_a_job_is_stuck_only_after_the_longest_backoff_and_a_margin() -> None:
    assert DEFAULT_POLICY.longest_backoff.total_seconds() < STUCK_AFTER_SECONDS
