"""Job settlement in the catalog, on a database of the test's own: the internal API
as renderers call it, with the crashes and lost calls played by the test.

- Without the broker, claims count as deliveries: a job whose renderer dies on it
  every time is poison (delivery_limit) after IMAGEPIPE_DELIVERY_LIMIT + 1 claims.
- The failure that spends the retry budget makes the job poison by itself: the
  renderer's give-up call may never arrive.
- Consecutive transient failures are one attempt row, not one per retry.
- Jobs queued or retrying with no progress are claimed again for the reconciler.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

from imagepipe.v1 import catalog_internal_pb2 as pb
from imagepipe.v1 import catalog_pb2, events_pb2
from services.catalog.api.internal import CatalogInternalServicer
from services.catalog.db import CatalogDatabase
from services.catalog.db.pool import transaction
from services.catalog.lifecycle import MAX_SPARES
from services.catalog.usecases.tenants import KeyAuthenticator
from services.shared.settings import Settings
from tests.integration.catalog_db import catalog_database, new_job, new_tenant

LIMIT = Settings().delivery_limit


def _servicer(repo: CatalogDatabase) -> CatalogInternalServicer:
    return CatalogInternalServicer(repo, cast(KeyAuthenticator, None), Settings())


async def _state(repo: CatalogDatabase, job_id: uuid.UUID) -> tuple[str, str]:
    async with transaction(repo.pool) as connection:
        row = await connection.fetchrow(
            "SELECT j.state, a.status FROM jobs j JOIN assets a ON a.id = j.asset_id "
            "WHERE j.id = $1",
            job_id,
        )
    assert row is not None
    return row["state"], row["status"]


async def _poison(repo: CatalogDatabase, job_id: uuid.UUID) -> list[tuple[str, bytes]]:
    async with transaction(repo.pool) as connection:
        rows = await connection.fetch(
            "SELECT reason, request FROM poison_jobs WHERE job_id = $1 AND replayed_at IS NULL",
            job_id,
        )
    return [(r["reason"], r["request"]) for r in rows]


async def _sql(repo: CatalogDatabase, statement: str, *args: object) -> None:
    async with transaction(repo.pool) as connection:
        await connection.execute(statement, *args)


async def test_a_renderer_dying_on_a_job_without_the_broker_ends_as_delivery_limit_poison() -> None:
    async with catalog_database("settle") as repo:
        servicer = _servicer(repo)
        tenant = await new_tenant(repo)
        _, job_id = await new_job(repo, tenant)
        claims = 0
        for _ in range(3 * LIMIT):
            claimed = await servicer.ClaimRenderJobs(
                pb.ClaimRenderJobsRequest(limit=10, lease_seconds=120, owner="r"), None
            )
            if str(job_id) not in {r.job_id for r in claimed.render_requests}:
                break
            claims += 1
            started = await servicer.StartJobAttempt(
                pb.StartJobAttemptRequest(job_id=str(job_id), worker="r", lease_seconds=120), None
            )
            assert started.proceed
            # The renderer dies mid-render; its lease runs out.
            await _sql(
                repo,
                "UPDATE jobs SET lease_expires_at = clock_timestamp() - interval '1 s' "
                "WHERE id = $1",
                job_id,
            )
        assert claims == LIMIT + 1, f"claimed {claims} times with a delivery limit of {LIMIT}"
        assert await _state(repo, job_id) == ("dead", "failed")
        ((reason, request),) = await _poison(repo, job_id)
        assert reason == "delivery_limit"
        assert events_pb2.RenderRequest.FromString(request).job_id == str(job_id)


async def test_settled_failures_renew_the_delivery_count() -> None:
    """A job that fails (transiently) rather than crashing is never delivery-limit poison."""
    async with catalog_database("settle") as repo:
        servicer = _servicer(repo)
        _, job_id = await new_job(repo, await new_tenant(repo))
        for _ in range(2 * LIMIT + 2):
            claimed = await servicer.ClaimRenderJobs(
                pb.ClaimRenderJobsRequest(limit=10, lease_seconds=120, owner="r"), None
            )
            assert [r.job_id for r in claimed.render_requests] == [str(job_id)]
            started = await servicer.StartJobAttempt(
                pb.StartJobAttemptRequest(job_id=str(job_id), worker="r", lease_seconds=120), None
            )
            await servicer.FailJobAttempt(
                pb.FailJobAttemptRequest(
                    job_id=str(job_id),
                    attempt=started.attempt,
                    error="S3_UNAVAILABLE: down",
                    transient=True,
                    retry_after_seconds=8,
                ),
                None,
            )
            await _sql(repo, "UPDATE jobs SET not_before = NULL WHERE id = $1", job_id)
        assert (await _state(repo, job_id))[0] == "pending"
        assert await _poison(repo, job_id) == []


async def test_the_failure_that_spends_the_budget_is_poison_without_a_give_up_call() -> None:
    async with catalog_database("settle") as repo:
        servicer = _servicer(repo)
        _, job_id = await new_job(repo, await new_tenant(repo))
        for failure in range(1, 5):
            started = await servicer.StartJobAttempt(
                pb.StartJobAttemptRequest(job_id=str(job_id), worker="r", lease_seconds=120), None
            )
            assert started.proceed
            # The broker path records each failure with no outbox delay (retrying),
            # then, after the fourth, calls RecordPoisonJob: that call is lost here.
            await servicer.FailJobAttempt(
                pb.FailJobAttemptRequest(
                    job_id=str(job_id),
                    attempt=started.attempt,
                    error=f"ORIGINAL_MISSING: failure {failure}",
                ),
                None,
            )
            state = await _state(repo, job_id)
            assert state == (("retrying", "processing") if failure < 4 else ("dead", "failed"))
        ((reason, request),) = await _poison(repo, job_id)
        assert reason == "retries_exhausted"
        replayable = events_pb2.RenderRequest.FromString(request)
        assert [a.error for a in replayable.attempts] == [
            f"ORIGINAL_MISSING: failure {n}" for n in range(1, 5)
        ]
        # The renderer's own give-up, should it come after all, changes nothing.
        again = await servicer.RecordPoisonJob(
            pb.RecordPoisonJobRequest(
                request=replayable, error="x", reason=catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED
            ),
            None,
        )
        assert again.poison_job.reason == catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED
        assert len(await _poison(repo, job_id)) == 1


async def test_consecutive_transient_failures_are_one_attempt_row() -> None:
    async with catalog_database("settle") as repo:
        servicer = _servicer(repo)
        _, job_id = await new_job(repo, await new_tenant(repo))

        async def attempt(transient: bool) -> None:
            started = await servicer.StartJobAttempt(
                pb.StartJobAttemptRequest(job_id=str(job_id), worker="r", lease_seconds=120), None
            )
            await servicer.FailJobAttempt(
                pb.FailJobAttemptRequest(
                    job_id=str(job_id),
                    attempt=started.attempt,
                    error="S3_UNAVAILABLE: down" if transient else "ORIGINAL_MISSING: gone",
                    transient=transient,
                ),
                None,
            )

        for _ in range(40):  # a long outage
            await attempt(transient=True)
        await attempt(transient=False)
        for _ in range(5):
            await attempt(transient=True)
        async with transaction(repo.pool) as connection:
            rows = await connection.fetch(
                "SELECT attempt, transient, repeats, first_finished_at, finished_at "
                "FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
                job_id,
            )
        assert [(r["attempt"], r["transient"], r["repeats"]) for r in rows] == [
            (40, True, 40),
            (41, False, 1),
            (46, True, 5),
        ]
        assert rows[0]["first_finished_at"] < rows[0]["finished_at"]
        assert rows[1]["first_finished_at"] is None


async def test_queued_and_retrying_jobs_without_progress_are_claimed_for_republishing() -> None:
    async with catalog_database("settle") as repo:
        servicer = _servicer(repo)
        tenant = await new_tenant(repo)
        jobs = {name: (await new_job(repo, tenant))[1] for name in ("old", "fresh", "retrying")}
        for job_id in jobs.values():
            await repo.jobs.mark_job_published(job_id)
        started = await repo.jobs.start_attempt(jobs["retrying"], "r", dt.timedelta(seconds=60))
        await repo.jobs.fail_attempt(
            jobs["retrying"], started.attempt, "x", transient=True, retry_after=None
        )
        await _sql(
            repo,
            "UPDATE jobs SET updated_at = updated_at - interval '1 hour' WHERE id = ANY($1)",
            [jobs["old"], jobs["retrying"]],
        )

        async def claim(stuck_after: int) -> set[str]:
            response = await servicer.ClaimUnpublishedJobs(
                pb.ClaimUnpublishedJobsRequest(
                    limit=10, lease_seconds=30, owner="relay", stuck_after_seconds=stuck_after
                ),
                None,
            )
            return {r.job_id for r in response.render_requests}

        assert await claim(0) == set(), "a relay pass that is not reconciling takes none"
        assert await claim(60) == {str(jobs["old"]), str(jobs["retrying"])}
        assert await claim(60) == set(), "leased: one relay republishes each"
        # Republished: the confirm restarts their clock; their state is kept.
        for name in ("old", "retrying"):
            await repo.jobs.mark_job_published(jobs[name])
        assert [(await _state(repo, jobs[n]))[0] for n in ("old", "fresh", "retrying")] == [
            "queued",
            "queued",
            "retrying",
        ]


async def test_a_job_claimed_to_the_limit_beside_a_crash_is_spared_a_bounded_number_of_times() -> (
    None
):
    """Claims whose renderer died before the job's attempt opened (it waited to run
    behind the job that crashed it) are a bystander's: at the limit its deliveries
    start again, marked to run alone, at most MAX_SPARES times; then it is poison."""
    async with catalog_database("settle") as repo:
        servicer = _servicer(repo)
        _, job_id = await new_job(repo, await new_tenant(repo))
        claims, interrupted = 0, []
        for _ in range((MAX_SPARES + 2) * (LIMIT + 1) + 1):
            claimed = await servicer.ClaimRenderJobs(
                pb.ClaimRenderJobsRequest(limit=10, lease_seconds=120, owner="r"), None
            )
            if not claimed.render_requests:
                if await _poison(repo, job_id):
                    break
                continue  # spared by this claim: the next one takes it
            claims += 1
            interrupted.append(claimed.render_requests[0].interrupted)
            # The renderer dies before it opens the job's attempt; the lease runs out.
            await _sql(
                repo,
                "UPDATE jobs SET lease_expires_at = clock_timestamp() - interval '1 s' "
                "WHERE id = $1",
                job_id,
            )
        assert claims == (MAX_SPARES + 1) * (LIMIT + 1)
        assert interrupted[0] is False and all(interrupted[1:])
        ((reason, _),) = await _poison(repo, job_id)
        assert reason == "delivery_limit"


async def test_at_the_delivery_limit_a_bystander_is_spared_and_a_crasher_is_poison() -> None:
    async with catalog_database("settle") as repo:
        servicer = _servicer(repo)
        tenant = await new_tenant(repo)
        _, bystander = await new_job(repo, tenant)
        _, crasher = await new_job(repo, tenant)
        # The bystander's one attempt was interrupted; every one of the crasher's was.
        for job_id, attempts in ((bystander, 1), (crasher, LIMIT + 1)):
            for _ in range(attempts):
                await servicer.StartJobAttempt(
                    pb.StartJobAttemptRequest(job_id=str(job_id), worker="r", lease_seconds=1),
                    None,
                )

        def dead_letter(job_id: uuid.UUID) -> pb.RecordPoisonJobRequest:
            return pb.RecordPoisonJobRequest(
                request=events_pb2.RenderRequest(job_id=str(job_id)),
                error="delivered too often",
                reason=catalog_pb2.POISON_REASON_DELIVERY_LIMIT,
            )

        for _ in range(MAX_SPARES):
            assert (await servicer.RecordPoisonJob(dead_letter(bystander), None)).spared
        assert await _poison(repo, bystander) == []
        # Spared as often as it may be: poison after all, so nothing loops forever.
        last = await servicer.RecordPoisonJob(dead_letter(bystander), None)
        assert (
            not last.spared and last.poison_job.reason == catalog_pb2.POISON_REASON_DELIVERY_LIMIT
        )
        crashed = await servicer.RecordPoisonJob(dead_letter(crasher), None)
        assert not crashed.spared
        assert await _state(repo, crasher) == ("dead", "failed")
        assert [r for r, _ in await _poison(repo, crasher)] == ["delivery_limit"]
