"""A job that kills its renderer every time, on a renderer that holds two jobs at
once: only it ends as poison; the jobs delivered beside it are all rendered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devstack import Stack
from services.catalog.lifecycle import MAX_SPARES
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
DEFAULT_DELIVERY_LIMIT = Settings.model_fields["delivery_limit"].default
INNOCENT = 8


@pytest.mark.timeout(420)
def test_a_crasher_is_poisoned_and_the_jobs_beside_it_are_rendered(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    """A renderer SIGKILLed whenever it opens an attempt of the crasher returns every
    job it held, and RabbitMQ charges each a delivery. The crasher goes first in the
    queue, so with prefetch 2 an innocent job is delivered beside it every time unless
    a redelivered job runs alone and the catalog spares a job that reached the limit
    without being what crashed the renderer."""
    tenant = make_tenant("bystanders")
    stack.services["renderer"].stop()
    uploader = Uploader(services, tenant)
    uploader.upload_one((CORPUS / "photo_craft-beer_6000x4000.jpg").read_bytes())
    (crasher_asset,) = uploader.accepted
    crasher = query(stack, "SELECT id FROM jobs WHERE asset_id = $1::uuid", crasher_asset)[0]["id"]
    uploader.start(make_images(INNOCENT, seed=41)).join(timeout=120)
    innocent = [a for a in uploader.accepted if a != crasher_asset]
    assert len(innocent) == INNOCENT
    limit = int(stack.env().get("IMAGEPIPE_DELIVERY_LIMIT", DEFAULT_DELIVERY_LIMIT))
    # Every delivery of the crasher is its renderer's last; past this, it looped.
    most_kills = (MAX_SPARES + 1) * (limit + 1)
    two_at_a_time = {"IMAGEPIPE_RENDER_CONCURRENCY": "2"}

    kills = crash_whenever_it_starts(
        stack, crasher, env=two_at_a_time, max_kills=most_kills + 1, timeout=300
    )

    def poisoned() -> bool:
        return bool(query(stack, "SELECT 1 FROM poison_jobs WHERE job_id = $1", crasher))

    assert wait_until(poisoned, 60), f"no poison job after {kills} crashes"
    wait_settled(stack, tenant, timeout=180)
    (poison,) = query(stack, "SELECT reason FROM poison_jobs WHERE job_id = $1", crasher)
    spared = query(
        stack,
        "SELECT count(*) AS jobs, coalesce(sum(spares), 0) AS spares FROM jobs "
        "WHERE asset_id = ANY($1::uuid[]) AND spares > 0",
        innocent,
    )[0]
    others = classify(stack, innocent)
    print(
        f"\nbystanders: {kills} crashes; crasher poison {poison['reason']}; "
        f"{spared['jobs']} innocent jobs spared {spared['spares']} times; {others.line()}"
    )
    assert poison["reason"] == "delivery_limit"
    assert limit + 1 <= kills <= most_kills
    assert others.poisoned == 0, "an innocent job was poisoned beside the crasher"
    assert others.rendered + others.recovered == INNOCENT
    assert others.lost == 0 and others.duplicated == 0 and others.bad_renditions == 0
    stack.services["renderer"].stop()
    replace_service(stack, "renderer")  # back to the usual concurrency
