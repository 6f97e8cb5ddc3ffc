"""The renderer's RabbitMQ side: competing consumers, retries, dead letters.

Per delivery: decode the RenderRequest, run one attempt, then settle the message:
- done, or already finished: ack;
- failed, retries left: publish a copy (with this attempt appended) to the delay
  queue for the next backoff (2, 4, 8 s) with a publisher confirm, then ack. The
  message is never held while waiting;
- failed after the third retry: record the poison job, then reject it without
  requeue so RabbitMQ dead-letters it.

A message that kills its renderer is redelivered by RabbitMQ; after
IMAGEPIPE_DELIVERY_LIMIT deliveries the quorum queue dead-letters it. The poison
recorder drains those dead letters: it records the poison job (idempotently) and
parks the message in the dead-letter queue. Why a message died is read from the
work queue's own entry in its `x-death` history: a message that went through a
delay queue first died there (`expired`), which says nothing about why it died last.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from google.protobuf.message import DecodeError
from prometheus_client import Counter, Gauge

from imagepipe.v1 import catalog_pb2, events_pb2
from services.renderer.jobs import AttemptOutcome, JobRunner, Outcome
from services.renderer.retries import MessageAction, message_action
from services.renderer.settle import POISONED, Settlement
from services.shared.broker import Declared, Topology, render_message
from services.shared.clients import CatalogInternalClient
from services.shared.errors import ImagepipeError
from services.shared.logs import get_logger, request_id_var
from services.shared.retry_policy import Decision, RetryPolicy
from services.shared.settings import Settings

__all__ = ["PoisonRecorder", "RenderConsumer", "death_reason", "redelivered"]

log = get_logger(__name__)

RETRIES = Counter("imagepipe_render_retries_total", "Failed attempts sent to a delay queue.")
SPARED = Counter(
    "imagepipe_render_spared_total",
    "Jobs at the delivery limit delivered again: they were beside the job crashing "
    "their renderer, not it.",
)
IN_FLIGHT = Gauge("imagepipe_render_in_flight", "Render jobs held by this renderer.")
QUEUE_DEPTH = Gauge(
    "imagepipe_queue_depth", "Messages waiting in a queue, as the broker last reported.", ["queue"]
)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def death_reason(headers: Mapping[str, object], work_queue: str) -> str:
    """Why the work queue dead-lettered this message (`delivery_limit`, `rejected`,
    ...), from the work queue's entry in `x-death`; `x-first-death-reason` only when
    the message carries no such entry (it names the first queue it died in)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple):
        for death in deaths:
            if isinstance(death, Mapping) and _text(death.get("queue", "")) == work_queue:
                return _text(death.get("reason", ""))
    return _text(headers.get("x-first-death-reason", ""))


def redelivered(flag: bool | None, headers: Mapping[str, object]) -> bool:
    """Whether an earlier delivery of this message was returned unsettled (its
    renderer died holding it): the redelivered flag, or a quorum queue's count."""
    count = headers.get("x-delivery-count")
    return bool(flag) or (isinstance(count, int) and count > 0)


async def _settle(action: Any, what: str) -> None:
    """Ack/nack/reject; on a dead channel the broker redelivers the message anyway."""
    try:
        await action()
    except (aio_pika.exceptions.AMQPError, RuntimeError, ConnectionError) as error:
        log.warning("could not %s (the message will be redelivered): %s", what, error)


async def _confirmed(
    exchange: AbstractExchange | None,
    message: aio_pika.Message,
    routing_key: str,
    what: str,
    *,
    mandatory: bool = True,
) -> bool:
    """Publish and wait for the broker's confirm, bounded in time (a reconnecting
    channel can hang); whether it was confirmed. Failures are logged, never raised."""
    try:
        assert exchange is not None
        await asyncio.wait_for(exchange.publish(message, routing_key, mandatory=mandatory), 10)
    except (aio_pika.exceptions.AMQPError, TimeoutError, RuntimeError, AssertionError) as error:
        log.warning("could not %s: %s", what, error)
        return False
    return True


