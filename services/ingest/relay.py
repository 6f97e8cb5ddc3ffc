"""The outbox relay: publishes render jobs whose publish was never confirmed.

Always running, not only during outages: any upload whose publish failed (broker
down, timeout, crash between commit and publish) leaves its job `pending`; the
relay leases such jobs from catalog (FOR UPDATE SKIP LOCKED, so any number of
ingest replicas share the work), publishes them with confirms and marks them
published. A job published twice is harmless: consumers are idempotent on job id.

It is also the reconciler. Nothing else revisits a job once its message is on the
broker, so a job `queued` or `retrying` whose message is gone (the work queue purged
or re-declared, a lost broker volume, a retry whose delay-queue publish never
happened) would wait forever, and with it, through the fair share, every later job of
its tenant. Every RECONCILE_SECONDS, when the work queue holds no ready message, the
relay also claims jobs that made no progress for longer than the longest retry delay
plus STUCK_MARGIN_SECONDS, and publishes them again. Their messages cannot be waiting
in the work queue (it is empty) nor in a delay queue (the longest delay has passed),
and should one still be somewhere, the duplicate is harmless: a finished job is
skipped and attempts are fenced. The empty-queue condition keeps a backlog that
merely takes long to drain from being published twice. This lives here rather than
in catalog because it needs the broker: to publish, and to see the queue's depth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from imagepipe.v1 import catalog_internal_pb2, events_pb2
from services.shared.errors import ImagepipeError
from services.shared.logs import get_logger, request_id_var
from services.shared.retry_policy import DEFAULT_POLICY, RetryPolicy

__all__ = [
    "RECONCILE_SECONDS",
    "STUCK_AFTER_SECONDS",
    "OutboxRelay",
    "RelaySchedule",
    "stuck_after",
]

log = get_logger(__name__)

RELAYED = Counter("imagepipe_outbox_relayed_total", "Render requests published by the relay.")
REPUBLISHED_PASSES = Counter(
    "imagepipe_reconciler_passes_total", "Relay passes that also republished stuck jobs."
)

RECONCILE_SECONDS = 10.0
STUCK_MARGIN_SECONDS = 30


def stuck_after(policy: RetryPolicy) -> int:
    """Seconds without progress after which a job is republished: past its longest backoff."""
    return int(policy.longest_backoff.total_seconds()) + STUCK_MARGIN_SECONDS


STUCK_AFTER_SECONDS = stuck_after(DEFAULT_POLICY)


@dataclass(frozen=True)
class RelaySchedule:
    """How often and how much the relay claims."""

    interval: float = 1.0  # between passes that found less than a batch
    batch: int = 100
    min_age_seconds: int = 2  # younger jobs may still be published by their upload
    lease_seconds: int = 30
    stuck_after_seconds: int = STUCK_AFTER_SECONDS
    reconcile_seconds: float = RECONCILE_SECONDS


class RelayCatalog(Protocol):
    async def claim_unpublished_jobs(
        self, request: catalog_internal_pb2.ClaimUnpublishedJobsRequest
    ) -> list[events_pb2.RenderRequest]: ...

    async def mark_job_published(self, job_id: str) -> None: ...


class RelayPublisher(Protocol):
    @property
    def connected(self) -> bool: ...

    async def publish(self, request: events_pb2.RenderRequest) -> None: ...

    async def ready_messages(self) -> int | None: ...


class OutboxRelay:
    def __init__(
        self,
        catalog: RelayCatalog,
        publisher: RelayPublisher,
        schedule: RelaySchedule = RelaySchedule(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._publisher = publisher
        self._schedule = schedule
        self._stuck_after = schedule.stuck_after_seconds
        self._clock = clock
        self._next_reconcile = clock() + schedule.reconcile_seconds
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()

    async def _stuck_after_now(self) -> int:
        """The stuck age to claim with on this pass; 0: not a reconciling pass."""
        now = self._clock()
        if now < self._next_reconcile:
            return 0
        self._next_reconcile = now + self._schedule.reconcile_seconds
        ready = await self._publisher.ready_messages()
        if ready != 0:
            # Unknown, or a backlog that may hold the jobs' messages: look again later.
            return 0
        return self._stuck_after

    async def run_once(self) -> int:
        """Publish one batch; returns how many were published."""
        if not self._publisher.connected:
            return 0
        stuck_after = await self._stuck_after_now()
        requests = await self._catalog.claim_unpublished_jobs(
            catalog_internal_pb2.ClaimUnpublishedJobsRequest(
                limit=self._schedule.batch,
                lease_seconds=self._schedule.lease_seconds,
                min_age_seconds=self._schedule.min_age_seconds,
                owner=self._owner,
                stuck_after_seconds=stuck_after,
            )
        )
        if stuck_after:
            REPUBLISHED_PASSES.inc()
        published = 0
        for request in requests:
            token = request_id_var.set(request.request_id)
            try:
                await self._publisher.publish(request)
                await self._catalog.mark_job_published(request.job_id)
                published += 1
                log.info("relayed render request", extra={"job_id": request.job_id})
            except ImagepipeError as error:
                # The lease expires and a later pass retries it.
                log.warning("relay could not publish: %s", error.message)
                break
            finally:
                request_id_var.reset(token)
        RELAYED.inc(published)
        return published

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                published = await self.run_once()
            except ImagepipeError as error:
                log.warning("relay pass failed: %s", error.message)
                published = 0
            if published < self._schedule.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._schedule.interval)

    async def stop(self, grace: float) -> None:
        self._stopping.set()
