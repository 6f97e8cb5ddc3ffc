"""How a renderer settles a failed attempt, on fakes (no broker, no catalog).

Broker path: retry through the delay queue for the policy's delay, give up (then
reject) when the budget is spent, nack whatever could not be recorded. Poison
recorder: the reason is the work queue's own death. Polling path: when to switch
modes, what the outbox is asked, and that a lost give-up call raises nothing.
Attempt history: consecutive transient failures are one entry.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

import aio_pika
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import catalog_pb2, common_pb2, events_pb2
from services.renderer.consumer import PoisonRecorder, RenderConsumer, death_reason
from services.renderer.jobs import AttemptOutcome, JobRunner, Outcome
from services.renderer.poller import CatalogPoller, ModeSwitch
from services.renderer.retries import (
    MessageAction,
    message_action,
    outbox_retry_after,
    with_attempt,
)
from services.shared.broker import Topology
from services.shared.clients import CatalogInternalClient
from services.shared.errors import Unavailable
from services.shared.retry_policy import RetryPolicy
from services.shared.settings import Settings

TOPOLOGY = Topology(prefix="t", delivery_limit=5)
JOB = str(uuid.uuid4())


class FakeCatalog:
    def __init__(self, *, poison_down: bool = False, fail_down: bool = False) -> None:
        self.poison_down = poison_down
        self.fail_down = fail_down
        self.failures: list[tuple[int, bool, int]] = []  # attempt, transient, retry_after
        self.poisoned: list[tuple[events_pb2.RenderRequest, int]] = []
        self.spare = False  # the catalog finds the job a bystander of a crash

    async def fail_job_attempt(
        self, job_id: str, attempt: int, error: str, *, transient: bool, retry_after_seconds: int
    ) -> None:
        if self.fail_down:
            raise Unavailable("catalog is unavailable")
        self.failures.append((attempt, transient, retry_after_seconds))

    async def record_poison_job(
        self, request: events_pb2.RenderRequest, error: str, reason: int
    ) -> bool:
        if self.poison_down:
            raise Unavailable("catalog is unavailable")
        if self.spare:
            return False
        self.poisoned.append((request, reason))
        return True


class FakeMessage:
    def __init__(self, body: bytes = b"", headers: dict[str, Any] | None = None) -> None:
        self.body = body
        self.headers = headers or {}
        self.content_type = "application/x-protobuf"
        self.message_id = JOB
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append("nack")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append("reject")


class FakeExchange:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.published: list[tuple[str, aio_pika.Message]] = []

    async def publish(self, message: aio_pika.Message, routing_key: str, **_: object) -> None:
        if self.down:
            raise aio_pika.exceptions.AMQPConnectionError("broker gone")
        self.published.append((routing_key, message))


def _request(failures: int = 0) -> events_pb2.RenderRequest:
    return events_pb2.RenderRequest(
        job_id=JOB,
        attempts=[common_pb2.JobAttempt(attempt=n + 1, error="bad") for n in range(failures)],
    )


def _consumer(catalog: FakeCatalog, exchange: FakeExchange) -> RenderConsumer:
    consumer = RenderConsumer(
        Settings(), TOPOLOGY, cast(JobRunner, None), cast(CatalogInternalClient, catalog)
    )
    consumer._broker.exchange = cast(Any, exchange)
    return consumer


async def _fail(
    consumer: RenderConsumer, request: events_pb2.RenderRequest, transient: bool = False
) -> FakeMessage:
    message = FakeMessage()
    result = AttemptOutcome(
        Outcome.FAILED, len(request.attempts) + 1, "ORIGINAL_MISSING", transient
    )
    await consumer._after_failure(cast(Any, message), request, result)
    return message


@pytest.mark.parametrize(("failures", "delay"), [(0, "retry.2s"), (1, "retry.4s"), (2, "retry.8s")])
async def test_a_failure_with_budget_left_goes_to_the_delay_queue_then_is_acked(
    failures: int, delay: str
) -> None:
    catalog, exchange = FakeCatalog(), FakeExchange()
    message = await _fail(_consumer(catalog, exchange), _request(failures))
    assert message.settled == ["ack"]
    ((key, published),) = exchange.published
    assert key == delay
    assert len(events_pb2.RenderRequest.FromString(published.body).attempts) == failures + 1
    assert catalog.poisoned == []


async def test_the_fourth_failure_is_given_up_then_rejected() -> None:
    catalog, exchange = FakeCatalog(), FakeExchange()
    message = await _fail(_consumer(catalog, exchange), _request(3))
    assert message.settled == ["reject"]
    assert exchange.published == []
    ((history, reason),) = catalog.poisoned
    assert reason == catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED
    assert len(history.attempts) == 4


async def test_a_give_up_that_cannot_be_recorded_is_not_settled() -> None:
    catalog, exchange = FakeCatalog(poison_down=True), FakeExchange()
    message = await _fail(_consumer(catalog, exchange), _request(3))
    assert message.settled == ["nack"], "redelivered, so the give-up is tried again"


async def test_a_retry_the_broker_did_not_confirm_is_not_acked() -> None:
    catalog, exchange = FakeCatalog(), FakeExchange(down=True)
    message = await _fail(_consumer(catalog, exchange), _request(1))
    assert message.settled == ["nack"]


async def test_transient_failures_retry_at_the_longest_delay_whatever_the_history() -> None:
    catalog, exchange = FakeCatalog(), FakeExchange()
    message = await _fail(_consumer(catalog, exchange), _request(3), transient=True)
    assert message.settled == ["ack"]
    assert [key for key, _ in exchange.published] == ["retry.8s"]


async def test_the_consumer_retries_with_its_topologys_delays() -> None:
    catalog, exchange = FakeCatalog(), FakeExchange()
    consumer = RenderConsumer(
        Settings(),
        Topology(prefix="t", delivery_limit=5, retry_delays=(1, 30)),
        cast(JobRunner, None),
        cast(CatalogInternalClient, catalog),
    )
    consumer._broker.exchange = cast(Any, exchange)
    await _fail(consumer, _request(1))
    assert [key for key, _ in exchange.published] == ["retry.30s"]
    assert (await _fail(consumer, _request(2))).settled == ["reject"]


def test_message_actions() -> None:
    policy = RetryPolicy()
    retry, give_up = policy.decide([], False), policy.decide(_request(3).attempts, False)
    assert message_action(retry, recorded=True) is MessageAction.ACK
    assert message_action(give_up, recorded=True) is MessageAction.REJECT
    assert message_action(retry, recorded=False) is MessageAction.NACK
    assert message_action(give_up, recorded=False) is MessageAction.NACK
    assert outbox_retry_after(retry) == 2 and outbox_retry_after(give_up) == 0


# The poison recorder ----------------------------------------------------------------


def _x_death(*entries: tuple[str, str]) -> dict[str, Any]:
    # As RabbitMQ writes it: newest death first; x-first-death-* name the oldest.
    return {
        "x-death": [
            {"queue": queue, "reason": reason, "count": 1, "exchange": "t.render"}
            for queue, reason in entries
        ],
        "x-first-death-queue": entries[-1][0],
        "x-first-death-reason": entries[-1][1],
    }


def test_the_death_reason_is_the_work_queues_own() -> None:
    after_a_retry = _x_death(("t.render.work", "delivery_limit"), ("t.render.retry.2s", "expired"))
    assert death_reason(after_a_retry, TOPOLOGY.work_queue) == "delivery_limit"
    as_bytes = {"x-death": [{"queue": b"t.render.work", "reason": b"rejected"}]}
    assert death_reason(as_bytes, TOPOLOGY.work_queue) == "rejected"
    assert death_reason({"x-first-death-reason": "rejected"}, TOPOLOGY.work_queue) == "rejected"


async def test_a_crash_loop_after_a_retry_is_recorded_as_delivery_limit() -> None:
    catalog = FakeCatalog()
    recorder = PoisonRecorder(Settings(), TOPOLOGY, cast(CatalogInternalClient, catalog))
    recorder._broker.dead_letter_exchange = cast(Any, FakeExchange())
    message = FakeMessage(
        _request(1).SerializeToString(),
        _x_death(("t.render.work", "delivery_limit"), ("t.render.retry.2s", "expired")),
    )
    await recorder._on_dead_letter(cast(Any, message))
    ((_, reason),) = catalog.poisoned
    assert reason == catalog_pb2.POISON_REASON_DELIVERY_LIMIT
    assert message.settled == ["ack"]


async def test_a_job_the_catalog_spares_is_delivered_again_to_run_alone_not_parked() -> None:
    catalog = FakeCatalog()
    catalog.spare = True
    recorder = PoisonRecorder(Settings(), TOPOLOGY, cast(CatalogInternalClient, catalog))
    work, parked = FakeExchange(), FakeExchange()
    recorder._broker.exchange = cast(Any, work)
    recorder._broker.dead_letter_exchange = cast(Any, parked)
    message = FakeMessage(
        _request().SerializeToString(), _x_death(("t.render.work", "delivery_limit"))
    )
    await recorder._on_dead_letter(cast(Any, message))
    assert catalog.poisoned == [] and parked.published == []
    ((key, again),) = work.published
    assert key == TOPOLOGY.WORK_KEY
    request = events_pb2.RenderRequest.FromString(again.body)
    assert request.job_id == JOB and request.interrupted
    assert "x-death" not in (again.headers or {}), "a fresh message: a fresh delivery count"
    assert message.settled == ["ack"]

    # The broker cannot take it now: the dead letter stays, to be decided again.
    work.down = True
    message = FakeMessage(
        _request().SerializeToString(), _x_death(("t.render.work", "delivery_limit"))
    )
    await recorder._on_dead_letter(cast(Any, message))
    assert message.settled == ["nack"]


# The polling path ---------------------------------------------------------------------


def test_polling_starts_once_the_broker_has_looked_down_for_a_while_and_stops_when_it_is_up() -> (
    None
):
    mode = ModeSwitch(down_for=2.0)
    assert mode.update(broker_down=False, now=0.0) is False
    assert mode.update(broker_down=True, now=1.0) is False
    assert mode.update(broker_down=True, now=2.5) is False, "down for 1.5 s only"
    assert mode.update(broker_down=True, now=3.0) is True
    assert mode.update(broker_down=False, now=3.1) is False
    assert mode.update(broker_down=True, now=3.2) is False, "a new outage starts its own clock"
    assert mode.update(broker_down=True, now=5.2) is True


class FakeRunner:
    worker = "w"

    def __init__(self, outcome: AttemptOutcome) -> None:
        self.outcome = outcome

    async def run(self, request: events_pb2.RenderRequest) -> AttemptOutcome:
        return self.outcome


def _poller(catalog: FakeCatalog, outcome: AttemptOutcome) -> CatalogPoller:
    return CatalogPoller(
        cast(JobRunner, FakeRunner(outcome)),
        cast(CatalogInternalClient, catalog),
        broker_down=lambda: True,
        concurrency=1,
    )


async def test_polling_failures_go_back_to_the_outbox_for_the_policys_delay() -> None:
    catalog = FakeCatalog()
    await _poller(catalog, AttemptOutcome(Outcome.FAILED, 2, "bad")).process(_request(1))
    assert catalog.failures == [(2, False, 4)]
    assert catalog.poisoned == []


async def test_polling_gives_up_through_the_recorded_failure_even_if_the_give_up_is_lost() -> None:
    catalog = FakeCatalog(poison_down=True)
    await _poller(catalog, AttemptOutcome(Outcome.FAILED, 4, "bad")).process(_request(3))
    # retry_after 0: the failure that spends the budget, recorded; the catalog makes
    # the job poison with it. The give-up call failing raises nothing.
    assert catalog.failures == [(4, False, 0)]


async def test_polling_leaves_done_and_skipped_jobs_alone() -> None:
    catalog = FakeCatalog()
    await _poller(catalog, AttemptOutcome(Outcome.SKIPPED)).process(_request())
    await _poller(catalog, AttemptOutcome(Outcome.DONE, 1)).process(_request())
    assert catalog.failures == [] and catalog.poisoned == []


# Attempt history ----------------------------------------------------------------------


def _at(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def test_consecutive_transient_failures_are_one_history_entry() -> None:
    request = _request(1)
    for n in range(100):
        request = with_attempt(request, n + 2, f"S3 down {n}", True, _at(1000 + n))
    request = with_attempt(request, 102, "bad", False, _at(2000))
    request = with_attempt(request, 103, "S3 down", True, _at(3000))
    summary = [(a.attempt, a.transient, a.repeats or 1) for a in request.attempts]
    assert summary == [(1, False, 1), (101, True, 100), (102, False, 1), (103, True, 1)]
    outage = request.attempts[1]
    assert (outage.first_end_time.seconds, outage.end_time.seconds) == (1000, 1099)
    assert outage.error == "S3 down 99"
    # The budget still counts only the content failures.
    assert RetryPolicy().decide(request.attempts, False).failures == 3