class _Connected:
    """A robust connection with a confirming channel and the declared topology."""

    def __init__(self, settings: Settings, topology: Topology, prefetch: int) -> None:
        self._url = settings.amqp_url.get_secret_value()
        self.topology = topology
        self._prefetch = prefetch
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.exchange: AbstractExchange | None = None
        self.dead_letter_exchange: AbstractExchange | None = None
        self.declared: Declared | None = None
        self.attempts = 0
        self.failed_once = False  # a connection attempt failed: the broker is down

    async def open(self, stopping: asyncio.Event) -> bool:
        """Connect, retrying every 2 s; False if asked to stop first."""
        while not stopping.is_set():
            self.attempts += 1
            try:
                self.connection = await aio_pika.connect_robust(self._url, timeout=5)
                self.channel = await self.connection.channel(publisher_confirms=True)
                await self.channel.set_qos(prefetch_count=self._prefetch)
                self.declared = await self.topology.declare(self.channel)
                self.exchange = self.declared.exchange
                self.dead_letter_exchange = self.declared.dead_letter_exchange
                return True
            except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as error:
                self.failed_once = True
                log.warning("RabbitMQ unreachable, retrying in 2 s: %s", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 2)
        return False

    @property
    def usable(self) -> bool:
        connection, channel = self.connection, self.channel
        if connection is None or channel is None or channel.is_closed:
            return False
        transport = connection.transport
        return transport is not None and not transport.connection.is_closed

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()


class _DelayQueues:
    """The broker path's next attempt: a copy of the message, this attempt appended, in
    the delay queue for the decided delay. The catalog's outbox holds nothing."""

    def __init__(self, broker: _Connected, topology: Topology) -> None:
        self._broker = broker
        self._topology = topology

    def hold_seconds(self, decision: Decision) -> int:
        return 0

    async def schedule(self, history: events_pb2.RenderRequest, decision: Decision) -> bool:
        confirmed = await _confirmed(
            self._broker.exchange,
            render_message(history),
            self._topology.retry_key(decision.delay),
            "schedule the next attempt",
        )
        if confirmed:
            RETRIES.inc()
            log.info(
                "next attempt in %d s",
                decision.delay,
                extra={"job_id": history.job_id, "failures": decision.failures},
            )
        return confirmed


