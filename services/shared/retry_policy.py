"""The retry policy of render jobs, the one implementation every path uses.

Three retries after the first attempt, 2, 4 and 8 seconds apart; the fourth failure
makes the job poison. Failures caused by an unreachable dependency (the object store
or the catalog down) are transient: they are retried after the longest delay and do
not use up the budget, so an outage delays jobs rather than killing them. Content
failures (a missing or undecodable original) use it up.

The broker path (delay queues), the polling path (a not-before time in the outbox)
and the catalog (which makes a job poison itself once its budget is spent, so a
give-up that could not be recorded is never lost) all decide with this class, built
by `retry_policy` from IMAGEPIPE_RETRY_DELAYS, which every service reads alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.shared.settings import Settings

__all__ = ["DEFAULT_POLICY", "RETRY_DELAYS", "Decision", "RetryPolicy", "retry_policy"]

RETRY_DELAYS = (2, 4, 8)


class _Attempt(Protocol):
    @property
    def transient(self) -> bool: ...


@dataclass(frozen=True)
class Decision:
    give_up: bool
    delay: int  # seconds until the next attempt (when not giving up)
    failures: int  # failures that count against the budget, this one included


@dataclass(frozen=True)
class RetryPolicy:
    delays: tuple[int, ...] = RETRY_DELAYS

    @property
    def max_retries(self) -> int:
        return len(self.delays)

    @property
    def longest_backoff(self) -> dt.timedelta:
        """By then a failed job's next attempt is due, whichever delay it got."""
        return dt.timedelta(seconds=max(self.delays))

    def spent(self, failures: int) -> bool:
        """Whether `failures` budget-counting failures exhaust the budget."""
        return failures > self.max_retries

    def decide(self, previous: Sequence[_Attempt], transient: bool) -> Decision:
        """After a failed attempt, given the failed attempts before it."""
        failures = sum(1 for a in previous if not a.transient) + (0 if transient else 1)
        if transient:
            return Decision(give_up=False, delay=self.delays[-1], failures=failures)
        if not self.spent(failures):
            return Decision(give_up=False, delay=self.delays[failures - 1], failures=failures)
        return Decision(give_up=True, delay=0, failures=failures)


DEFAULT_POLICY = RetryPolicy()


def retry_policy(settings: Settings) -> RetryPolicy:
    """The policy every service uses: the one place it is built from settings."""
    return RetryPolicy(tuple(settings.retry_delays))
