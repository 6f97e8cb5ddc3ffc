"""The job lifecycle, written down once: its states and what each operation may do.

    pending --publish--> queued --start--> running --complete--> done
    running --fail--> retrying (delay queue) | pending (outbox) | dead (budget spent)
    any unfinished state --poison--> dead;   dead --replay--> pending
    queued/retrying with no progress: republished by the reconciler, state kept
    at the delivery limit, yet rarely the one its renderer died running: spared
    (republished, deliveries counted afresh), state kept; see crashed_it

The db's SQL takes its state lists from here (the terminal set, the in-flight set the
fair share counts, what a renderer may claim, what the reconciler republishes) and
its guarded changes ask the decisions below; the lifecycle property test checks
every state change it observes against TRANSITIONS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from services.catalog.model import JobState

__all__ = [
    "ABANDONED_AFTER",
    "CLAIMABLE",
    "IN_FLIGHT",
    "MAX_SPARES",
    "NON_TERMINAL",
    "STATES",
    "STUCK_CANDIDATES",
    "TERMINAL",
    "TRANSITIONS",
    "allowed",
    "crashed_it",
    "may_complete",
    "may_poison",
    "may_spare",
]

PENDING, QUEUED, RUNNING, RETRYING, DONE, DEAD = (
    JobState.PENDING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.RETRYING,
    JobState.DONE,
    JobState.DEAD,
)

STATES = tuple(JobState)
# Nothing moves a job out of these except a poison replay (dead -> pending).
TERMINAL = frozenset({DONE, DEAD})
NON_TERMINAL = frozenset(STATES) - TERMINAL
# On the broker (or held by a renderer): what the per-tenant fair share counts.
IN_FLIGHT = frozenset({QUEUED, RUNNING, RETRYING})
# What a renderer working without the broker may claim (lease permitting).
CLAIMABLE = frozenset({PENDING, QUEUED, RETRYING, RUNNING})
# Waiting for a message that may be gone: the reconciler republishes them.
STUCK_CANDIDATES = frozenset({QUEUED, RETRYING})

# Operation -> the (from, to) state changes it may make. A state it does not list
# is left as it is (the guarded UPDATE matches no row).
TRANSITIONS: Mapping[str, frozenset[tuple[JobState, JobState]]] = {
    # The broker confirmed the message (ingest or the relay).
    "publish": frozenset({(PENDING, QUEUED)}),
    # The relay leases jobs to publish: an abandoned attempt (running, its lease long
    # expired) goes back to the outbox; pending and stuck jobs keep their state.
    "claim_unpublished": frozenset({(RUNNING, PENDING)}),
    # A renderer without the broker leases jobs (state unchanged); past the delivery
    # limit a job is poison instead, as the work queue would dead-letter it.
    "claim_for_render": frozenset((s, DEAD) for s in CLAIMABLE),
    # A delivery opens an attempt (the attempt number fences older ones).
    "start": frozenset((s, RUNNING) for s in NON_TERMINAL),
    # The newest attempt commits its renditions.
    "complete": frozenset((s, DONE) for s in NON_TERMINAL),
    # A failed attempt: retried (retrying: a delay queue; pending: the outbox) or,
    # once the budget is spent, poison.
    "fail": frozenset((s, t) for s in NON_TERMINAL for t in (RETRYING, PENDING, DEAD) if s != t),
    # A poison job recorded (dead letter, give-up); a done job stays done.
    "poison": frozenset((s, DEAD) for s in NON_TERMINAL),
    # RetryPoisonJob: back to the outbox with a fresh budget.
    "replay": frozenset({(DEAD, PENDING)}),
}


# A running job whose lease expired this long ago has lost its renderer: the relay
# takes it back to the outbox (claim_unpublished).
ABANDONED_AFTER = dt.timedelta(seconds=30)

# How often a job at the delivery limit may be spared (see crashed_it) before it is
# poison whatever its attempts say: at most (MAX_SPARES + 1) x (limit + 1) deliveries.
MAX_SPARES = 2


def crashed_it(interrupted: int, delivery_limit: int) -> bool:
    """Whether a job at the delivery limit is what killed its renderers: more than
    half of its limit + 1 deliveries opened an attempt that never finished.

    A renderer that dies returns every job it held and each is charged a delivery,
    but only the jobs whose attempts were running have one interrupted; a job that
    follows an interrupted delivery runs alone, so a crasher's attempt is interrupted
    on nearly every delivery, while a job beside it has at most the one attempt that
    ran before the crasher was suspected (plus any crash of the renderer that was
    really nobody's fault).
    """
    return 2 * interrupted > delivery_limit + 1


def may_spare(spares: int, interrupted: int, delivery_limit: int) -> bool:
    """Over the delivery limit: spare (deliver again, to run alone) or poison.

    Spared when it did not crash its renderers (crashed_it) and has not been
    spared MAX_SPARES times already, so nothing loops forever.
    """
    return spares < MAX_SPARES and not crashed_it(interrupted, delivery_limit)


def may_complete(state: JobState, newest_attempt: int, attempt: int) -> bool:
    """Only the newest attempt of a job that is not dead records its result: the
    attempt number is a fencing token, so two overlapping attempts never both commit."""
    return state != DEAD and newest_attempt == attempt


def may_poison(state: JobState) -> bool:
    """A late dead letter of a job another delivery completed records nothing."""
    return state != DONE


def allowed(operation: str, before: str, after: str) -> bool:
    """Whether `operation` may take a job from `before` to `after` (or leave it)."""
    return before == after or (before, after) in TRANSITIONS[operation]
