"""Who is charged at the delivery limit: only a job whose own attempts were
interrupted on most of its deliveries."""

from __future__ import annotations

from services.catalog.lifecycle import MAX_SPARES, crashed_it
from services.shared.settings import Settings

LIMIT = Settings().delivery_limit


def test_a_crasher_interrupted_on_every_delivery_is_charged() -> None:
    assert crashed_it(LIMIT + 1, LIMIT)
    # Its first delivery may have found a renderer busy with another suspect.
    assert crashed_it(LIMIT, LIMIT)
    for limit in (1, 2, 3):
        assert crashed_it(limit + 1, limit), "every delivery crashed: charged at any limit"


def test_a_job_beside_a_crasher_is_not() -> None:
    # Never started (it waited behind the crasher), or started once beside it before
    # the crasher was suspected.
    assert not crashed_it(0, LIMIT)
    assert not crashed_it(1, LIMIT)
    # Half its deliveries interrupted is not more than half.
    assert not crashed_it((LIMIT + 1) // 2, LIMIT)


def test_sparing_is_bounded() -> None:
    assert 1 <= MAX_SPARES <= 3
