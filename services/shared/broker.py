"""RabbitMQ: the render topology (declared here only) and the render publisher.

Topology, all durable quorum queues, names prefixed with IMAGEPIPE_AMQP_PREFIX (``p``)::

    p.render (direct) --work-----> p.render.work    x-delivery-limit; rejected or
        |                             ^    |        over-delivered messages are
        |                             |    |        dead-lettered (at least once)
        |--retry.2s--> p.render.retry.2s   |        TTL 2 s, then back to work
        |--retry.4s--> p.render.retry.4s   |        TTL 4 s
        '--retry.8s--> p.render.retry.8s   |        TTL 8 s
                                           v
    p.render.dlx (direct) --dead----> p.render.dead.inbox   drained by the poison
                          --parked--> p.render.dead         recorder, which records
                                                            the poison job and parks
                                                            the message here

Render requests are protobuf (content type application/x-protobuf), persistent,
``message_id`` = job id, published with confirms: a publish returns only once the
broker has the message, and raises otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
)

from imagepipe.v1 import events_pb2
from services.shared.errors import Unavailable
from services.shared.logs import get_logger
from services.shared.retry_policy import RETRY_DELAYS, retry_policy
from services.shared.settings import Settings

__all__ = ["PROTOBUF", "Declared", "RenderPublisher", "Topology", "render_message"]

log = get_logger(__name__)

PROTOBUF = "application/x-protobuf"
RENDER_REQUEST_TYPE = "imagepipe.v1.RenderRequest"


@dataclass(frozen=True)
class Declared:
    exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    work: AbstractQueue
    dead_inbox: AbstractQueue


@dataclass(frozen=True)
class Topology:
    prefix: str
    delivery_limit: int
    # One delay queue per delay of the retry policy (services/shared/retry_policy.py).
    retry_delays: tuple[int, ...] = RETRY_DELAYS

    WORK_KEY = "work"
    DEAD_KEY = "dead"
    PARKED_KEY = "parked"

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(
            prefix=settings.amqp_prefix,
            delivery_limit=settings.delivery_limit,
            retry_delays=retry_policy(settings).delays,
        )

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.render"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.render.dlx"

    @property
    def work_queue(self) -> str:
        return f"{self.prefix}.render.work"

    @property
    def dead_queue(self) -> str:
        """Where poison messages rest, for inspection and replay."""
        return f"{self.prefix}.render.dead"

    @property
    def dead_inbox(self) -> str:
        """Fresh dead letters, waiting for the poison recorder."""
        return f"{self.prefix}.render.dead.inbox"

    @property
    def queues(self) -> list[str]:
        retries = [self.retry_queue(d) for d in self.retry_delays]
        return [self.work_queue, *retries, self.dead_inbox, self.dead_queue]

    def retry_queue(self, delay: int) -> str:
        return f"{self.prefix}.render.retry.{delay}s"

    @staticmethod
    def retry_key(delay: int) -> str:
        return f"retry.{delay}s"

    async def declare(self, channel: AbstractChannel) -> Declared:
        """Declare everything; safe to repeat from any number of processes.

        Consume from the returned queue objects: a robust channel restores the
        consumers of queues it declared when it reconnects (not of looked-up ones).
        """
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dlx = await channel.declare_exchange(
            self.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        inbox = await channel.declare_queue(
            self.dead_inbox, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await inbox.bind(dlx, self.DEAD_KEY)
        parked = await channel.declare_queue(
            self.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await parked.bind(dlx, self.PARKED_KEY)
        work = await channel.declare_queue(
            self.work_queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-dead-letter-routing-key": self.DEAD_KEY,
                # At-least-once dead-lettering needs reject-publish overflow.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        await work.bind(exchange, self.WORK_KEY)
        for delay in self.retry_delays:
            retry = await channel.declare_queue(
                self.retry_queue(delay),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-message-ttl": delay * 1000,
                    "x-dead-letter-exchange": self.exchange,
                    "x-dead-letter-routing-key": self.WORK_KEY,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
            await retry.bind(exchange, self.retry_key(delay))
        return Declared(exchange=exchange, dead_letter_exchange=dlx, work=work, dead_inbox=inbox)


def render_message(
    request: events_pb2.RenderRequest, headers: Mapping[str, str | int] | None = None
) -> aio_pika.Message:
    return aio_pika.Message(
        body=request.SerializeToString(),
        content_type=PROTOBUF,
        type=RENDER_REQUEST_TYPE,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=request.job_id,
        correlation_id=request.request_id or None,
        headers={
            "x-request-id": request.request_id,
            "x-tenant-id": request.tenant_id,
            **(headers or {}),
        },
    )


async def _discard(connection: AbstractRobustConnection | None) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.close()


class RenderPublisher:
    """Publishes render requests with confirms over a self-healing connection.

    The first connection is retried in the background, so a service starts (and
    keeps accepting uploads into the outbox) while RabbitMQ is down.
    """

    def __init__(self, settings: Settings, topology: Topology, *, publish_timeout: float = 5.0):
        self._url = settings.amqp_url.get_secret_value()
        self._topology = topology
        self._timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._work: AbstractQueue | None = None
        self._connector: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_forever())

    async def _connect_forever(self) -> None:
        while True:
            connection: AbstractRobustConnection | None = None
            try:
                connection = await aio_pika.connect_robust(self._url, timeout=5)
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                declared = await self._topology.declare(channel)
                self._exchange, self._work = declared.exchange, declared.work
                self._connection, self._channel = connection, channel
                log.info("connected to RabbitMQ")
                return
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
                log.warning("RabbitMQ unreachable, retrying in 2 s: %s", error)
                await _discard(connection)
                await asyncio.sleep(2)
            except asyncio.CancelledError:
                # Stopped half-way (SIGTERM while declaring): close what was opened now,
                # not at interpreter exit after the service said it stopped.
                await _discard(connection)
                raise

    @property
    def connected(self) -> bool:
        return (
            self._exchange is not None
            and self._channel is not None
            and not self._channel.is_closed
            and self._connection is not None
            and not self._connection.is_closed
        )

    async def ready_messages(self) -> int | None:
        """Messages waiting in the work queue, as the broker says; None if unknown."""
        if not self.connected or self._work is None:
            return None
        try:
            # Declaring the same queue again is idempotent and answers its depth.
            declared = await asyncio.wait_for(self._work.declare(), self._timeout)
        except (TimeoutError, aio_pika.exceptions.AMQPError, OSError, RuntimeError) as error:
            log.warning("could not read the work queue's depth: %s", error)
            return None
        count = declared.message_count
        return int(count) if count is not None else None

    async def check(self) -> None:
        if not self.connected:
            raise Unavailable("RabbitMQ is unreachable", reason="BROKER_UNAVAILABLE")

    async def publish(
        self,
        request: events_pb2.RenderRequest,
        *,
        routing_key: str = Topology.WORK_KEY,
        headers: Mapping[str, str | int] | None = None,
    ) -> None:
        """Return once the broker confirmed the message; raise Unavailable otherwise."""
        if not self.connected or self._exchange is None:
            raise Unavailable("RabbitMQ is unreachable", reason="BROKER_UNAVAILABLE")
        try:
            # Publishing on a connection that is reconnecting can hang: bound it.
            await asyncio.wait_for(
                self._exchange.publish(
                    render_message(request, headers), routing_key, mandatory=True
                ),
                self._timeout,
            )
        except (TimeoutError, aio_pika.exceptions.AMQPError, OSError, RuntimeError) as error:
            raise Unavailable(
                f"publish of job {request.job_id} not confirmed: {type(error).__name__}",
                reason="BROKER_UNAVAILABLE",
            ) from error

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._connection is not None:
            await self._connection.close()
