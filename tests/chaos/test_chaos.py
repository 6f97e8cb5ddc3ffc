"""Chaos in CI: a calm seed checks the checker, then two short seeds with faults.

`make chaos SEEDS=N` runs full-size seeds (see docs/reliability.md); these are the
same runner and checker on a smaller batch and a shorter schedule.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest

from tests.chaos.checker import Checker
from tests.chaos.rabbit import PrivateRabbit
from tests.chaos.runner import ChaosStack, Runner
from tests.chaos.schedule import PROFILES
from tests.faults.support import query


def _report(result_lines: list[str]) -> str:
    return "\n".join(result_lines)


@pytest.mark.timeout(300)
def test_a_seed_without_faults_renders_everything_and_the_checker_sees_damage(
    rabbit: PrivateRabbit, pg_url: str, out_dir: Path
) -> None:
    """Without faults every upload is rendered and the store is clean; then damage
    done by hand to the store shows up as lost, orphaned, duplicated and as metrics
    that disagree, so a clean verdict means something."""
    seen: dict[str, tuple[int, int, int, int, int]] = {}
    usage_disagree: list[int] = []

    def damage(stack: ChaosStack, checker: Checker) -> None:
        s3 = stack.s3.client()
        tenant = checker.tenants[0]
        (row,) = query(
            stack,
            "SELECT asset_id::text AS asset, object_key FROM renditions "
            "WHERE tenant_id = $1::uuid AND preset = 'card' ORDER BY object_key LIMIT 1",
            tenant.tenant_id,
        )

        def verdict() -> tuple[int, int, int, int, int]:
            v = checker.check()
            return (v.lost, v.orphans, v.duplicated, v.metrics_disagree, v.rendered)

        # A committed rendition object deleted by hand: its asset is lost, the row an
        # orphan, and the tenant's rendition bytes no longer what S3 holds.
        s3.remove_object(stack.bucket, row["object_key"])
        seen["rendition deleted"] = verdict()
        # An object nobody references under no tenant's prefix: no Purge ever lists it,
        # an orphan.
        extra = f"renditions/{uuid.uuid4()}/{row['asset']}/stray.jpg"
        s3.put_object(stack.bucket, extra, io.BytesIO(b"x" * 10), 10)
        seen["stray rendition"] = verdict()
        # An unreferenced rendition under a live asset (what a killed attempt leaves):
        # Purge reclaims it once past the grace, which this stack sets to 0.
        written = f"renditions/{tenant.tenant_id}/{row['asset']}/card.{'0' * 16}.jpg"
        s3.put_object(stack.bucket, written, io.BytesIO(b"z" * 10), 10)
        seen["unrecorded rendition"] = verdict()
        # An unreferenced original is what Purge reclaims: not an orphan.
        stray = f"originals/{tenant.tenant_id}/{uuid.uuid4().hex * 2}"
        s3.put_object(stack.bucket, stray, io.BytesIO(b"y" * 10), 10)
        seen["purgeable original"] = verdict()
        # A rendition row committed a second time, later.
        query(
            stack,
            "UPDATE renditions SET updated_at = updated_at + interval '5 seconds' "
            "WHERE asset_id = (SELECT asset_id FROM renditions "
            "                  WHERE tenant_id = $1::uuid AND object_key <> $2 LIMIT 1) "
            "AND preset = 'thumb'",
            tenant.tenant_id,
            row["object_key"],
        )
        seen["committed twice"] = verdict()
        # A usage counter moved by hand: unlike the recount, folded or not.
        query(
            stack,
            "INSERT INTO tenant_usage_deltas (tenant_id, metric, key, value) "
            "VALUES ($1::uuid, 'poison_job_count', '', 1)",
            tenant.tenant_id,
        )
        usage_disagree.append(checker.check().usage_disagree)

    result = Runner(1, PROFILES["calm"], rabbit, out_dir, pg_url).run(probe=damage)
    print("\n" + _report([result.line(), *result.summary()]))
    uploads = PROFILES["calm"].uploads
    assert result.clean, _report(list(result.summary()))
    assert result.verdict.uploads == result.verdict.rendered == uploads
    # (lost, orphans, duplicated, metrics_disagree, rendered)
    assert seen["rendition deleted"] == (1, 1, 0, 1, uploads - 1)
    assert seen["stray rendition"] == (1, 2, 0, 1, uploads - 1)
    assert seen["unrecorded rendition"] == (1, 2, 0, 1, uploads - 1)
    assert seen["purgeable original"] == (1, 2, 0, 1, uploads - 1)
    assert seen["committed twice"][:3] == (1, 2, 1)
    assert usage_disagree == [2]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.timeout(300)
def test_a_short_chaos_seed_loses_nothing(
    seed: int, rabbit: PrivateRabbit, pg_url: str, out_dir: Path
) -> None:
    result = Runner(seed, PROFILES["short"], rabbit, out_dir, pg_url).run()
    report = _report([result.line(), *result.summary()])
    print("\n" + report)
    verdict = result.verdict
    assert verdict.uploads > 0
    assert (verdict.lost, verdict.duplicated, verdict.stuck, verdict.orphans) == (0, 0, 0, 0), (
        report
    )
    assert result.clean, report
