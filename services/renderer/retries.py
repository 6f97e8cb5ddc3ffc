"""When a render attempt fails: retry after which delay, or give up.

Three retries after the first attempt, 2, 4 and 8 seconds apart; the fourth failure
makes the job poison. Failures caused by an unreachable dependency (the object store
or the catalog down) are transient: they are retried after the longest delay and do
not use up the budget, so an outage delays jobs rather than killing them. Content
failures (a missing or undecodable original) use it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imagepipe.v1 import common_pb2
from services.shared.broker import RETRY_DELAYS

__all__ = ["MAX_RETRIES", "Decision", "decide"]

MAX_RETRIES = len(RETRY_DELAYS)


@dataclass(frozen=True)
class Decision:
    give_up: bool
    delay: int  # seconds until the next attempt (when not giving up)
    failures: int  # failures that count against the budget, this one included


def decide(previous: Sequence[common_pb2.JobAttempt], transient: bool) -> Decision:
    failures = sum(1 for a in previous if not a.transient) + (0 if transient else 1)
    if transient:
        return Decision(give_up=False, delay=RETRY_DELAYS[-1], failures=failures)
    if failures <= MAX_RETRIES:
        return Decision(give_up=False, delay=RETRY_DELAYS[failures - 1], failures=failures)
    return Decision(give_up=True, delay=0, failures=failures)
