"""The outbox relay: publishes render jobs whose publish was never confirmed.

Always running, not only during outages: any upload whose publish failed (broker
down, timeout, crash between commit and publish) leaves its job `pending`; the
relay leases such jobs from catalog (FOR UPDATE SKIP LOCKED, so any number of
ingest replicas share the work), publishes them with confirms and marks them
published. A job published twice is harmless: consumers are idempotent on job id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Protocol

from prometheus_client import Counter

from imagepipe.v1 import events_pb2
from services.shared.errors import ImagepipeError
from services.shared.logs import get_logger, request_id_var

__all__ = ["OutboxRelay"]

log = get_logger(__name__)

RELAYED = Counter("imagepipe_outbox_relayed_total", "Render requests published by the relay.")


class RelayCatalog(Protocol):
    async def claim_unpublished_jobs(
        self, *, limit: int, lease_seconds: int, min_age_seconds: int, owner: str
    ) -> list[events_pb2.RenderRequest]: ...

    async def mark_job_published(self, job_id: str) -> None: ...


class RelayPublisher(Protocol):
    @property
    def connected(self) -> bool: ...

    async def publish(self, request: events_pb2.RenderRequest) -> None: ...


class OutboxRelay:
    def __init__(
        self,
        catalog: RelayCatalog,
        publisher: RelayPublisher,
        *,
        interval: float = 1.0,
        batch: int = 100,
        min_age_seconds: int = 2,
        lease_seconds: int = 30,
    ) -> None:
        self._catalog = catalog
        self._publisher = publisher
        self._interval = interval
        self._batch = batch
        self._min_age = min_age_seconds
        self._lease = lease_seconds
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()

    async def run_once(self) -> int:
        """Publish one batch; returns how many were published."""
        if not self._publisher.connected:
            return 0
        requests = await self._catalog.claim_unpublished_jobs(
            limit=self._batch,
            lease_seconds=self._lease,
            min_age_seconds=self._min_age,
            owner=self._owner,
        )
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
            if published < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def stop(self, grace: float) -> None:
        self._stopping.set()
