"""A job whose earlier delivery was interrupted runs alone on its renderer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from imagepipe.v1 import catalog_internal_pb2, common_pb2, events_pb2
from services.renderer.consumer import redelivered
from services.renderer.jobs import JobRunner, Outcome
from services.shared.sandbox import DecodePool
from services.shared.settings import Settings
from services.shared.storage import MemoryObjectStore


class GatedCatalog:
    """An attempt runs from its start until the test releases it (then it is skipped)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def start_job_attempt(
        self, job_id: str, *, worker: str, lease_seconds: int
    ) -> catalog_internal_pb2.StartJobAttemptResponse:
        self.started.append(job_id)
        await self.release.setdefault(job_id, asyncio.Event()).wait()
        return catalog_internal_pb2.StartJobAttemptResponse(
            proceed=False, job=common_pb2.Job(job_id=job_id, state=common_pb2.JOB_STATE_DONE)
        )

    async def complete_job(self, request: catalog_internal_pb2.CompleteJobRequest) -> None:
        raise AssertionError("no attempt proceeds here")

    def open(self, job_id: str) -> None:
        self.release.setdefault(job_id, asyncio.Event()).set()


async def _quiesce() -> None:
    """Let every runnable task run until all of them wait again."""
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def pool() -> Iterator[DecodePool]:
    workers = DecodePool(1, memory_limit_bytes=0, timeout=1)  # unused: no attempt proceeds
    yield workers
    workers.close()


def _runner(catalog: GatedCatalog, pool: DecodePool) -> JobRunner:
    return JobRunner(
        catalog=catalog,
        store=MemoryObjectStore(),
        pool=pool,
        presets=Settings().presets,
        max_pixels=1,
        worker="t:1",
    )


async def test_an_interrupted_job_waits_for_the_others_then_runs_alone(pool: DecodePool) -> None:
    catalog = GatedCatalog()
    runner = _runner(catalog, pool)
    run = runner.run
    first = asyncio.create_task(run(events_pb2.RenderRequest(job_id="first")))
    await _quiesce()
    assert catalog.started == ["first"]
    # Redelivered by the broker: it waits for `first` to finish.
    suspect = asyncio.create_task(run(events_pb2.RenderRequest(job_id="suspect"), redelivered=True))
    await _quiesce()
    # An ordinary job arriving meanwhile waits behind the suspect (no starvation).
    later = asyncio.create_task(run(events_pb2.RenderRequest(job_id="later")))
    await _quiesce()
    assert catalog.started == ["first"]

    catalog.open("first")
    await _quiesce()
    assert first.done() and catalog.started == ["first", "suspect"]
    assert runner.isolation.running == 1
    # While the suspect runs nothing else starts.
    await _quiesce()
    assert catalog.started == ["first", "suspect"]

    catalog.open("suspect")
    await _quiesce()
    assert suspect.done() and catalog.started == ["first", "suspect", "later"]
    catalog.open("later")
    results = await asyncio.gather(first, suspect, later)
    assert [r.outcome for r in results] == [Outcome.SKIPPED] * 3
    assert runner.isolation.running == 0


async def test_jobs_marked_interrupted_by_the_catalog_run_alone_and_ordinary_ones_share(
    pool: DecodePool,
) -> None:
    catalog = GatedCatalog()
    runner = _runner(catalog, pool)
    a = asyncio.create_task(runner.run(events_pb2.RenderRequest(job_id="a")))
    b = asyncio.create_task(runner.run(events_pb2.RenderRequest(job_id="b")))
    await _quiesce()
    assert sorted(catalog.started) == ["a", "b"], "ordinary jobs share the renderer"
    catalog.open("a")
    catalog.open("b")
    await asyncio.gather(a, b)

    # A polled claim: the catalog says an earlier delivery was never settled.
    claimed = asyncio.create_task(
        runner.run(events_pb2.RenderRequest(job_id="claimed", interrupted=True))
    )
    await _quiesce()
    other = asyncio.create_task(runner.run(events_pb2.RenderRequest(job_id="other")))
    await _quiesce()
    assert catalog.started[2:] == ["claimed"]
    catalog.open("claimed")
    await _quiesce()
    assert catalog.started[2:] == ["claimed", "other"]
    catalog.open("other")
    await asyncio.gather(claimed, other)


async def test_a_cancelled_waiter_does_not_hold_the_others_back(pool: DecodePool) -> None:
    catalog = GatedCatalog()
    runner = _runner(catalog, pool)
    first = asyncio.create_task(runner.run(events_pb2.RenderRequest(job_id="first")))
    await _quiesce()
    suspect = asyncio.create_task(
        runner.run(events_pb2.RenderRequest(job_id="s"), redelivered=True)
    )
    await _quiesce()
    later = asyncio.create_task(runner.run(events_pb2.RenderRequest(job_id="later")))
    await _quiesce()
    suspect.cancel()
    await _quiesce()
    assert catalog.started == ["first", "later"]
    catalog.open("first")
    catalog.open("later")
    await asyncio.gather(first, later)


def test_a_redelivery_is_recognised_by_the_flag_or_the_quorum_queue_count() -> None:
    assert not redelivered(False, {})
    assert not redelivered(None, {"x-delivery-count": 0})
    assert redelivered(True, {})
    assert redelivered(False, {"x-delivery-count": 2})
