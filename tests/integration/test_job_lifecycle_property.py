"""The job lifecycle as a property, against the real catalog on a database of the
test's own: random interleavings of publish, claim (relay and renderer), start,
complete, fail, lease expiry, time passing, give-up and replay, with stale attempts
finishing late, keep every state change in services/catalog/lifecycle.py's table.

Invariants after every step: at most one completed attempt; terminal states stay
terminal except by replay; the asset's status follows its job; a job is dead exactly
when it has an open poison job; renditions exist only for a done job; claims
without a settled attempt never pass the delivery limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from imagepipe.v1 import catalog_internal_pb2 as pb
from services.catalog.api.internal import CatalogInternalServicer
from services.catalog.db import CatalogDatabase
from services.catalog.db.pool import transaction
from services.catalog.lifecycle import STATES, TERMINAL, TRANSITIONS, allowed
from services.catalog.model import NewRendition, PoisonReason
from services.catalog.usecases.tenants import KeyAuthenticator
from services.shared.settings import Settings
from tests.integration.catalog_db import catalog_database, new_job, new_tenant

_T = TypeVar("_T")
DELIVERY_LIMIT = 2
ASSET_STATUS = {"done": {"ready"}, "dead": {"failed"}}
RENDITION = NewRendition(
    preset="thumb",
    format="jpeg",
    object_key="renditions/x",
    width=10,
    height=10,
    size_bytes=10,
    quality=80,
    psnr_db=None,
    psnr_infinite=None,
    ssim=None,
    hash_distance=None,
)


@pytest.mark.timeout(600)  # shrinking a failure takes a while; passing runs take seconds
def test_job_lifecycle_holds_under_random_interleavings() -> None:
    loop = asyncio.new_event_loop()

    def run(coroutine: Coroutine[Any, Any, _T]) -> _T:
        return loop.run_until_complete(coroutine)

    database = catalog_database("lifecycle")
    repo: CatalogDatabase = run(database.__aenter__())
    try:
        servicer = CatalogInternalServicer(
            repo,
            cast(KeyAuthenticator, None),
            Settings(delivery_limit=DELIVERY_LIMIT),
        )
        tenant = run(new_tenant(repo))

        async def sql(statement: str, *args: object) -> list[Any]:
            async with transaction(repo.pool) as connection:
                return list(await connection.fetch(statement, *args))

        class Lifecycle(RuleBasedStateMachine):
            def __init__(self) -> None:
                super().__init__()
                # Earlier examples' jobs must not be claimed by this one's claims.
                run(sql("UPDATE jobs SET state = 'done' WHERE state <> 'done'"))
                self.asset_id, self.job_id = run(new_job(repo, tenant))
                self.state = "pending"
                self.attempts: list[int] = []  # attempt numbers handed out, oldest first
                self.changes: list[tuple[str, str, str]] = []

            def _job(self) -> Any:
                (row,) = run(
                    sql(
                        "SELECT j.state, j.deliveries, a.status, "
                        "(SELECT count(*) FROM job_attempts t WHERE t.job_id = j.id "
                        " AND t.outcome = 'succeeded') AS succeeded, "
                        "(SELECT count(*) FROM poison_jobs p WHERE p.job_id = j.id "
                        " AND p.replayed_at IS NULL) AS poison, "
                        "(SELECT count(*) FROM renditions r WHERE r.asset_id = j.asset_id) "
                        " AS renditions "
                        "FROM jobs j JOIN assets a ON a.id = j.asset_id WHERE j.id = $1",
                        self.job_id,
                    )
                )
                return row

            def _apply(self, operation: str, coroutine: Coroutine[Any, Any, _T]) -> _T:
                before = self.state
                result = run(coroutine)
                after = self._job()["state"]
                assert allowed(operation, before, after), f"{operation}: {before} -> {after}"
                if before in TERMINAL and operation != "replay":
                    assert after == before, f"{operation} moved a {before} job to {after}"
                self.changes.append((operation, before, after))
                self.state = after
                return result

            @rule()
            def publish(self) -> None:
                self._apply("publish", repo.jobs.mark_job_published(self.job_id))

            @rule()
            def start(self) -> None:
                started = self._apply(
                    "start",
                    servicer.StartJobAttempt(
                        pb.StartJobAttemptRequest(
                            job_id=str(self.job_id), worker="w", lease_seconds=60
                        ),
                        None,
                    ),
                )
                if started.proceed:
                    self.attempts.append(started.attempt)

            @precondition(lambda self: bool(self.attempts))
            @rule(age=st.integers(0, 3))
            def complete(self, age: int) -> None:
                attempt = self.attempts[max(0, len(self.attempts) - 1 - age)]
                self._apply(
                    "complete",
                    repo.jobs.complete_job(self.job_id, attempt, [RENDITION], None, None),
                )

            @precondition(lambda self: bool(self.attempts))
            @rule(age=st.integers(0, 3), transient=st.booleans(), outbox=st.booleans())
            def fail(self, age: int, transient: bool, outbox: bool) -> None:
                attempt = self.attempts[max(0, len(self.attempts) - 1 - age)]
                self._apply(
                    "fail",
                    servicer.FailJobAttempt(
                        pb.FailJobAttemptRequest(
                            job_id=str(self.job_id),
                            attempt=attempt,
                            error="S3_UNAVAILABLE: x" if transient else "ORIGINAL_MISSING: x",
                            transient=transient,
                            # Long enough that only time_passes makes it due.
                            retry_after_seconds=600 if outbox else 0,
                        ),
                        None,
                    ),
                )

            @rule()
            def lease_expires(self) -> None:
                run(
                    sql(
                        "UPDATE jobs SET lease_expires_at = clock_timestamp() - interval '1 s' "
                        "WHERE id = $1 AND lease_expires_at IS NOT NULL",
                        self.job_id,
                    )
                )

            @rule()
            def time_passes(self) -> None:
                """An hour: every backoff, lease, not-before and stuck age is over."""
                run(
                    sql(
                        "UPDATE jobs SET updated_at = updated_at - interval '1 h', "
                        "created_at = created_at - interval '1 h', "
                        "not_before = not_before - interval '1 h', "
                        "lease_expires_at = lease_expires_at - interval '1 h' WHERE id = $1",
                        self.job_id,
                    )
                )

            @rule()
            def claim_for_render(self) -> None:
                self._apply(
                    "claim_for_render",
                    servicer.ClaimRenderJobs(
                        pb.ClaimRenderJobsRequest(limit=10, lease_seconds=60, owner="w"), None
                    ),
                )

            @rule(reconciling=st.booleans())
            def claim_unpublished(self, reconciling: bool) -> None:
                self._apply(
                    "claim_unpublished",
                    servicer.ClaimUnpublishedJobs(
                        pb.ClaimUnpublishedJobsRequest(
                            limit=10,
                            lease_seconds=30,
                            owner="relay",
                            stuck_after_seconds=60 if reconciling else 0,
                        ),
                        None,
                    ),
                )

            @rule(reason=st.sampled_from(["retries_exhausted", "delivery_limit"]))
            def give_up(self, reason: str) -> None:
                self._apply(
                    "poison",
                    repo.poison.record_poison(self.job_id, PoisonReason(reason), "given up", b""),
                )

            @rule()
            def replay(self) -> None:
                rows = run(
                    sql(
                        "SELECT id FROM poison_jobs WHERE job_id = $1 AND replayed_at IS NULL",
                        self.job_id,
                    )
                )
                for row in rows:
                    self._apply("replay", repo.poison.retry_poison(tenant, row["id"]))

            @invariant()
            def job_and_asset_agree(self) -> None:
                job = self._job()
                assert job["state"] in STATES
                assert job["succeeded"] <= 1, "two attempts completed"
                assert job["status"] in ASSET_STATUS.get(job["state"], {"pending", "processing"})
                assert (job["poison"] == 1) == (job["state"] == "dead"), dict(job)
                assert (job["renditions"] > 0) == (job["state"] == "done"), dict(job)
                assert job["deliveries"] <= DELIVERY_LIMIT + 1

        run_state_machine_as_test(
            Lifecycle,
            settings=settings(
                max_examples=20,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        run(database.__aexit__(None, None, None))
        loop.close()


def test_the_table_names_only_known_states() -> None:
    for operation, changes in TRANSITIONS.items():
        for before, after in changes:
            assert before in STATES and after in STATES, operation
    assert not any(
        before in TERMINAL
        for operation, changes in TRANSITIONS.items()
        if operation != "replay"
        for before, _ in changes
    ), "only a replay leaves a terminal state"
