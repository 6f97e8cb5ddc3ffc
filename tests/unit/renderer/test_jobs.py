"""One render attempt on fakes: skipped when finished, done writes keys, failures say why."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagepipe.v1 import catalog_internal_pb2, common_pb2, events_pb2
from services.renderer.jobs import JobRunner, Outcome
from services.shared.errors import Unavailable
from services.shared.sandbox import DecodePool
from services.shared.settings import Settings
from services.shared.storage import MemoryObjectStore

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
TENANT, ASSET, JOB = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


class FakeCatalog:
    def __init__(self, proceed: bool = True, down: bool = False) -> None:
        self.proceed = proceed
        self.down = down
        self.completed: list[catalog_internal_pb2.CompleteJobRequest] = []

    async def start_job_attempt(
        self, job_id: str, *, worker: str, lease_seconds: int
    ) -> catalog_internal_pb2.StartJobAttemptResponse:
        if self.down:
            raise Unavailable("catalog is unavailable")
        state = common_pb2.JOB_STATE_RUNNING if self.proceed else common_pb2.JOB_STATE_DONE
        return catalog_internal_pb2.StartJobAttemptResponse(
            proceed=self.proceed,
            attempt=1 if self.proceed else 0,
            job=common_pb2.Job(job_id=job_id, state=state),
        )

    async def complete_job(self, request: catalog_internal_pb2.CompleteJobRequest) -> None:
        self.completed.append(request)


@pytest.fixture(scope="module")
def pool() -> Iterator[DecodePool]:
    workers = DecodePool(1, memory_limit_bytes=0, timeout=60)
    yield workers
    workers.close()


def _request() -> events_pb2.RenderRequest:
    return events_pb2.RenderRequest(
        job_id=JOB, tenant_id=TENANT, asset_id=ASSET, original_key=f"originals/{TENANT}/abc"
    )


def _runner(catalog: FakeCatalog, store: MemoryObjectStore, pool: DecodePool) -> JobRunner:
    return JobRunner(
        catalog=catalog,
        store=store,
        pool=pool,
        presets=Settings().presets,
        max_pixels=50_000_000,
        worker="t:1",
    )


async def test_a_successful_attempt_writes_every_rendition_then_completes(pool: DecodePool) -> None:
    catalog, store = FakeCatalog(), MemoryObjectStore()
    await store.put_bytes(
        f"originals/{TENANT}/abc", (CORPUS / "bmp_hopper_24bit.bmp").read_bytes(), "image/bmp"
    )
    result = await _runner(catalog, store, pool).run(_request())
    assert result.outcome is Outcome.DONE
    keys = sorted(k for k in store.objects if k.startswith("renditions/"))
    assert keys == [f"renditions/{TENANT}/{ASSET}/{p}.jpg" for p in ("card", "thumb", "zoom")]
    (completed,) = catalog.completed
    assert {r.object_key for r in completed.renditions} == set(keys)
    assert all(
        r.rendition.size_bytes == len(store.objects[r.object_key][0]) for r in completed.renditions
    )
    # The placeholder travels in the same CompleteJob that marks the asset ready.
    assert completed.placeholder.thumbhash and completed.placeholder.dominant_color.startswith("#")
    # Fixed-quality presets: no scores, no target.
    assert all(
        not r.rendition.HasField("scores") and r.rendition.min_ssim == 0
        for r in completed.renditions
    )


async def test_a_quality_target_sends_the_chosen_quality_and_its_scores(pool: DecodePool) -> None:
    catalog, store = FakeCatalog(), MemoryObjectStore()
    await store.put_bytes(
        f"originals/{TENANT}/abc", (CORPUS / "photo_iphone6_gps.jpg").read_bytes(), "image/jpeg"
    )
    presets = [p.model_copy(update={"min_ssim": 0.96}) for p in Settings().presets]
    runner = JobRunner(
        catalog=catalog,
        store=store,
        pool=pool,
        presets=presets,
        max_pixels=50_000_000,
        worker="t:1",
    )
    assert (await runner.run(_request())).outcome is Outcome.DONE
    (completed,) = catalog.completed
    for record in completed.renditions:
        rendition = record.rendition
        assert rendition.min_ssim == pytest.approx(0.96)
        assert rendition.scores.ssim >= 0.96 and rendition.scores.psnr_db > 25
        assert not rendition.scores.psnr_infinite and 1 <= rendition.quality <= 100


async def test_a_finished_job_is_skipped_without_work(pool: DecodePool) -> None:
    catalog, store = FakeCatalog(proceed=False), MemoryObjectStore()
    result = await _runner(catalog, store, pool).run(_request())
    assert result.outcome is Outcome.SKIPPED
    assert store.objects == {} and catalog.completed == []


async def test_a_missing_original_fails_the_attempt_and_says_why(pool: DecodePool) -> None:
    catalog = FakeCatalog()
    result = await _runner(catalog, MemoryObjectStore(), pool).run(_request())
    assert result.outcome is Outcome.FAILED and result.attempt == 1
    assert "missing from the object store" in result.error
    assert not result.transient, "a missing original is the job's problem, not an outage"


async def test_an_unreachable_catalog_fails_the_attempt(pool: DecodePool) -> None:
    result = await _runner(FakeCatalog(down=True), MemoryObjectStore(), pool).run(_request())
    assert result.outcome is Outcome.FAILED
    assert "catalog is unavailable" in result.error
    assert result.transient


async def test_an_unreachable_object_store_is_a_transient_failure(pool: DecodePool) -> None:
    store = MemoryObjectStore()
    store.available = False
    result = await _runner(FakeCatalog(), store, pool).run(_request())
    assert result.outcome is Outcome.FAILED and result.transient
