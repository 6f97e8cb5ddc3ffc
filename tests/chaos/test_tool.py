"""The chaos tool itself, without servers: a seed names its schedule and its batch."""

from __future__ import annotations

import io
from dataclasses import replace

from PIL import Image

from tests.chaos.__main__ import parse_seeds
from tests.chaos.batch import RENDERER_MAX_PIXELS, Kind, make_batch
from tests.chaos.schedule import PROFILES, FaultKind, make_schedule

SMALL = replace(PROFILES["short"], uploads=12, poison=2, crashers=1)


def test_a_seed_replays_its_schedule_exactly() -> None:
    assert make_schedule(7, PROFILES["full"]) == make_schedule(7, PROFILES["full"])
    assert make_schedule(7, PROFILES["full"]) != make_schedule(8, PROFILES["full"])


def test_a_full_schedule_mixes_every_kind_of_fault_and_overlaps_them() -> None:
    for seed in range(1, 21):
        schedule = make_schedule(seed, PROFILES["full"])
        assert len(schedule) == PROFILES["full"].faults
        assert {f.kind for f in schedule} == set(FaultKind)
        lasting = [f for f in schedule if not f.kind.instant]
        overlapping = [
            (a, b) for a in lasting for b in lasting if a is not b and a.at <= b.at < a.ends
        ]
        assert overlapping, f"seed {seed}: no two faults overlap"
        short = make_schedule(seed, PROFILES["short"])
        assert FaultKind.RENDERER_SIGKILL not in {f.kind for f in short}


def test_a_seed_replays_its_batch_exactly() -> None:
    first, again = make_batch(3, SMALL), make_batch(3, SMALL)
    assert [(i.kind, i.tenant, i.data) for i in first] == [
        (i.kind, i.tenant, i.data) for i in again
    ]
    assert [i.data for i in make_batch(4, SMALL)] != [i.data for i in first]


def test_a_batch_holds_distinct_valid_images_poison_over_the_renderer_cap() -> None:
    batch = make_batch(5, SMALL)
    assert len({i.data for i in batch}) == len(batch)
    assert sum(i.kind is Kind.POISON for i in batch) == 2
    assert sum(i.kind is Kind.CRASHER for i in batch) == 1
    for item in batch:
        with Image.open(io.BytesIO(item.data)) as image:
            assert image.format == item.format
            image.load()
            pixels = image.width * image.height
        assert (pixels > RENDERER_MAX_PIXELS) == (item.kind is Kind.POISON), item


def test_seeds_are_a_count_a_list_or_a_range() -> None:
    assert parse_seeds("3") == [1, 2, 3]
    assert parse_seeds("3,7 11") == [3, 7, 11]
    assert parse_seeds("5-7") == [5, 6, 7]
