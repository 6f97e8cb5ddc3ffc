"""R4.9 without the broker: an image that kills its renderer every time ends as a
poison job (delivery_limit) after the same number of deliveries as with RabbitMQ,
while the renderer works from the catalog; the rest of the batch is rendered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from devstack import Stack, free_port
from services.shared.settings import Settings
from tests.faults.support import (
    Uploader,
    classify,
    crash_whenever_it_starts,
    make_images,
    query,
    replace_service,
    wait_settled,
    wait_until,
)
from tests.helpers import Services, Tenant

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


@pytest.mark.timeout(420)
def test_an_image_that_kills_the_renderer_while_polling_ends_as_poison(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("pollcrash")
    limit = int(stack.env().get("IMAGEPIPE_DELIVERY_LIMIT", Settings().delivery_limit))
    stack.services["renderer"].stop()
    uploader = Uploader(services, tenant)
    uploader.upload_one((CORPUS / "photo_craft-beer_6000x4000.jpg").read_bytes())
    (doomed_asset,) = uploader.accepted
    doomed_job = query(stack, "SELECT id FROM jobs WHERE asset_id = $1::uuid", doomed_asset)[0][
        "id"
    ]
    uploader.start(make_images(10, seed=21)).join(timeout=120)
    assert len(uploader.accepted) == 11

    # The renderer sees no broker (a closed port): it claims jobs from the catalog,
    # one at a time, so each crash takes down only the doomed job's claim.
    no_broker = {
        "IMAGEPIPE_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        "IMAGEPIPE_RENDER_CONCURRENCY": "1",
    }

    async def lease_runs_out(connection: asyncpg.Connection) -> None:
        # Its lease (120 s) runs out: the time passes here, not in the test.
        await connection.execute(
            "UPDATE jobs SET lease_expires_at = clock_timestamp() - interval '1 s' "
            "WHERE id = $1 AND state = 'running'",
            doomed_job,
        )

    try:
        kills = crash_whenever_it_starts(
            stack,
            doomed_job,
            env=no_broker,
            max_kills=limit + 4,
            timeout=300,
            after_kill=lease_runs_out,
        )
        assert wait_until(
            lambda: bool(query(stack, "SELECT 1 FROM poison_jobs WHERE job_id = $1", doomed_job)),
            60,
        ), f"no poison job after {kills} crashes: the claims are not bounded"
        wait_settled(stack, tenant, timeout=180)
        (poison,) = query(
            stack, "SELECT reason, error FROM poison_jobs WHERE job_id = $1", doomed_job
        )
        outcome = classify(stack, uploader.accepted)
        others = classify(stack, [a for a in uploader.accepted if a != doomed_asset])
        print(f"\npolling crash loop: {kills} crashes; {outcome.line()}; {poison['error']}")
        assert poison["reason"] == "delivery_limit"
        assert kills == limit + 1, "delivered (claimed) as many times as the broker would"
        assert outcome.poisoned == 1 and outcome.lost == 0 and outcome.duplicated == 0
        assert others.rendered + others.recovered == 10
    finally:
        stack.services["renderer"].stop()
        replace_service(stack, "renderer")  # back on the broker
