"""Working without the broker: claim jobs from the catalog every 2 s (R4.7).

While RabbitMQ is unreachable, the renderer leases runnable jobs straight from the
catalog (FOR UPDATE SKIP LOCKED, so renderers never claim the same job) and runs
them. A failed attempt goes back to the outbox with a not-before time instead of a
delay queue; the fourth failure makes the job poison (the catalog records it with
the failure, so a give-up call that cannot reach the catalog loses nothing). Each
claim counts as a delivery, so a job that kills its renderer becomes poison after
the broker's delivery limit here too. When the broker is back, the renderer returns
to the queue; messages of jobs finished meanwhile are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from imagepipe.v1 import events_pb2
from services.renderer.jobs import LEASE_SECONDS, JobRunner, Outcome
from services.renderer.settle import OutboxNextAttempt, Settlement
from services.shared.clients import CatalogInternalClient
from services.shared.errors import ImagepipeError
from services.shared.logs import get_logger, request_id_var
from services.shared.retry_policy import DEFAULT_POLICY, RetryPolicy

__all__ = ["CatalogPoller", "ModeSwitch"]

log = get_logger(__name__)

POLL_SECONDS = 2.0
# The broker must look down this long before jobs are taken from the catalog, so a
# reconnect that takes a moment does not start a second way of consuming.
DOWN_FOR_SECONDS = 2.0


class ModeSwitch:
    """When to poll: once the broker has looked down for `down_for` seconds, and
    no longer as soon as it looks up."""

    def __init__(self, down_for: float = DOWN_FOR_SECONDS) -> None:
        self._down_for = down_for
        self._down_since: float | None = None
        self.polling = False

    def update(self, broker_down: bool, now: float) -> bool:
        """The mode at `now`; logs the changes."""
        if not broker_down:
            self._down_since = None
            if self.polling:
                log.info("RabbitMQ is back; consuming from the queue again")
                self.polling = False
            return False
        if self._down_since is None:
            self._down_since = now
        if now - self._down_since >= self._down_for and not self.polling:
            log.warning("RabbitMQ unreachable; claiming jobs from the catalog every 2 s")
            self.polling = True
        return self.polling


class CatalogPoller:
    def __init__(
        self,
        runner: JobRunner,
        catalog: CatalogInternalClient,
        *,
        broker_down: Callable[[], bool],
        concurrency: int,
        interval: float = POLL_SECONDS,
        policy: RetryPolicy = DEFAULT_POLICY,
        down_for: float = DOWN_FOR_SECONDS,
    ) -> None:
        self._runner = runner
        self._catalog = catalog
        self._broker_down = broker_down
        self._mode = ModeSwitch(down_for)
        self._policy = policy
        self._settlement = Settlement(catalog, policy, OutboxNextAttempt())
        self._concurrency = concurrency
        self._interval = interval
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.polling = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            self.polling = self._mode.update(self._broker_down(), loop.time())
            if self.polling and await self._claim() and self._tasks:
                # Work is waiting: claim more as soon as a worker frees up.
                await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def _claim(self) -> int:
        """Claim as many jobs as there are free workers; returns how many."""
        free = self._concurrency - len(self._tasks)
        if free <= 0:
            return 0
        try:
            requests = await self._catalog.claim_render_jobs(
                limit=free, lease_seconds=LEASE_SECONDS, owner=self._runner.worker
            )
        except ImagepipeError as error:
            log.warning("could not claim jobs from the catalog: %s", error.message)
            return 0
        for request in requests:
            task = asyncio.create_task(self.process(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(requests)

    async def process(self, request: events_pb2.RenderRequest) -> None:
        token = request_id_var.set(request.request_id)
        try:
            result = await self._runner.run(request)
            if result.outcome is Outcome.FAILED:
                # Whether a give-up was recorded does not matter here: the catalog made
                # the job poison when it recorded this failure, and should that call
                # have failed too, the attempt stays unsettled, claimed (and counted) again.
                await self._settlement.settle(request, result)
        finally:
            request_id_var.reset(token)

    async def stop(self, grace: float) -> None:
        self._stopping.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
