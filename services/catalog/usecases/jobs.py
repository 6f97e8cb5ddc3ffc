"""Render jobs: reading them, the claims renderers and relays make, an attempt's start
and settlement, giving a job up, and watching an asset until its job is over.

A renderer working without the broker claims jobs; one past the delivery limit is
spared or made poison here (lifecycle.may_spare decides, under the job's row lock),
as the work queue would dead-letter an over-delivered message.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from services.catalog.model import (
    AssetStatus,
    AssetWithRenditions,
    Attempt,
    Job,
    JobState,
    JobWithAttempts,
    NewRendition,
    PoisonJobWithAttempts,
    PoisonReason,
    RenderRequest,
    RenderRequestWithAttempts,
)
from services.catalog.ports import AssetStore, AssetWatch, JobStore, PoisonStore, RequestEncoder
from services.catalog.usecases import paging
from services.catalog.usecases.assets import asset_not_found, with_renditions
from services.catalog.usecases.paging import Page, decode_token, encode_token, group_by, paginate
from services.shared.errors import FailedPrecondition, NotFound
from services.shared.limits import clip_error

__all__ = [
    "FINAL_STATUSES",
    "RecordedPoison",
    "claim_for_render",
    "claim_unpublished",
    "complete_job",
    "fail_attempt",
    "get_job",
    "job_not_found",
    "list_jobs",
    "mark_published",
    "record_poison",
    "start_attempt",
    "watch_asset",
    "with_attempts",
]

# An asset in one of these changes no more by itself: a watch of it ends.
FINAL_STATUSES = frozenset({AssetStatus.READY, AssetStatus.FAILED, AssetStatus.DELETED})


@dataclass(frozen=True)
class RecordedPoison:
    spared: bool = False  # at the delivery limit, yet no crasher: delivered again instead
    poison_job: PoisonJobWithAttempts | None = None  # None also for a job that is done


def job_not_found(job_id: uuid.UUID) -> NotFound:
    return NotFound(f"no job {job_id}", reason="JOB_NOT_FOUND")


async def attempts_by_job(
    jobs: JobStore, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Attempt, ...]]:
    """The attempt history of each of these jobs, in one query (empty for none)."""
    grouped = group_by(await jobs.list_attempts(tenant_id, job_ids), lambda a: a.job_id)
    return {job_id: tuple(grouped.get(job_id, ())) for job_id in job_ids}


async def with_attempts(
    jobs: JobStore, tenant_id: uuid.UUID, found: Sequence[Job]
) -> list[JobWithAttempts]:
    attempts = await attempts_by_job(jobs, tenant_id, [j.id for j in found])
    return [JobWithAttempts(j, attempts[j.id]) for j in found]


async def get_job(jobs: JobStore, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> JobWithAttempts:
    job = await jobs.get_job(tenant_id, job_id)
    if job is None:
        raise job_not_found(job_id)
    (found,) = await with_attempts(jobs, tenant_id, [job])
    return found


async def list_jobs(
    jobs: JobStore,
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    state: JobState | None,
    asset_id: uuid.UUID | None,
    page_size: int,
    page_token: str,
) -> Page[JobWithAttempts]:
    """The tenant's jobs newest first, of one state or one asset (deleted or not)."""
    if (
        asset_id is not None
        and await assets.get_asset(tenant_id, asset_id, include_deleted=True) is None
    ):
        raise asset_not_found(asset_id)
    query = f"jobs:{tenant_id}:{state}:{asset_id}"
    size = paging.page_size(page_size)
    after = decode_token(page_token, query)
    page = await paginate(
        lambda limit: jobs.list_jobs(tenant_id, state, asset_id, after, limit),
        size=size,
        token_of=lambda job: encode_token(query, job.created_at, job.id),
    )
    return Page(await with_attempts(jobs, tenant_id, page.items), page.next_page_token)


async def mark_published(jobs: JobStore, *, job_id: uuid.UUID) -> Job:
    job = await jobs.mark_job_published(job_id)
    if job is None:
        raise job_not_found(job_id)
    return job


async def _with_failed_attempts(
    jobs: JobStore, requests: Sequence[RenderRequest]
) -> list[RenderRequestWithAttempts]:
    """Render requests carrying the failed attempts of their current budget."""
    if not requests:
        return []
    attempts = group_by(
        await jobs.failed_attempts([r.job_id for r in requests]), lambda a: a.job_id
    )
    return [RenderRequestWithAttempts(r, tuple(attempts.get(r.job_id, ()))) for r in requests]


async def claim_unpublished(
    jobs: JobStore,
    *,
    limit: int,
    lease: dt.timedelta,
    min_age: dt.timedelta,
    owner: str,
    stuck_after: dt.timedelta | None,
) -> list[RenderRequestWithAttempts]:
    """Jobs for a relay to publish: never confirmed, abandoned, or (with
    `stuck_after`) waiting that long for a message presumed lost."""
    claimed = await jobs.claim_unpublished(
        limit=limit, lease=lease, min_age=min_age, owner=owner, stuck_after=stuck_after
    )
    return await _with_failed_attempts(jobs, claimed)


