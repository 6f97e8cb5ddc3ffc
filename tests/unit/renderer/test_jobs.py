"""One render attempt on fakes: skipped when finished, done writes keys, failures say why."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from minio.error import S3Error

from imagepipe.v1 import catalog_internal_pb2, common_pb2, events_pb2, renderer_pb2
from services.renderer.jobs import JobCatalog, JobRunner, Outcome
from services.renderer.render import render_presets
from services.shared.errors import FailedPrecondition, Unavailable
from services.shared.preset_wire import preset_messages
from services.shared.presets import Preset
from services.shared.sandbox import DecodePool
from services.shared.settings import Settings
from services.shared.storage import (
    STORAGE_REFUSED,
    MemoryObjectStore,
    ObjectStore,
    S3ObjectStore,
)

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


def _runner(catalog: JobCatalog, store: ObjectStore, pool: DecodePool) -> JobRunner:
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
    assert [re.sub(r"\.[0-9a-f]{16}\.", ".", k) for k in keys] == [
        f"renditions/{TENANT}/{ASSET}/{p}.jpg" for p in ("card", "thumb", "zoom")
    ]
    # Each key names its bytes.
    for key in keys:
        digest = key.rsplit(".", 2)[1]
        assert hashlib.sha256(store.objects[key][0]).hexdigest().startswith(digest)
    (completed,) = catalog.completed
    assert {r.object_key for r in completed.renditions} == set(keys)
    assert all(
        r.rendition.size_bytes == len(store.objects[r.object_key][0]) for r in completed.renditions
    )
    # Each rendition names its bytes in full (the delivery service's ETag).
    assert all(
        r.rendition.content_hash == hashlib.sha256(store.objects[r.object_key][0]).hexdigest()
        for r in completed.renditions
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


class FencingCatalog:
    """Numbers attempts like the catalog and lets only the newest one complete."""

    def __init__(self) -> None:
        self.attempts = 0
        self.completed: list[catalog_internal_pb2.CompleteJobRequest] = []

    async def start_job_attempt(
        self, job_id: str, *, worker: str, lease_seconds: int
    ) -> catalog_internal_pb2.StartJobAttemptResponse:
        self.attempts += 1
        return catalog_internal_pb2.StartJobAttemptResponse(
            proceed=True,
            attempt=self.attempts,
            job=common_pb2.Job(job_id=job_id, state=common_pb2.JOB_STATE_RUNNING),
        )

    async def complete_job(self, request: catalog_internal_pb2.CompleteJobRequest) -> None:
        if self.completed or request.attempt != self.attempts:
            raise FailedPrecondition("a newer attempt owns the job", reason="JOB_NOT_RUNNABLE")
        self.completed.append(request)


class GatedStore(MemoryObjectStore):
    """Shares another store's objects; holds every write until `release` is set."""

    def __init__(self, shared: MemoryObjectStore) -> None:
        super().__init__()
        self.objects = shared.objects
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.waiting.set()
        await self.release.wait()
        await super().put_bytes(key, data, content_type)


async def test_a_stale_attempt_finishing_after_the_winner_leaves_its_objects_intact(
    pool: DecodePool,
) -> None:
    catalog, store = FencingCatalog(), MemoryObjectStore()
    await store.put_bytes(
        f"originals/{TENANT}/abc", (CORPUS / "bmp_hopper_24bit.bmp").read_bytes(), "image/bmp"
    )
    stale_store = GatedStore(store)
    # The stale attempt runs an older configuration (as during a rolling deploy), so its
    # bytes differ from the winner's.
    old_presets = [p.model_copy(update={"quality": 40}) for p in Settings().presets]
    stale = JobRunner(
        catalog=catalog,
        store=stale_store,
        pool=pool,
        presets=old_presets,
        max_pixels=50_000_000,
        worker="stale:1",
    )
    stale_run = asyncio.create_task(stale.run(_request()))
    await asyncio.wait_for(stale_store.waiting.wait(), 60)  # rendered, about to write

    winner = await _runner(catalog, store, pool).run(_request())
    assert winner.outcome is Outcome.DONE and winner.attempt == 2
    (committed,) = catalog.completed
    winner_bytes = {r.object_key: store.objects[r.object_key][0] for r in committed.renditions}

    stale_store.release.set()
    late = await asyncio.wait_for(stale_run, 60)
    assert late.outcome is Outcome.SKIPPED and late.attempt == 1
    for record in committed.renditions:
        data = store.objects[record.object_key][0]
        assert data == winner_bytes[record.object_key], f"{record.object_key} was overwritten"
        assert len(data) == record.rendition.size_bytes
    # The stale attempt's output went somewhere else (an orphan for Purge).
    stale_keys = set(store.objects) - set(winner_bytes) - {f"originals/{TENANT}/abc"}
    assert len(stale_keys) == len(winner_bytes)


class _RefusingMinio:
    """The parts of the minio client an attempt uses; every write is refused."""

    def __init__(self, original: bytes, code: str, status: int) -> None:
        self._original = original
        self._code = code
        self._status = status

    def get_object(self, bucket: str, key: str) -> urllib3.HTTPResponse:
        return urllib3.HTTPResponse(body=io.BytesIO(self._original), preload_content=False)

    def put_object(self, bucket: str, key: str, *args: object, **kwargs: object) -> None:
        raise S3Error(
            urllib3.HTTPResponse(status=self._status),
            self._code,
            "refused",
            f"/{bucket}/{key}",
            "rid",
            "hid",
        )


