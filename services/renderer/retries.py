"""How a renderer settles a failed attempt, decided by pure functions.

The retry policy itself (2, 4, 8 s, then poison; transient failures free) lives in
services/shared/retry_policy.py, shared with the catalog, and is always the one built
from the settings (the consumer's from its topology, the poller's from the wiring):
no decision here falls back to the defaults. Here: what the broker path
does with the message, what the polling path asks of the outbox, and the attempt
history a retried message carries (repeated transient failures collapsed into one
entry, so a long outage does not grow the message without bound).
"""

from __future__ import annotations

import enum

from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import common_pb2, events_pb2
from services.shared.limits import clip_error
from services.shared.retry_policy import Decision

__all__ = ["MessageAction", "message_action", "outbox_retry_after", "with_attempt"]


class MessageAction(enum.Enum):
    ACK = "ack"  # settled: done, skipped, or the next attempt is in a delay queue
    NACK = "nack"  # back to the work queue: what had to be recorded first was not
    REJECT = "reject"  # given up and recorded: dead-letter it (parked by the recorder)


def message_action(decision: Decision, recorded: bool) -> MessageAction:
    """After a failed attempt: `recorded` is whether the delay-queue publish (retry)
    or the poison job (give up) was confirmed. Nothing unconfirmed is acked."""
    if not recorded:
        return MessageAction.NACK
    return MessageAction.REJECT if decision.give_up else MessageAction.ACK


def outbox_retry_after(decision: Decision) -> int:
    """Seconds the polling path asks the outbox to hold the job; 0 when giving up
    (the job waits as `retrying`, and the catalog makes it poison: its budget is
    spent, so nothing depends on the give-up call that follows)."""
    return 0 if decision.give_up else decision.delay


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def with_attempt(
    request: events_pb2.RenderRequest,
    attempt: int,
    error: str,
    transient: bool,
    now: Timestamp | None = None,
) -> events_pb2.RenderRequest:
    """A copy of the request with this failed attempt added to its history.

    A transient failure right after another transient failure does not add an
    entry: the last one counts it (repeats) and keeps when the first ended.
    """
    end = now if now is not None else _now()
    history = events_pb2.RenderRequest()
    history.CopyFrom(request)
    last = history.attempts[-1] if history.attempts else None
    if transient and last is not None and last.transient:
        if not last.HasField("first_end_time"):
            last.first_end_time.CopyFrom(last.end_time)
        last.repeats = max(last.repeats, 1) + 1
        last.attempt = attempt
        last.end_time.CopyFrom(end)
        last.error = clip_error(error)
        return history
    history.attempts.append(
        common_pb2.JobAttempt(
            attempt=attempt, end_time=end, error=clip_error(error), transient=transient
        )
    )
    return history
