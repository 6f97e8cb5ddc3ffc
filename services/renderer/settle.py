"""After a failed attempt: the one settlement policy, whichever transport delivered the job.

decide (the retry policy) -> record the failed attempt in the catalog -> schedule the next
attempt, or give up. The transports differ only in where a job waits for its next attempt
(a `NextAttempt`):
- the broker path publishes a copy to a delay queue, which the broker must confirm; the
  catalog is told to hold nothing (the delay queue does);
- the polling path asks the catalog's outbox to hold the job for the delay, as part of
  recording the failure: nothing else to schedule.

Giving up records the poison job. The failure that spends the budget already makes the
job poison in the catalog, so a give-up that cannot reach the catalog loses nothing: the
broker path then hands the message back (to be settled again), the polling path leaves
the attempt unsettled (claimed and counted again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from imagepipe.v1 import catalog_pb2, events_pb2
from services.renderer.jobs import AttemptOutcome
from services.renderer.retries import outbox_retry_after, with_attempt
from services.shared.errors import ImagepipeError
from services.shared.logs import get_logger
from services.shared.retry_policy import Decision, RetryPolicy

__all__ = [
    "POISONED",
    "FailureCatalog",
    "NextAttempt",
    "OutboxNextAttempt",
    "Settled",
    "Settlement",
]

log = get_logger(__name__)

POISONED = Counter("imagepipe_poison_jobs_total", "Jobs given up on.", ["reason"])


class FailureCatalog(Protocol):
    """The catalog's side of a failed attempt (CatalogInternalClient in production)."""

    async def fail_job_attempt(
        self, job_id: str, attempt: int, error: str, *, transient: bool, retry_after_seconds: int
    ) -> None: ...

    async def record_poison_job(
        self,
        request: events_pb2.RenderRequest,
        error: str,
        reason: catalog_pb2.PoisonReason.ValueType,
    ) -> bool: ...


class NextAttempt(Protocol):
    """Where a job waits for its next attempt."""

    def hold_seconds(self, decision: Decision) -> int:
        """How long the catalog's outbox holds the job (0: something else holds it)."""
        ...

    async def schedule(self, history: events_pb2.RenderRequest, decision: Decision) -> bool:
        """Arrange the next attempt in `decision.delay` s; whether it is surely arranged."""
        ...


class OutboxNextAttempt:
    """The catalog's outbox holds the job for the delay: recording the failure is the
    scheduling (polling path, broker down)."""

    def hold_seconds(self, decision: Decision) -> int:
        return outbox_retry_after(decision)

    async def schedule(self, history: events_pb2.RenderRequest, decision: Decision) -> bool:
        return True


@dataclass(frozen=True)
class Settled:
    decision: Decision
    # The next attempt is arranged (retry), or the poison job is recorded (give up).
    recorded: bool


class Settlement:
    """Settles failed attempts for one transport: decide, record, retry or give up."""

    def __init__(
        self, catalog: FailureCatalog, policy: RetryPolicy, next_attempt: NextAttempt
    ) -> None:
        self._catalog = catalog
        self.policy = policy
        self._next = next_attempt

    async def settle(self, request: events_pb2.RenderRequest, result: AttemptOutcome) -> Settled:
        decision = self.policy.decide(request.attempts, result.transient)
        history = with_attempt(request, result.attempt, result.error, result.transient)
        await self._record_failure(request.job_id, result, self._next.hold_seconds(decision))
        if decision.give_up:
            recorded = await self._give_up(history, result.error)
        else:
            recorded = await self._next.schedule(history, decision)
        return Settled(decision, recorded)

    async def _record_failure(self, job_id: str, result: AttemptOutcome, hold: int) -> None:
        try:
            await self._catalog.fail_job_attempt(
                job_id,
                result.attempt,
                result.error,
                transient=result.transient,
                retry_after_seconds=hold,
            )
        except ImagepipeError as error:
            log.warning("could not record the failed attempt: %s", error.message)

    async def _give_up(self, history: events_pb2.RenderRequest, error: str) -> bool:
        """Record the poison job (job dead, asset failed); False when catalog is unreachable."""
        try:
            await self._catalog.record_poison_job(
                history, error, catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED
            )
        except ImagepipeError as failure:
            log.warning("could not record the poison job yet: %s", failure.message)
            return False
        POISONED.labels("retries_exhausted").inc()
        log.error(
            "job given up after %d attempts: %s",
            len(history.attempts),
            error,
            extra={"job_id": history.job_id},
        )
        return True
