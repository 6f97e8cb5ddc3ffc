"""Running one attempt of a render job, whoever delivered it (broker or catalog poll).

An attempt: open it in the catalog (a finished job is skipped), read the original,
render every preset the request names (or, for a request made before presets travelled
in it, the configured ones) in the worker pool, write the renditions to keys named by their
bytes, then record them, job done and asset ready in one catalog transaction. Every
step is idempotent, so an attempt that runs twice produces the same objects and rows;
and since a key names its bytes, an attempt that loses the fencing race (it finishes
after a newer one committed) can never overwrite the objects the committed rows point at.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from imagepipe.v1 import catalog_internal_pb2, common_pb2, events_pb2
from services.renderer.crop import Focal, focal_point
from services.renderer.render import Rendering, render_presets
from services.shared.errors import FailedPrecondition, ImagepipeError, InvalidArgument, Unavailable
from services.shared.imaging.formats import format_from_name
from services.shared.logs import get_logger
from services.shared.preset_wire import preset_from_message
from services.shared.presets import Preset
from services.shared.sandbox import DecodePool
from services.shared.storage import ObjectStore, rendition_key

__all__ = [
    "AttemptOutcome",
    "Isolation",
    "JobCatalog",
    "JobRunner",
    "Outcome",
    "request_focal_point",
    "request_presets",
    "worker_name",
]

log = get_logger(__name__)

RENDER_JOB_SECONDS = Histogram(
    "imagepipe_render_job_seconds",
    "Time to decode an original and make all its renditions (in the worker pool).",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30),
)
RENDER_SECONDS = Histogram(
    "imagepipe_render_seconds",
    "Time to resize and encode one rendition, by preset (the shared decode excluded).",
    ["preset"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
RENDITION_BYTES = Counter(
    "imagepipe_rendition_bytes_total", "Bytes of renditions written, by format.", ["format"]
)
JOB_OUTCOMES = Counter(
    "imagepipe_render_attempts_total", "Render attempts by outcome.", ["outcome"]
)
# A job's lease in the catalog: long enough for a slow render, short enough that a
# crashed renderer's job is picked up again by catalog polling.
LEASE_SECONDS = 120


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobCatalog(Protocol):
    async def start_job_attempt(
        self, job_id: str, *, worker: str, lease_seconds: int
    ) -> catalog_internal_pb2.StartJobAttemptResponse: ...

    async def complete_job(self, request: catalog_internal_pb2.CompleteJobRequest) -> None: ...


class Outcome(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"  # already done or dead, or a newer attempt took over
    FAILED = "failed"


@dataclass(frozen=True)
class AttemptOutcome:
    outcome: Outcome
    attempt: int = 0
    error: str = ""
    transient: bool = False  # a dependency was down, not the job's fault


class Isolation:
    """Shared/exclusive hold on this renderer's attempts.

    A job whose earlier delivery was never settled may be one that kills its
    renderer. It runs alone: it waits until the attempts running finish, and no
    other starts until it ends, so a crash while it runs charges no other job. A
    waiting exclusive holder goes first, so a steady stream of ordinary jobs
    cannot starve it.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_alone = 0

    @property
    def running(self) -> int:
        return self._shared + self._exclusive

    @contextlib.asynccontextmanager
    async def hold(self, *, alone: bool) -> AsyncIterator[None]:
        async with self._changed:
            if alone:
                self._waiting_alone += 1
                try:
                    await self._changed.wait_for(lambda: not self._exclusive and not self._shared)
                finally:
                    self._waiting_alone -= 1
                    # A cancelled waiter may have been what held ordinary jobs back.
                    self._changed.notify_all()
                self._exclusive = True
            else:
                await self._changed.wait_for(
                    lambda: not self._exclusive and not self._waiting_alone
                )
                self._shared += 1
        try:
            yield
        finally:
            async with self._changed:
                if alone:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._changed.notify_all()


