"""Replaying a poison job: marked replayed once, its job back in the outbox with a
fresh retry budget and its asset pending; replaying it again changes nothing more."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import pytest

from services.catalog.model import (
    Asset,
    AssetStatus,
    Attempt,
    Job,
    JobState,
    PoisonReason,
    RenderRequest,
)
from services.catalog.usecases.jobs import fail_attempt, record_poison
from services.catalog.usecases.poison import list_poison_jobs, retry_poison_job
from services.shared.errors import NotFound
from services.shared.retry_policy import DEFAULT_POLICY
from tests.unit.catalog.fakes import FakeCatalog, new_asset, registered

TENANT = uuid.uuid4()
LEASE = dt.timedelta(minutes=2)
DELIVERY_LIMIT = 3


def _encode(
    request: RenderRequest, attempts: Sequence[Attempt], *, failed: tuple[int, str] | None = None
) -> bytes:
    return f"{request.job_id} after {len(attempts)} failures, then {failed}".encode()


async def _failed_for_good(catalog: FakeCatalog, tenant: uuid.UUID = TENANT) -> tuple[Asset, Job]:
    """An asset whose job spent its retry budget on permanent failures: poison."""
    asset, job = await registered(catalog, new_asset(tenant))
    for _ in range(DEFAULT_POLICY.max_retries + 1):
        started = await catalog.jobs.start_attempt(job.id, "renderer", LEASE)
        job = await fail_attempt(
            catalog.jobs,
            _encode,
            job_id=job.id,
            attempt=started.attempt,
            error="ORIGINAL_UNREADABLE: truncated",
            transient=False,
            retry_after=None,
        )
    assert job.state == JobState.DEAD
    return asset, job


async def _open_poison(catalog: FakeCatalog, tenant: uuid.UUID = TENANT) -> list[uuid.UUID]:
    page = await list_poison_jobs(
        catalog.poison,
        catalog.jobs,
        tenant_id=tenant,
        include_replayed=False,
        page_size=0,
        page_token="",
    )
    return [p.poison_job.id for p in page.items]


async def test_a_replayed_job_is_back_in_the_outbox_with_a_fresh_budget() -> None:
    catalog = FakeCatalog()
    asset, dead = await _failed_for_good(catalog)
    (poison_id,) = await _open_poison(catalog)
    poison = catalog.db.poison_jobs[poison_id]
    assert poison.reason == PoisonReason.RETRIES_EXHAUSTED
    assert (
        poison.request
        == f"{dead.id} after 3 failures, then (4, 'ORIGINAL_UNREADABLE: truncated')".encode()
    )

    replayed = await retry_poison_job(
        catalog.poison, catalog.jobs, tenant_id=TENANT, poison_job_id=poison_id
    )

    assert replayed.poison_job.poison_job.replayed_at is not None
    assert [a.attempt for a in replayed.poison_job.attempts] == [1, 2, 3, 4]
    job = replayed.job
    assert (job.id, job.state, job.last_error, job.finished_at) == (
        dead.id,
        JobState.PENDING,
        "",
        None,
    )
    assert catalog.db.asset(asset.id).status == AssetStatus.PENDING
    assert await _open_poison(catalog) == []
    # A fresh budget: nothing failed yet, nothing interrupted, one failure is retried.
    assert await catalog.jobs.failed_attempts([job.id]) == []
    request = await catalog.jobs.render_request_row(job.id)
    assert request is not None and not request.interrupted
    started = await catalog.jobs.start_attempt(job.id, "renderer", LEASE)
    assert started.attempt == 5
    again = await fail_attempt(
        catalog.jobs,
        _encode,
        job_id=job.id,
        attempt=started.attempt,
        error="ORIGINAL_UNREADABLE: truncated",
        transient=False,
        retry_after=None,
    )
    assert again.state == JobState.RETRYING


async def test_replaying_twice_changes_nothing_more() -> None:
    catalog = FakeCatalog()
    asset, dead = await _failed_for_good(catalog)
    (poison_id,) = await _open_poison(catalog)
    first = await retry_poison_job(
        catalog.poison, catalog.jobs, tenant_id=TENANT, poison_job_id=poison_id
    )
    # The job moved on since: a renderer runs it.
    started = await catalog.jobs.start_attempt(dead.id, "renderer", LEASE)
    running = await catalog.jobs.get_job(TENANT, dead.id)

    second = await retry_poison_job(
        catalog.poison, catalog.jobs, tenant_id=TENANT, poison_job_id=poison_id
    )

    assert second.poison_job.poison_job == first.poison_job.poison_job
    assert second.job == running
    assert running is not None and running.state == JobState.RUNNING
    assert running.attempts == started.attempt
    assert catalog.db.asset(asset.id).status == AssetStatus.PROCESSING


async def test_a_job_given_up_again_after_a_replay_has_one_open_poison_job() -> None:
    catalog = FakeCatalog()
    _, dead = await _failed_for_good(catalog)
    (first,) = await _open_poison(catalog)
    await retry_poison_job(catalog.poison, catalog.jobs, tenant_id=TENANT, poison_job_id=first)
    recorded = await record_poison(
        catalog.jobs,
        catalog.poison,
        job_id=dead.id,
        reason=PoisonReason.RETRIES_EXHAUSTED,
        error="given up",
        request=b"",
        delivery_limit=DELIVERY_LIMIT,
    )
    assert recorded.poison_job is not None
    assert await _open_poison(catalog) == [recorded.poison_job.poison_job.id]
    assert recorded.poison_job.poison_job.id != first


async def test_a_deleted_asset_stays_deleted_when_its_job_is_replayed() -> None:
    catalog = FakeCatalog()
    asset, dead = await _failed_for_good(catalog)
    (poison_id,) = await _open_poison(catalog)
    await catalog.assets.delete_asset(TENANT, asset.id)
    replayed = await retry_poison_job(
        catalog.poison, catalog.jobs, tenant_id=TENANT, poison_job_id=poison_id
    )
    assert (replayed.job.id, replayed.job.state) == (dead.id, JobState.PENDING)
    assert catalog.db.asset(asset.id).status == AssetStatus.DELETED


@pytest.mark.parametrize("whose", ["unknown", "other tenant"])
async def test_a_poison_job_the_tenant_does_not_have_is_not_found(whose: str) -> None:
    catalog = FakeCatalog()
    other = uuid.uuid4()
    _, dead = await _failed_for_good(catalog, other)
    (theirs,) = await _open_poison(catalog, other)
    poison_id = theirs if whose == "other tenant" else uuid.uuid4()

    with pytest.raises(NotFound) as refused:
        await retry_poison_job(
            catalog.poison, catalog.jobs, tenant_id=TENANT, poison_job_id=poison_id
        )

    assert refused.value.reason == "POISON_JOB_NOT_FOUND"
    assert await _open_poison(catalog, other) == [theirs]
    job = await catalog.jobs.get_job(other, dead.id)
    assert job is not None and job.state == JobState.DEAD