@pytest.mark.parametrize(("code", "status"), [("AccessDenied", 403), ("NoSuchBucket", 404)])
async def test_a_refusing_object_store_uses_up_the_retry_budget(
    pool: DecodePool, code: str, status: int
) -> None:
    store = S3ObjectStore(Settings())
    store._client = _RefusingMinio(  # type: ignore[assignment]
        (CORPUS / "bmp_hopper_24bit.bmp").read_bytes(), code, status
    )
    refused_before = STORAGE_REFUSED.labels(code)._value.get()
    try:
        result = await _runner(FakeCatalog(), store, pool).run(_request())
    finally:
        await store.close()
    assert result.outcome is Outcome.FAILED and result.attempt == 1
    assert not result.transient, "retrying a refusal every 8 s forever never ends"
    assert result.error.startswith("STORAGE_REFUSED:") and code in result.error
    assert STORAGE_REFUSED.labels(code)._value.get() == refused_before + 1


async def _stored_hopper() -> MemoryObjectStore:
    store = MemoryObjectStore()
    await store.put_bytes(
        f"originals/{TENANT}/abc", (CORPUS / "bmp_hopper_24bit.bmp").read_bytes(), "image/bmp"
    )
    return store


def _renditions(catalog: FakeCatalog) -> dict[str, common_pb2.Rendition]:
    (completed,) = catalog.completed
    return {r.rendition.preset: r.rendition for r in completed.renditions}


async def test_a_request_made_before_presets_travelled_renders_the_configured_ones(
    pool: DecodePool,
) -> None:
    catalog = FakeCatalog()
    result = await _runner(catalog, await _stored_hopper(), pool).run(_request())
    assert result.outcome is Outcome.DONE
    configured = {preset.name: preset.version for preset in Settings().presets}
    assert {name: r.preset_version for name, r in _renditions(catalog).items()} == configured


async def test_a_redelivered_request_renders_the_presets_it_carries_not_the_settings(
    pool: DecodePool,
) -> None:
    """Redelivery of an old render request after the preset changed renders what that
    request asked: its definitions travel in it, with their versions."""
    card = next(p for p in Settings().presets if p.name == "card")
    asked = card.model_copy(
        update={"max_width": 100, "max_height": 50, "fit": "cover", "gravity": "centre"}
    )
    assert asked.version != card.version
    request = _request()
    request.presets.extend(preset_messages([asked]))
    catalog, store = FakeCatalog(), await _stored_hopper()
    result = await _runner(catalog, store, pool).run(request)
    assert result.outcome is Outcome.DONE
    (rendition,) = _renditions(catalog).values()
    assert (rendition.preset, rendition.width, rendition.height) == ("card", 100, 50)
    assert rendition.preset_version == asked.version
    written = [k for k in store.objects if k.startswith("renditions/")]
    assert [k.split("/")[-1].split(".")[0] for k in written] == ["card"]


async def test_the_focal_point_travels_to_the_crop(pool: DecodePool) -> None:
    focal = Preset(name="banner", max_width=100, max_height=40, fit="cover", gravity="focal")
    original = (CORPUS / "bmp_hopper_24bit.bmp").read_bytes()
    hashes = []
    for y in (0.0, 1.0):
        request = _request()
        request.presets.extend(preset_messages([focal]))
        request.focal_point.CopyFrom(common_pb2.FocalPoint(x=0.5, y=y))
        catalog = FakeCatalog()
        assert (await _runner(catalog, await _stored_hopper(), pool).run(request)).outcome is (
            Outcome.DONE
        )
        (rendition,) = _renditions(catalog).values()
        (direct,) = render_presets(original, [focal], 50_000_000, (0.5, y)).renditions
        assert rendition.content_hash == hashlib.sha256(direct.data).hexdigest()
        hashes.append(rendition.content_hash)
    assert hashes[0] != hashes[1], "the top and the bottom window differ"


def _definition(**changes: object) -> renderer_pb2.Preset:
    """A valid preset on the wire, with `changes` made to it."""
    (message,) = preset_messages([Preset(name="card", max_width=90, max_height=90)])
    for field, value in changes.items():
        setattr(message, field, value)
    return message


@pytest.mark.parametrize(
    ("definitions", "expected"),
    [
        ([_definition(name="Bad Name")], "name: String should match pattern"),
        ([_definition(max_width=0)], "max_width: Input should be greater than or equal to 1"),
        ([_definition(fit=99)], "(99) is unknown to this renderer"),
        ([_definition(), _definition()], "names a preset twice"),
    ],
)
async def test_a_preset_this_build_cannot_render_fails_the_attempt_and_says_why(
    pool: DecodePool, definitions: list[renderer_pb2.Preset], expected: str
) -> None:
    request = _request()
    request.presets.extend(definitions)
    catalog, store = FakeCatalog(), await _stored_hopper()
    result = await _runner(catalog, store, pool).run(request)
    assert result.outcome is Outcome.FAILED and result.attempt == 1
    assert result.error.startswith("INVALID_PRESET:") and expected in result.error
    assert not result.transient, "the definition is the job's own fault"
    assert catalog.completed == [] and list(store.objects) == [f"originals/{TENANT}/abc"]
