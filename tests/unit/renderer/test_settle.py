"""The settlement policy on fakes: decide, record the failure, then retry or give up,
with the transport only deciding where the next attempt waits."""

from __future__ import annotations

import pytest

from imagepipe.v1 import catalog_pb2, common_pb2, events_pb2
from services.renderer.jobs import AttemptOutcome, Outcome
from services.renderer.settle import OutboxNextAttempt, Settlement
from services.shared.errors import Unavailable
from services.shared.retry_policy import Decision, RetryPolicy

POLICY = RetryPolicy((2, 4, 8))


class FakeCatalog:
    def __init__(self, *, fail_down: bool = False, poison_down: bool = False) -> None:
        self.fail_down = fail_down
        self.poison_down = poison_down
        self.calls: list[str] = []
        self.failures: list[tuple[int, str, bool, int]] = []
        self.poisoned: list[tuple[events_pb2.RenderRequest, str, int]] = []

    async def fail_job_attempt(
        self, job_id: str, attempt: int, error: str, *, transient: bool, retry_after_seconds: int
    ) -> None:
        self.calls.append("fail")
        if self.fail_down:
            raise Unavailable("catalog is unavailable")
        self.failures.append((attempt, error, transient, retry_after_seconds))

    async def record_poison_job(
        self,
        request: events_pb2.RenderRequest,
        error: str,
        reason: catalog_pb2.PoisonReason.ValueType,
    ) -> bool:
        self.calls.append("poison")
        if self.poison_down:
            raise Unavailable("catalog is unavailable")
        self.poisoned.append((request, error, reason))
        return True


class FakeDelayQueue:
    """Holds the job itself, like the broker's delay queues."""

    def __init__(self, *, confirms: bool = True) -> None:
        self.confirms = confirms
        self.scheduled: list[tuple[int, int]] = []  # delay, attempts in the history

    def hold_seconds(self, decision: Decision) -> int:
        return 0

    async def schedule(self, history: events_pb2.RenderRequest, decision: Decision) -> bool:
        self.scheduled.append((decision.delay, len(history.attempts)))
        return self.confirms


def _request(failures: int) -> events_pb2.RenderRequest:
    return events_pb2.RenderRequest(
        job_id="job",
        attempts=[common_pb2.JobAttempt(attempt=n + 1, error="bad") for n in range(failures)],
    )


def _failed(attempt: int, transient: bool = False) -> AttemptOutcome:
    return AttemptOutcome(Outcome.FAILED, attempt, "ORIGINAL_MISSING: gone", transient)


@pytest.mark.parametrize(("failures", "delay"), [(0, 2), (1, 4), (2, 8)])
async def test_a_failure_with_budget_left_is_recorded_then_scheduled(
    failures: int, delay: int
) -> None:
    catalog, queue = FakeCatalog(), FakeDelayQueue()
    settled = await Settlement(catalog, POLICY, queue).settle(
        _request(failures), _failed(failures + 1)
    )
    assert (settled.decision.give_up, settled.decision.delay, settled.recorded) == (
        False,
        delay,
        True,
    )
    assert catalog.calls == ["fail"]
    assert catalog.failures == [(failures + 1, "ORIGINAL_MISSING: gone", False, 0)]
    assert queue.scheduled == [(delay, failures + 1)], "the history carries this attempt"


async def test_the_failure_that_spends_the_budget_is_recorded_then_given_up() -> None:
    catalog, queue = FakeCatalog(), FakeDelayQueue()
    settled = await Settlement(catalog, POLICY, queue).settle(_request(3), _failed(4))
    assert settled.decision.give_up and settled.recorded
    assert catalog.calls == ["fail", "poison"]
    ((history, error, reason),) = catalog.poisoned
    assert [a.attempt for a in history.attempts] == [1, 2, 3, 4]
    assert (error, reason) == (
        "ORIGINAL_MISSING: gone",
        catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
    )
    assert queue.scheduled == []


async def test_what_could_not_be_arranged_is_reported_not_raised() -> None:
    lost_give_up = await Settlement(FakeCatalog(poison_down=True), POLICY, FakeDelayQueue()).settle(
        _request(3), _failed(4)
    )
    assert lost_give_up.decision.give_up and not lost_give_up.recorded
    unconfirmed = await Settlement(FakeCatalog(), POLICY, FakeDelayQueue(confirms=False)).settle(
        _request(0), _failed(1)
    )
    assert not unconfirmed.recorded


async def test_a_failure_the_catalog_cannot_record_still_schedules_the_retry() -> None:
    catalog, queue = FakeCatalog(fail_down=True), FakeDelayQueue()
    settled = await Settlement(catalog, POLICY, queue).settle(_request(0), _failed(1))
    assert settled.recorded and queue.scheduled == [(2, 1)]


async def test_transient_failures_keep_the_budget_and_wait_the_longest_delay() -> None:
    catalog, queue = FakeCatalog(), FakeDelayQueue()
    settled = await Settlement(catalog, POLICY, queue).settle(_request(3), _failed(4, True))
    assert not settled.decision.give_up and queue.scheduled == [(8, 4)]
    assert catalog.failures == [(4, "ORIGINAL_MISSING: gone", True, 0)]


async def test_the_outbox_holds_the_job_for_the_delay_and_nothing_else_is_scheduled() -> None:
    catalog = FakeCatalog()
    settlement = Settlement(catalog, RetryPolicy((5, 50)), OutboxNextAttempt())
    retry = await settlement.settle(_request(0), _failed(1))
    give_up = await settlement.settle(_request(2), _failed(3))
    assert retry.recorded and give_up.recorded
    assert [retry_after for *_, retry_after in catalog.failures] == [5, 0]
    assert catalog.calls == ["fail", "fail", "poison"]