async def claim_for_render(
    jobs: JobStore,
    poison: PoisonStore,
    encode: RequestEncoder,
    *,
    limit: int,
    lease: dt.timedelta,
    owner: str,
    delivery_limit: int,
) -> list[RenderRequestWithAttempts]:
    """Jobs leased to a renderer working without the broker.

    Each claimed job past the delivery limit is spared or recorded as poison
    instead; should that fail, the next claim finds it again.
    """
    claimed = await jobs.claim_for_render(
        limit=limit, lease=lease, owner=owner, delivery_limit=delivery_limit
    )
    for over in await _with_failed_attempts(jobs, claimed.over_limit):
        # As a dead letter of the work queue would be: spared (a later claim takes it,
        # to run alone) or poison.
        await record_poison(
            jobs,
            poison,
            job_id=over.request.job_id,
            reason=PoisonReason.DELIVERY_LIMIT,
            error=f"claimed {delivery_limit + 1} times without an attempt being settled "
            "(the renderer crashed or was killed each time)",
            request=encode(over.request, over.attempts),
            delivery_limit=delivery_limit,
        )
    return await _with_failed_attempts(jobs, claimed.jobs)


async def start_attempt(
    jobs: JobStore, *, job_id: uuid.UUID, worker: str, lease: dt.timedelta
) -> tuple[Job, int]:
    """The job and the attempt opened for it: 0 when it is finished (nothing to run)."""
    started = await jobs.start_attempt(job_id, worker, lease)
    if started.job is None:
        raise job_not_found(job_id)
    return started.job, started.attempt


async def complete_job(
    jobs: JobStore,
    *,
    job_id: uuid.UUID,
    attempt: int,
    renditions: Sequence[NewRendition],
    thumbhash: str | None,
    dominant_color: str | None,
) -> Job:
    """Renditions recorded, job done, asset ready; a stale attempt's result is refused."""
    job = await jobs.complete_job(job_id, attempt, renditions, thumbhash, dominant_color)
    if job is None:
        raise FailedPrecondition(
            f"job {job_id} is dead, unknown, or has a newer attempt than "
            f"{attempt}; this attempt's result is discarded",
            reason="JOB_NOT_RUNNABLE",
        )
    return job


async def fail_attempt(
    jobs: JobStore,
    encode: RequestEncoder,
    *,
    job_id: uuid.UUID,
    attempt: int,
    error: str,
    transient: bool,
    retry_after: dt.timedelta | None,
) -> Job:
    """Settle a failed attempt: retried later (`retry_after`: through the outbox) or,
    should a permanent failure spend the budget, poison by itself."""
    error = clip_error(error)
    poison_request = b""
    if not transient:
        # Should this failure spend the budget, the store records the poison job in
        # the same transaction; this is its replayable request.
        request = await jobs.render_request_row(job_id)
        if request is not None:
            (replayable,) = await _with_failed_attempts(jobs, [request])
            poison_request = encode(request, replayable.attempts, failed=(attempt, error))
    job = await jobs.fail_attempt(
        job_id,
        attempt,
        error,
        transient=transient,
        retry_after=retry_after,
        poison_request=poison_request,
    )
    if job is None:
        raise job_not_found(job_id)
    return job


async def record_poison(
    jobs: JobStore,
    poison: PoisonStore,
    *,
    job_id: uuid.UUID,
    reason: PoisonReason,
    error: str,
    request: bytes,
    delivery_limit: int,
) -> RecordedPoison:
    """A renderer gives a job up (retries spent, or a dead letter past the delivery
    limit): job dead, asset failed, one open poison job, unless it is spared."""
    if reason == PoisonReason.DELIVERY_LIMIT and await jobs.spare_bystander(job_id, delivery_limit):
        return RecordedPoison(spared=True)
    recorded = await poison.record_poison(job_id, reason, clip_error(error), request)
    if recorded is None:
        return RecordedPoison()
    attempts = await attempts_by_job(jobs, recorded.tenant_id, [job_id])
    return RecordedPoison(poison_job=PoisonJobWithAttempts(recorded, attempts[job_id]))


async def watch_asset(
    assets: AssetStore, watch: AssetWatch, *, tenant_id: uuid.UUID, asset_id: uuid.UUID
) -> AsyncGenerator[AssetWithRenditions, None]:
    """The asset now, then again at each change of its status, until a final one.

    Close it (contextlib.aclosing) when stopping early: that ends the subscription.
    """
    # Subscribe before the first read, so no change can slip between the two.
    with watch.subscribe(asset_id) as changed:
        last: AssetStatus | None = None
        while True:
            asset = await assets.get_asset(tenant_id, asset_id, include_deleted=True)
            if asset is None:
                raise asset_not_found(asset_id)
            if asset.status != last:
                last = asset.status
                yield await with_renditions(assets, asset)
            if last in FINAL_STATUSES:
                return
            await changed.wait()
            changed.clear()