class JobRunner:
    """Runs attempts; the caller settles failures (broker retry or outbox).

    Attempts of one runner share its renderer process, except a job marked
    `interrupted` (or redelivered by the broker): it runs alone (see Isolation).
    """

    def __init__(
        self,
        *,
        catalog: JobCatalog,
        store: ObjectStore,
        pool: DecodePool,
        presets: Sequence[Preset],
        max_pixels: int,
        worker: str,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._pool = pool
        self._presets = list(presets)
        self._max_pixels = max_pixels
        self.worker = worker
        self.isolation = Isolation()

    async def run(
        self, request: events_pb2.RenderRequest, *, redelivered: bool = False
    ) -> AttemptOutcome:
        """One attempt; never raises for a failed render (the outcome says so).

        A job redelivered after a delivery nobody settled runs alone, from before
        its attempt opens until it ends.
        """
        alone = redelivered or request.interrupted
        if alone:
            log.info(
                "an earlier delivery was interrupted; running it alone",
                extra={"job_id": request.job_id},
            )
        async with self.isolation.hold(alone=alone):
            return await self._attempt(request)

    async def _attempt(self, request: events_pb2.RenderRequest) -> AttemptOutcome:
        try:
            started = await self._catalog.start_job_attempt(
                request.job_id, worker=self.worker, lease_seconds=LEASE_SECONDS
            )
        except ImagepipeError as error:
            JOB_OUTCOMES.labels("failed").inc()
            return AttemptOutcome(
                Outcome.FAILED, 0, f"could not start the attempt: {_describe(error)}", True
            )
        if not started.proceed:
            JOB_OUTCOMES.labels("skipped").inc()
            log.info("job already finished; skipping", extra={"job_id": request.job_id})
            return AttemptOutcome(Outcome.SKIPPED)
        attempt = started.attempt
        try:
            renditions, placeholder = await self._render(request)
            try:
                await self._catalog.complete_job(
                    catalog_internal_pb2.CompleteJobRequest(
                        job_id=request.job_id,
                        attempt=attempt,
                        renditions=renditions,
                        placeholder=placeholder,
                    )
                )
            except FailedPrecondition:
                # The job was given up on, or a newer attempt took it over, while this
                # one ran: its result is discarded, nothing to record. Only the catalog's
                # answer means that: a refusal while rendering is a failed attempt.
                JOB_OUTCOMES.labels("skipped").inc()
                return AttemptOutcome(Outcome.SKIPPED, attempt)
        except ImagepipeError as error:
            JOB_OUTCOMES.labels("failed").inc()
            message = _describe(error)
            log.warning(
                "render attempt %d failed: %s", attempt, message, extra={"job_id": request.job_id}
            )
            # Transient only when a dependency was down; a refusal a retry cannot change
            # (a bad image, storage access denied) uses up the retry budget.
            return AttemptOutcome(Outcome.FAILED, attempt, message, isinstance(error, Unavailable))
        except Exception as error:
            # A bug, not the job's fault: still settle the attempt (retry, then poison)
            # rather than leave the message unsettled and the job stuck.
            JOB_OUTCOMES.labels("failed").inc()
            log.exception("render attempt %d hit an unexpected error", attempt)
            return AttemptOutcome(
                Outcome.FAILED, attempt, f"internal error: {type(error).__name__}: {error}"
            )
        JOB_OUTCOMES.labels("done").inc()
        log.info("rendered", extra={"job_id": request.job_id, "renditions": len(renditions)})
        return AttemptOutcome(Outcome.DONE, attempt)

    async def _render(
        self, request: events_pb2.RenderRequest
    ) -> tuple[list[catalog_internal_pb2.RenditionRecord], common_pb2.Placeholder]:
        presets = request_presets(request, self._presets)
        versions = {preset.name: preset.version for preset in presets}
        original = await self._store.get_bytes(request.original_key)
        started = time.perf_counter()
        rendering: Rendering = await self._pool.run(
            render_presets, original, presets, self._max_pixels, request_focal_point(request)
        )
        RENDER_JOB_SECONDS.observe(time.perf_counter() - started)
        records = []
        for image in rendering.renditions:
            RENDER_SECONDS.labels(image.preset).observe(image.seconds)
            RENDITION_BYTES.labels(image.format).inc(len(image.data))
            # The delivery service's ETag; the key carries its first 16 digits.
            content_hash = hashlib.sha256(image.data).hexdigest()
            key = rendition_key(
                request.tenant_id, request.asset_id, image.preset, image.extension, content_hash
            )
            await self._store.put_bytes(key, image.data, image.content_type)
            rendition = common_pb2.Rendition(
                asset_id=request.asset_id,
                preset=image.preset,
                format=format_from_name(image.format),  # type: ignore[arg-type]
                width=image.width,
                height=image.height,
                size_bytes=len(image.data),
                quality=image.quality,
                min_ssim=image.min_ssim,
                content_hash=content_hash,
                preset_version=versions[image.preset],
            )
            if image.scores is not None:
                rendition.scores.CopyFrom(image.scores.message())
            records.append(
                catalog_internal_pb2.RenditionRecord(rendition=rendition, object_key=key)
            )
        placeholder = common_pb2.Placeholder(
            thumbhash=rendering.thumbhash, dominant_color=rendering.dominant_color
        )
        return records, placeholder


def request_presets(
    request: events_pb2.RenderRequest, configured: Sequence[Preset]
) -> list[Preset]:
    """The presets a request asks for: the definitions it carries, so a redelivery after
    a preset changed still renders what was asked; the configured presets for a request
    made before presets travelled in it (none carried).

    Raises InvalidArgument (INVALID_PRESET) for a definition this build cannot render:
    the job's own fault, so the attempt fails and uses up the retry budget.
    """
    if not request.presets:
        return list(configured)
    presets: list[Preset] = []
    for index, message in enumerate(request.presets):
        try:
            preset = preset_from_message(message)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                for problem in error.errors()
            )
            raise _invalid_preset(
                index, message.name, problems, "fix the preset and render the asset again"
            ) from None
        except KeyError as error:
            # An enum value newer than this build: it cannot know what was meant.
            raise _invalid_preset(
                index,
                message.name,
                f"its fit, gravity or chroma subsampling ({error}) is unknown to this renderer",
                "update the renderers to the catalog's version",
            ) from None
        if message.version and message.version != preset.version:
            # A field this build does not know was set: what is rendered, and recorded,
            # is the definition as this build reads it.
            log.warning(
                "preset %r is version %s here, %s in the request",
                preset.name,
                preset.version,
                message.version,
                extra={"job_id": request.job_id},
            )
        presets.append(preset)
    names = [preset.name for preset in presets]
    if len(set(names)) != len(names):
        raise InvalidArgument(
            f"the render request names a preset twice ({', '.join(names)}); each "
            "preset's renditions need a name of their own",
            reason="INVALID_PRESET",
        )
    return presets


def _invalid_preset(index: int, name: str, problems: str, action: str) -> InvalidArgument:
    return InvalidArgument(
        f"preset {index} ({name!r}) of the render request cannot be rendered: {problems}; {action}",
        reason="INVALID_PRESET",
        metadata={"preset": name},
    )


def request_focal_point(request: events_pb2.RenderRequest) -> Focal | None:
    """The asset's focal point the request carries; None when it has none."""
    if not request.HasField("focal_point"):
        return None
    return focal_point(request.focal_point.x, request.focal_point.y)


def _describe(error: ImagepipeError) -> str:
    return f"{error.reason}: {error.message}"
