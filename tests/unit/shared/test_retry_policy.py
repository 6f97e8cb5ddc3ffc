"""The retry policy: 2, 4, 8 s, then poison; outages do not use up the budget."""

from __future__ import annotations

from imagepipe.v1 import common_pb2
from services.shared.retry_policy import DEFAULT_POLICY

MAX_RETRIES, decide = DEFAULT_POLICY.max_retries, DEFAULT_POLICY.decide


def _failed(n: int, transient: bool = False) -> list[common_pb2.JobAttempt]:
    return [common_pb2.JobAttempt(attempt=i + 1, error="x", transient=transient) for i in range(n)]


def test_three_retries_two_four_eight_seconds_then_give_up() -> None:
    assert MAX_RETRIES == 3
    steps = [decide(_failed(n), transient=False) for n in range(4)]
    assert [(s.give_up, s.delay) for s in steps] == [(False, 2), (False, 4), (False, 8), (True, 0)]


def test_transient_failures_retry_at_the_longest_delay_without_using_the_budget() -> None:
    step = decide(_failed(3), transient=True)
    assert (step.give_up, step.delay, step.failures) == (False, 8, 3)
    # Ten outage failures earlier still leave the whole budget.
    after_outage = _failed(10, transient=True)
    assert decide(after_outage, transient=False).delay == 2