class RenderConsumer:
    """Competing consumer of the work queue (R4.10): any number may share it."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        runner: JobRunner,
        catalog: CatalogInternalClient,
    ) -> None:
        self.concurrency = settings.effective_render_concurrency
        self._broker = _Connected(settings, topology, prefetch=self.concurrency)
        self._topology = topology
        self._policy = RetryPolicy(topology.retry_delays)
        self._runner = runner
        self._settlement = Settlement(catalog, self._policy, _DelayQueues(self._broker, topology))
        self._stopping = asyncio.Event()
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.jobs_done = 0
        self.attempts_failed = 0
        self.queue_depth = -1

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def connected(self) -> bool:
        """True while the broker can deliver: the transport and the channel are open."""
        return self._broker.usable

    @property
    def broker_down(self) -> bool:
        """True once the broker is known to be unreachable (not merely still connecting)."""
        if self._broker.connection is None:
            return self._broker.failed_once
        return not self._broker.usable

    async def run(self) -> None:
        if not await self._broker.open(self._stopping):
            return
        assert self._broker.declared is not None
        self._queue = self._broker.declared.work
        self._consumer_tag = await self._queue.consume(self._on_message)
        log.info("consuming render requests", extra={"concurrency": self.concurrency})
        while not self._stopping.is_set():
            await self._sample_depth()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 5)

    async def _sample_depth(self) -> None:
        try:
            assert self._queue is not None
            # Declaring the same queue again is idempotent and answers its depth.
            depth = (await self._queue.declare()).message_count
            self.queue_depth = depth if depth is not None else -1
            QUEUE_DEPTH.labels(self._queue.name).set(self.queue_depth)
        except (aio_pika.exceptions.AMQPError, RuntimeError, ConnectionError, AssertionError):
            self.queue_depth = -1

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        IN_FLIGHT.set(len(self._tasks))
        try:
            await self._handle(message)
        finally:
            self._tasks.discard(task)
            IN_FLIGHT.set(len(self._tasks))

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            request = events_pb2.RenderRequest.FromString(message.body)
        except DecodeError:
            log.error("undecodable render message %s; dead-lettering it", message.message_id)
            await _settle(lambda: message.reject(requeue=False), "reject")
            return
        token = request_id_var.set(request.request_id)
        try:
            result = await self._runner.run(
                request, redelivered=redelivered(message.redelivered, message.headers or {})
            )
            if result.outcome in (Outcome.DONE, Outcome.SKIPPED):
                self.jobs_done += result.outcome is Outcome.DONE
                await _settle(message.ack, "ack")
            else:
                self.attempts_failed += 1
                await self._after_failure(message, request, result)
        finally:
            request_id_var.reset(token)

    async def _after_failure(
        self,
        message: AbstractIncomingMessage,
        request: events_pb2.RenderRequest,
        result: AttemptOutcome,
    ) -> None:
        settled = await self._settlement.settle(request, result)
        action = message_action(settled.decision, settled.recorded)
        if action is MessageAction.ACK:
            await _settle(message.ack, "ack")
        elif action is MessageAction.NACK:
            await _settle(lambda: message.nack(requeue=True), "nack")
        else:
            # Dead-lettered to the inbox; the poison recorder parks it.
            await _settle(lambda: message.reject(requeue=False), "reject")

    async def stop(self, grace: float) -> None:
        """Stop taking work; give in-flight jobs `grace` seconds, then hand them back."""
        self._stopping.set()
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        if self._tasks:
            log.info("waiting for %d in-flight jobs", len(self._tasks))
            await asyncio.wait(list(self._tasks), timeout=grace)
        # Closing the channel returns anything still unacked to the queue.
        await self._broker.close()


class PoisonRecorder:
    """Drains fresh dead letters: records each poison job, then parks the message."""

    def __init__(
        self, settings: Settings, topology: Topology, catalog: CatalogInternalClient
    ) -> None:
        self._broker = _Connected(settings, topology, prefetch=10)
        self._topology = topology
        self._catalog = catalog
        self._stopping = asyncio.Event()
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None

    async def run(self) -> None:
        if not await self._broker.open(self._stopping):
            return
        assert self._broker.declared is not None
        self._queue = self._broker.declared.dead_inbox
        self._consumer_tag = await self._queue.consume(self._on_dead_letter)
        await self._stopping.wait()

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        try:
            request = events_pb2.RenderRequest.FromString(message.body)
        except DecodeError:
            request = events_pb2.RenderRequest()
        headers = message.headers or {}
        death = death_reason(headers, self._topology.work_queue)
        if death == "delivery_limit":
            reason = catalog_pb2.POISON_REASON_DELIVERY_LIMIT
            error = (
                f"delivered {self._topology.delivery_limit + 1} times without being settled "
                "(the renderer crashed or was killed each time)"
            )
        else:
            reason = catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED
            error = request.attempts[-1].error if request.attempts else f"dead-lettered: {death}"
        if request.job_id:
            try:
                recorded = await self._catalog.record_poison_job(request, error, reason)
            except ImagepipeError as failure:
                log.warning("could not record poison job yet: %s", failure.message)
                await _settle(lambda: message.nack(requeue=True), "nack")
                return
            if not recorded:
                await self._deliver_again(message, request)
                return
            POISONED.labels(death or "unknown").inc()
        parked = aio_pika.Message(
            body=message.body,
            headers=dict(headers),
            content_type=message.content_type,
            message_id=message.message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        if not await _confirmed(
            self._broker.dead_letter_exchange,
            parked,
            self._topology.PARKED_KEY,
            "park dead letter",
            mandatory=False,
        ):
            await _settle(lambda: message.nack(requeue=True), "nack")
            return
        await _settle(message.ack, "ack")

    async def _deliver_again(
        self, message: AbstractIncomingMessage, request: events_pb2.RenderRequest
    ) -> None:
        """The catalog spared a job at the delivery limit (it was beside the job that
        crashed its renderers): a fresh message, with a fresh delivery count, to be
        run alone. The job id fences a duplicate, so publishing it twice is harmless."""
        request.interrupted = True
        if not await _confirmed(
            self._broker.exchange,
            render_message(request),
            self._topology.WORK_KEY,
            "deliver a spared job again",
        ):
            await _settle(lambda: message.nack(requeue=True), "nack")
            return
        SPARED.inc()
        log.info("job at the delivery limit delivered again", extra={"job_id": request.job_id})
        await _settle(message.ack, "ack")

    async def stop(self, grace: float) -> None:
        self._stopping.set()
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        await self._broker.close()
