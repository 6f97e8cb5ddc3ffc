"""lifecycle.py as a pure state machine: any sequence of operations on a job keeps
every change in TRANSITIONS, terminal states terminal except by a replay, and at
most one attempt completed.

lifecycle.py has the guards of three operations as functions (may_complete,
may_poison, may_spare); the others are written here from its documented rules (the
module docstring and the comments of TRANSITIONS) with its state sets, as the SQL
in services/catalog/db applies them. The same property against PostgreSQL is
tests/integration/test_job_lifecycle_property.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from services.catalog.lifecycle import (
    CLAIMABLE,
    MAX_SPARES,
    STATES,
    TERMINAL,
    TRANSITIONS,
    allowed,
    may_complete,
    may_poison,
    may_spare,
)
from services.catalog.model import JobState, PoisonReason
from services.shared.retry_policy import DEFAULT_POLICY

DELIVERY_LIMIT = 2
# Written out rather than taken from lifecycle.TERMINAL, so a change there shows.
DONE_OR_DEAD = frozenset({JobState.DONE, JobState.DEAD})


@dataclass
class Job:
    """One job as the catalog's rows hold it."""

    state: JobState = JobState.PENDING
    newest: int = 0  # attempts opened so far: the fencing token of the newest
    interrupted: set[int] = field(default_factory=set)  # opened, unfinished, this budget
    completed: set[int] = field(default_factory=set)
    failures: int = 0  # permanent failures this budget
    deliveries: int = 0  # claims without a settled attempt
    spares: int = 0
    poison_open: bool = False


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.job = Job()
        self.changes: list[tuple[str, JobState, JobState]] = []

    def _to(self, operation: str, after: JobState) -> None:
        before = self.job.state
        assert after in STATES
        assert allowed(operation, before, after), f"{operation}: {before} -> {after}"
        if before in DONE_OR_DEAD and operation != "replay":
            assert after == before, f"{operation} took a {before} job to {after}"
        self.changes.append((operation, before, after))
        self.job.state = after

    def _poison(self, operation: str) -> None:
        if self.job.poison_open:
            return  # the open poison job is recorded once
        if not may_poison(self.job.state):
            return  # a late dead letter of a finished job
        self._to(operation, JobState.DEAD)
        self.job.poison_open = True
        self.job.interrupted.clear()  # its open attempts are closed as failed

    def _spared(self) -> bool:
        job = self.job
        if job.state in TERMINAL:
            return False
        if not may_spare(job.spares, len(job.interrupted), DELIVERY_LIMIT):
            return False
        job.spares += 1
        job.deliveries = 0
        return True

    @rule()
    def publish(self) -> None:
        # The broker's confirm: only a pending job moves.
        after = JobState.QUEUED if self.job.state == JobState.PENDING else self.job.state
        self._to("publish", after)

    @rule(abandoned=st.booleans())
    def claim_unpublished(self, abandoned: bool) -> None:
        # A running job whose lease long expired goes back to the outbox.
        running = self.job.state == JobState.RUNNING
        self._to("claim_unpublished", JobState.PENDING if running and abandoned else self.job.state)

    @rule()
    def claim_for_render(self) -> None:
        job = self.job
        if job.state not in CLAIMABLE:
            return
        if job.deliveries <= DELIVERY_LIMIT:
            job.deliveries += 1
            self._to("claim_for_render", job.state)
        elif not self._spared():
            self._poison("claim_for_render")

    @rule()
    def start(self) -> None:
        if self.job.state in TERMINAL:
            return
        self.job.newest += 1
        self.job.interrupted.add(self.job.newest)
        self._to("start", JobState.RUNNING)

    def _attempt(self, age: int) -> int:
        return max(1, self.job.newest - age)

    @precondition(lambda self: self.job.newest > 0)
    @rule(age=st.integers(0, 3))
    def complete(self, age: int) -> None:
        attempt = self._attempt(age)
        if not may_complete(self.job.state, self.job.newest, attempt):
            return
        self.job.completed.add(attempt)
        self.job.interrupted.discard(attempt)
        self._to("complete", JobState.DONE)

    @precondition(lambda self: self.job.newest > 0)
    @rule(age=st.integers(0, 3), transient=st.booleans(), outbox=st.booleans())
    def fail(self, age: int, transient: bool, outbox: bool) -> None:
        job, attempt = self.job, self._attempt(age)
        job.interrupted.discard(attempt)  # the attempt's own row is settled anyway
        if job.state in TERMINAL or attempt != job.newest:
            return  # only the newest attempt of an unfinished job moves it
        job.deliveries = 0
        self._to("fail", JobState.PENDING if outbox else JobState.RETRYING)
        if not transient:
            job.failures += 1
            if DEFAULT_POLICY.spent(job.failures):
                self._poison("fail")

    @rule(reason=st.sampled_from(PoisonReason))
    def give_up(self, reason: PoisonReason) -> None:
        if reason == PoisonReason.DELIVERY_LIMIT and self._spared():
            return
        self._poison("poison")

    @rule()
    def replay(self) -> None:
        job = self.job
        if not job.poison_open:
            return
        job.poison_open = False
        if job.state == JobState.DEAD:
            job.failures, job.deliveries, job.spares = 0, 0, 0
            job.interrupted.clear()
            self._to("replay", JobState.PENDING)

    @invariant()
    def at_most_one_attempt_completed(self) -> None:
        assert len(self.job.completed) <= 1, self.changes

    @invariant()
    def dead_exactly_while_a_poison_job_is_open(self) -> None:
        assert self.job.poison_open == (self.job.state == JobState.DEAD), self.changes

    @invariant()
    def deliveries_and_spares_are_bounded(self) -> None:
        assert self.job.deliveries <= DELIVERY_LIMIT + 1
        assert self.job.spares <= MAX_SPARES


Lifecycle.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestLifecycle = Lifecycle.TestCase


def test_only_a_replay_leaves_a_terminal_state() -> None:
    for operation, changes in TRANSITIONS.items():
        for before, after in changes:
            assert before in STATES and after in STATES, operation
            if operation != "replay":
                assert before not in DONE_OR_DEAD, (operation, before, after)
    assert TERMINAL == DONE_OR_DEAD
