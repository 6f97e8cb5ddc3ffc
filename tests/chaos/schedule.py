"""The fault schedule of a seed: which faults, when, for how long (overlaps allowed).

Everything comes from `random.Random(seed)`, so a seed names its schedule exactly:
`make_schedule(seed, profile)` returns the same list on every machine and every run.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

__all__ = ["PROFILES", "Fault", "FaultKind", "Profile", "make_schedule"]


class FaultKind(enum.Enum):
    """What a fault does; `value` is the name printed in summaries."""

    RENDERER_SIGKILL = "renderer-kill"  # the renderer and its workers, as an OOM kill
    RENDERER_SIGTERM = "renderer-term"  # a graceful stop, as a rolling deploy
    INGEST_SIGKILL = "ingest-kill"
    CATALOG_SIGKILL = "catalog-kill"
    RABBITMQ_STOP = "rabbitmq-stop"  # stop_app on the run's own node
    QUEUE_PURGE = "queue-purge"  # the work queue loses every ready message
    PG_TERMINATE = "pg-terminate"  # pg_terminate_backend on the run's database only
    S3_STOP = "s3-stop"
    CATALOG_DOWN_AT_GIVE_UP = "giveup-catalog-down"  # catalog killed while a give-up waits

    @property
    def instant(self) -> bool:
        """Faults that happen at a moment rather than last (their duration is 0)."""
        return self in (FaultKind.QUEUE_PURGE, FaultKind.PG_TERMINATE)


# How long each lasting fault keeps its resource down (seconds, uniform in range).
DURATIONS: dict[FaultKind, tuple[float, float]] = {
    FaultKind.RENDERER_SIGKILL: (0.5, 6.0),
    FaultKind.RENDERER_SIGTERM: (0.5, 6.0),
    FaultKind.INGEST_SIGKILL: (0.5, 4.0),
    FaultKind.CATALOG_SIGKILL: (1.0, 6.0),
    FaultKind.RABBITMQ_STOP: (4.0, 15.0),
    FaultKind.S3_STOP: (2.0, 8.0),
    # The longest wait for a give-up (poison ends ~15-50 s after its upload, later when
    # outages delay it); the fault ends as soon as it caught one and the catalog, down
    # 2-5 s, is back.
    FaultKind.CATALOG_DOWN_AT_GIVE_UP: (30.0, 60.0),
    FaultKind.QUEUE_PURGE: (0.0, 0.0),
    FaultKind.PG_TERMINATE: (0.0, 0.0),
}


@dataclass(frozen=True)
class Profile:
    """The size of a run: uploads, the fault window, faults, how long to wait after."""

    name: str
    uploads: int
    poison: int  # originals the renderer refuses (content failures: retries, then poison)
    crashers: int  # images that kill their renderer every time it starts them
    window: float  # seconds over which uploads are spread and faults start
    faults: int
    settle: float  # seconds after healing for every job to end (see Runner._settle)
    tenants: int = 2
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)  # what the schedule draws from


PROFILES = {
    "full": Profile("full", uploads=220, poison=4, crashers=2, window=50.0, faults=10, settle=90.0),
    # CI's size. No SIGKILL of the renderer and no crashers: a renderer killed while it
    # works from the catalog leaves its jobs to a 120 s lease (+30 s), which alone would
    # double CI's time; full seeds (and tests/faults) cover those paths.
    "short": Profile(
        "short",
        uploads=50,
        poison=2,
        crashers=0,
        window=25.0,
        faults=7,
        settle=60.0,
        kinds=tuple(k for k in FaultKind if k is not FaultKind.RENDERER_SIGKILL),
    ),
    "calm": Profile("calm", uploads=24, poison=0, crashers=0, window=6.0, faults=0, settle=60.0),
}


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    at: float  # seconds after the batch starts
    duration: float
    hold: float = 0.0  # CATALOG_DOWN_AT_GIVE_UP: how long the catalog stays down

    @property
    def ends(self) -> float:
        return self.at + self.duration

    def describe(self) -> str:
        if self.kind.instant:
            return f"{self.kind.value}@{self.at:.1f}s"
        return f"{self.kind.value}@{self.at:.1f}s+{self.duration:.1f}s"


def make_schedule(seed: int, profile: Profile) -> list[Fault]:
    """`profile.faults` faults starting in the first 80 % of the window, sorted by start.

    Kinds are drawn without replacement first (every kind appears once before any
    appears twice), so even a short schedule mixes kinds; start times are independent,
    so faults overlap whenever their draws fall close together.
    """
    rng = random.Random(seed)
    kinds: list[FaultKind] = []
    while len(kinds) < profile.faults:
        deck = list(profile.kinds)
        rng.shuffle(deck)
        kinds += deck
    faults = []
    for kind in kinds[: profile.faults]:
        low, high = DURATIONS[kind]
        at = round(rng.uniform(0.5, profile.window * 0.8), 1)
        duration = round(rng.uniform(low, high), 1)
        hold = round(rng.uniform(2.0, 5.0), 1) if kind is FaultKind.CATALOG_DOWN_AT_GIVE_UP else 0.0
        faults.append(Fault(kind, at, duration, hold))
    return sorted(faults, key=lambda f: (f.at, f.kind.value))
