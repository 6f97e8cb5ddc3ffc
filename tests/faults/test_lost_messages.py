"""Lost messages: the work queue purged mid-batch (as a re-declared queue or a lost
broker volume would lose them). The jobs whose messages are gone stay `queued`, and
through the per-tenant in-flight limit they would hold back every later upload of
the tenant; the reconciler publishes them again, and every asset ends ready, once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aio_pika
import pytest

from devstack import Stack
from services.shared.broker import Topology
from tests.faults.support import Uploader, classify, make_images, query, wait_settled, wait_until
from tests.helpers import Services, Tenant


def _purge_work_queue(stack: Stack) -> int:
    """Drop every ready message of this run's work queue; how many were dropped."""

    async def run() -> int:
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(
                Topology(prefix=stack.prefix, delivery_limit=1).work_queue
            )
            result = await queue.purge()
            return int(result.message_count or 0)

    return asyncio.run(run())


def _states(stack: Stack, tenant: Tenant) -> dict[str, int]:
    rows = query(
        stack,
        "SELECT state, count(*) AS n FROM jobs WHERE tenant_id = $1::uuid GROUP BY state",
        tenant.tenant_id,
    )
    return {r["state"]: r["n"] for r in rows}


@pytest.mark.timeout(480)
def test_a_purged_work_queue_loses_nothing(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    tenant = make_tenant("purged")
    uploader = Uploader(services, tenant)
    count = 80
    thread = uploader.start(make_images(count, seed=33))
    purged = 0

    def purge_some() -> bool:
        # Mid-batch, while uploads go on: purge until at least ten messages are gone.
        nonlocal purged
        purged += _purge_work_queue(stack)
        return purged >= 10

    assert wait_until(purge_some, 120, interval=0.05), f"only {purged} messages to purge"
    thread.join(timeout=180)
    assert len(uploader.accepted) == count, uploader.refused
    stranded = _states(stack, tenant)
    wait_settled(stack, tenant, timeout=300)
    outcome = classify(stack, uploader.accepted)
    print(
        f"\npurged work queue: {purged} messages dropped; states after the batch {stranded}; "
        f"{outcome.line()}"
    )
    assert wait_until(lambda: set(_states(stack, tenant)) == {"done"}, 30), _states(stack, tenant)
    assert outcome.rendered + outcome.recovered == count
    assert (outcome.lost, outcome.duplicated, outcome.poisoned, outcome.bad_renditions) == (
        0,
        0,
        0,
        0,
    )
