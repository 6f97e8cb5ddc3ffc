"""The checker: what became of every upload answered OK, from the store itself.

Each accepted upload is exactly one of
- rendered:  asset ready, job done by its first attempt, one rendition row per preset,
             each object in S3 with the row's size;
- recovered: the same, after failed or interrupted attempts (a fault hit its job);
- poison:    asset failed, job dead, an open poison job with a reason and an error;
- stuck:     asset or job not terminal when the settle time is over;
- lost:      anything else: no asset row, ready without all its renditions or with an
             object missing or of another size, failed or dead without a poison job,
             its original missing from S3.
Independently of the class, an upload is duplicated when its job has more than one
succeeded attempt, its asset more than one job, or a rendition row was committed twice
(upserted after it was first written).

Orphans: objects in S3 that no row references and that Purge (older_than_days=0, dry
run: the purge window at its narrowest) would not reclaim; objects Purge would delete
although a row uses them; and rows of any asset (accepted or not) whose object is
missing or has another size.

Metrics: GetTenantMetrics of each tenant against the rows and the objects counted here.

Usage counters: tenant_usage() (what GetTenantMetrics reads) of each tenant against
tenant_usage_recount() (the full scan), in one snapshot, with the deltas as the run
left them and again once folded (tenant_usage_compact()).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import grpc
from minio.error import S3Error

from devstack import Stack
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2
from services.shared.settings import Settings
from tests.chaos.batch import Item, Kind
from tests.chaos.inject import connect
from tests.helpers import Tenant

__all__ = ["Checker", "Verdict"]

POISON_REASONS = {"retries_exhausted", "delivery_limit"}
# Two writes of one rendition row are a whole render apart; one INSERT's two
# clock_timestamp() defaults are microseconds apart.
REWRITTEN_AFTER = dt.timedelta(milliseconds=50)


@dataclass
class Verdict:
    uploads: int = 0
    rendered: int = 0
    recovered: int = 0
    poison: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    orphans: int = 0
    metrics_disagree: int = 0
    usage_disagree: int = 0  # counters (field, tenant, folded or not) unlike the recount
    refused: int = 0
    rejected: int = 0
    good_poisoned: int = 0  # normal images that ended poison (e.g. killed beside a crasher)
    poison_reasons: Counter[str] = field(default_factory=Counter)
    # Human-readable findings: which asset/job/object, in which state, and why.
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # expected oddities worth knowing
    slowest: list[str] = field(default_factory=list)  # the jobs that took longest, why

    @property
    def clean(self) -> bool:
        return (
            self.lost == self.duplicated == self.stuck == self.orphans == 0
            and self.metrics_disagree == self.usage_disagree == 0
            and self.rejected == 0
        )

    def line(self, seed: int, faults: int) -> str:
        return (
            f"chaos: seed={seed} faults={faults} uploads={self.uploads} "
            f"rendered={self.rendered} recovered={self.recovered} poison={self.poison} "
            f"lost={self.lost} duplicated={self.duplicated} stuck={self.stuck} "
            f"orphans={self.orphans}"
        )


@dataclass(frozen=True)
class _Object:
    size: int


class Checker:
    def __init__(
        self,
        stack: Stack,
        catalog: grpc.Channel,
        tenants: list[Tenant],
        items: list[Item],
        accepted: dict[int, str],
    ) -> None:
        self.stack = stack
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(catalog)
        self.tenants = tenants
        self.items = {item.index: item for item in items}
        self.accepted = accepted
        # The stack runs with the default presets (Stack.env drops IMAGEPIPE_* of this process).
        self.presets = len(Settings.model_construct().presets)
        self.s3 = stack.s3.client()

    def check(self, refused: int = 0, rejected: dict[int, str] | None = None) -> Verdict:
        verdict = Verdict(uploads=len(set(self.accepted.values())), refused=refused)
        for index, answer in sorted((rejected or {}).items()):
            verdict.rejected += 1
            verdict.findings.append(f"upload #{index} answered {answer}")
        rows = asyncio.run(self._rows())
        listed = self._list_objects()
        self._classify(verdict, rows)
        self._orphans(verdict, rows, listed)
        self._metrics(verdict, rows, listed)
        for finding in asyncio.run(self._usage_differences()):
            verdict.usage_disagree += 1
            verdict.findings.append(finding)
        verdict.slowest = [
            f"job {r['id']} {r['state']} after {float(str(r['took'])):.0f}s: {r['attempts']}"
            for r in rows["slowest"]
        ]
        return verdict

    async def _rows(self) -> dict[str, list[dict[str, object]]]:
        connection = await connect(self.stack)
        try:
            queries = {
                "assets": "SELECT id::text, tenant_id::text, status, original_key, size_bytes, "
                "deleted_at FROM assets",
                "jobs": "SELECT j.id::text, j.asset_id::text, j.tenant_id::text, j.state, "
                "j.attempts, (SELECT count(*) FROM job_attempts t WHERE t.job_id = j.id "
                "AND t.outcome = 'succeeded') AS succeeded FROM jobs j",
                "renditions": "SELECT asset_id::text, tenant_id::text, object_key, size_bytes, "
                "format, created_at, updated_at FROM renditions",
                "poison": "SELECT job_id::text, asset_id::text, tenant_id::text, reason, error "
                "FROM poison_jobs WHERE replayed_at IS NULL",
                # Where the settle time went: the slowest finished jobs and their attempts.
                "slowest": """
                    SELECT j.id::text, j.state,
                           extract(epoch FROM j.finished_at - j.created_at) AS took,
                           (SELECT string_agg(format('#%s %s +%ss %s %s', t.attempt, t.worker,
                                   round(extract(epoch FROM t.started_at - j.created_at)),
                                   coalesce(t.outcome, 'unfinished'), left(t.error, 80)),
                                   '; ' ORDER BY t.attempt)
                            FROM job_attempts t WHERE t.job_id = j.id) AS attempts
                    FROM jobs j WHERE j.finished_at IS NOT NULL
                    ORDER BY j.finished_at - j.created_at DESC LIMIT 3
                """,
            }
            return {
                name: [dict(r) for r in await connection.fetch(sql)]
                for name, sql in queries.items()
            }
        finally:
            await connection.close()

    async def _usage_differences(self) -> list[str]:
        connection = await connect(self.stack)
        found = []
        try:
            for stage in ("unfolded", "folded"):
                # Folded: compacted until a pass finds nothing left.
                while stage == "folded" and await connection.fetchval(
                    "SELECT tenant_usage_compact()"
                ):
                    pass
                for tenant in self.tenants:
                    # One snapshot for both: a late write cannot tell them apart.
                    async with connection.transaction(isolation="repeatable_read", readonly=True):
                        counted = await connection.fetchrow(
                            "SELECT * FROM tenant_usage($1::uuid)", tenant.tenant_id
                        )
                        recounted = await connection.fetchrow(
                            "SELECT * FROM tenant_usage_recount($1::uuid)", tenant.tenant_id
                        )
                    assert counted is not None and recounted is not None
                    found += [
                        f"USAGE tenant {tenant.tenant_id} ({stage}): {name} is {counted[name]} "
                        f"in the counters, {value} recounted"
                        for name, value in recounted.items()
                        if counted[name] != value
                    ]
        finally:
            await connection.close()
        return found

    def _list_objects(self) -> dict[str, _Object]:
        return {
            str(o.object_name): _Object(int(o.size or 0))
            for o in self.s3.list_objects(self.stack.bucket, recursive=True)
        }

    def _stat(self, key: str) -> int | None:
        """The object's size as S3 answers a HEAD, None when it does not exist."""
        try:
            return int(self.s3.stat_object(self.stack.bucket, key).size or 0)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise

    def _classify(self, verdict: Verdict, rows: dict[str, list[dict[str, object]]]) -> None:
        assets = {str(a["id"]): a for a in rows["assets"]}
        jobs_of: dict[str, list[dict[str, object]]] = {}
        for job_row in rows["jobs"]:
            jobs_of.setdefault(str(job_row["asset_id"]), []).append(job_row)
        renditions_of: dict[str, list[dict[str, object]]] = {}
        for rendition in rows["renditions"]:
            renditions_of.setdefault(str(rendition["asset_id"]), []).append(rendition)
        poison_of = {str(p["asset_id"]): p for p in rows["poison"]}
        answered = {asset_id: index for index, asset_id in self.accepted.items()}

        for asset_id, index in sorted(answered.items(), key=lambda kv: kv[1]):
            item = self.items[index]
            where = f"upload #{index} ({item.kind.value} {item.format}) asset {asset_id}"
            asset = assets.get(asset_id)
            if asset is None:
                verdict.lost += 1
                verdict.findings.append(f"LOST {where}: no asset row")
                continue
            jobs = jobs_of.get(asset_id, [])
            renditions = renditions_of.get(asset_id, [])
            job = jobs[0] if jobs else None
            self._duplicates(verdict, where, jobs, renditions)
            status = str(asset["status"])
            state = str(job["state"]) if job else "none"
            described = f"{where}: asset {status}, job {state}"
            if job is not None:
                described += f" ({job['attempts']} attempts, job {job['id']})"
            if status in ("pending", "processing") or state in (
                "pending",
                "queued",
                "running",
                "retrying",
            ):
                verdict.stuck += 1
                verdict.findings.append(f"STUCK {described}")
                continue
            problems = self._objects_missing(asset, renditions)
            if status == "ready" and state == "done":
                if len(renditions) != self.presets:
                    problems.append(f"{len(renditions)} renditions, want {self.presets}")
                if problems:
                    verdict.lost += 1
                    verdict.findings.append(f"LOST {described}: " + "; ".join(problems))
                    continue
                if job is not None and int(str(job["attempts"])) == 1:
                    verdict.rendered += 1
                else:
                    verdict.recovered += 1
                if item.kind is Kind.POISON:
                    verdict.lost += 1  # a promise broken the other way: must never render
                    verdict.findings.append(f"WRONG {described}: a poison original rendered")
                elif item.kind is Kind.CRASHER:
                    verdict.notes.append(f"{where}: rendered (its crash came too late)")
                continue
            poison = poison_of.get(asset_id)
            if status == "failed" and state == "dead" and poison is not None:
                reason, error = str(poison["reason"]), str(poison["error"])
                if reason in POISON_REASONS and error:
                    verdict.poison += 1
                    verdict.poison_reasons[reason] += 1
                    if item.kind is Kind.NORMAL:
                        verdict.good_poisoned += 1
                        verdict.notes.append(
                            f"{described}: a good image poisoned: {reason}: {error[:120]}"
                        )
                    continue
                problems.append(f"poison job without a reason or error ({reason!r}, {error!r})")
            elif status == "failed" or state == "dead":
                problems.append("failed without an open poison job")
            verdict.lost += 1
            verdict.findings.append(
                f"LOST {described}" + (": " + "; ".join(problems) if problems else "")
            )

        # Assets nobody was told about (an answer lost to a fault) must end too.
        for asset_id, row in assets.items():
            if asset_id not in answered and row["status"] in ("pending", "processing"):
                verdict.stuck += 1
                verdict.findings.append(
                    f"STUCK asset {asset_id} (upload not answered OK): {row['status']}"
                )

    def _duplicates(
        self,
        verdict: Verdict,
        where: str,
        jobs: list[dict[str, object]],
        renditions: list[dict[str, object]],
    ) -> None:
        reasons = []
        if len(jobs) > 1:
            reasons.append(f"{len(jobs)} jobs")
        for job in jobs:
            if int(str(job["succeeded"])) > 1:
                reasons.append(f"job {job['id']}: {job['succeeded']} succeeded attempts")
        for rendition in renditions:
            created, updated = rendition["created_at"], rendition["updated_at"]
            assert isinstance(created, dt.datetime) and isinstance(updated, dt.datetime)
            if updated - created > REWRITTEN_AFTER:
                reasons.append(
                    f"{rendition['object_key']} committed again {updated - created} later"
                )
        if reasons:
            verdict.duplicated += 1
            verdict.findings.append(f"DUPLICATED {where}: " + "; ".join(reasons))

    def _objects_missing(
        self, asset: dict[str, object], renditions: list[dict[str, object]]
    ) -> list[str]:
        problems = []
        wanted = [(str(asset["original_key"]), int(str(asset["size_bytes"])))]
        wanted += [(str(r["object_key"]), int(str(r["size_bytes"]))) for r in renditions]
        for key, size in wanted:
            stored = self._stat(key)
            if stored is None:
                problems.append(f"{key} missing from S3")
            elif stored != size:
                problems.append(f"{key} is {stored} bytes in S3, {size} in its row")
        return problems

    def _orphans(
        self,
        verdict: Verdict,
        rows: dict[str, list[dict[str, object]]],
        listed: dict[str, _Object],
    ) -> None:
        referenced = {str(a["original_key"]): int(str(a["size_bytes"])) for a in rows["assets"]}
        referenced |= {str(r["object_key"]): int(str(r["size_bytes"])) for r in rows["renditions"]}
        reclaimable: set[str] = set()
        for tenant in self.tenants:
            plan = self.catalog.Purge(
                catalog_pb2.PurgeRequest(dry_run=True, older_than_days=0),
                metadata=tenant.metadata,
                timeout=60,
            )
            for purge_item in plan.items:
                if purge_item.object_key in referenced:
                    verdict.orphans += 1
                    verdict.findings.append(
                        f"ORPHAN Purge would delete {purge_item.object_key}, which a row uses"
                    )
                reclaimable.add(purge_item.object_key)
        for key in sorted(set(listed) - set(referenced) - reclaimable):
            verdict.orphans += 1
            verdict.findings.append(f"ORPHAN {key}: in S3, no row, not purgeable")
        unreclaimed = len(set(listed) - set(referenced))
        if unreclaimed:
            verdict.notes.append(
                f"{unreclaimed} unreferenced objects, {len(reclaimable)} purgeable"
            )
        for key, size in sorted(referenced.items()):
            stored = listed.get(key)
            if stored is None:
                verdict.orphans += 1
                verdict.findings.append(f"ORPHAN row without object: {key}")
            elif stored.size != size:
                verdict.orphans += 1
                verdict.findings.append(
                    f"ORPHAN row says {size} bytes, S3 holds {stored.size}: {key}"
                )

    def _metrics(
        self,
        verdict: Verdict,
        rows: dict[str, list[dict[str, object]]],
        listed: dict[str, _Object],
    ) -> None:
        for tenant in self.tenants:
            metrics = self.catalog.GetTenantMetrics(
                catalog_pb2.GetTenantMetricsRequest(), metadata=tenant.metadata, timeout=30
            )
            mine = [a for a in rows["assets"] if a["tenant_id"] == tenant.tenant_id]
            live = {str(a["id"]) for a in mine if a["deleted_at"] is None}
            renditions = [r for r in rows["renditions"] if r["tenant_id"] == tenant.tenant_id]
            originals = {str(a["original_key"]) for a in mine}
            statuses = Counter(str(a["status"]) for a in mine)
            states = Counter(
                str(j["state"]) for j in rows["jobs"] if j["tenant_id"] == tenant.tenant_id
            )
            store = {
                "asset_count": len(live),
                "rendition_count": sum(1 for r in renditions if str(r["asset_id"]) in live),
                # Bytes as S3 holds them, not as the rows say.
                "rendition_bytes": sum(
                    listed[str(r["object_key"])].size
                    for r in renditions
                    if str(r["object_key"]) in listed
                ),
                "original_bytes": sum(listed[k].size for k in originals if k in listed),
                "poison_job_count": sum(
                    1 for p in rows["poison"] if p["tenant_id"] == tenant.tenant_id
                ),
                "assets_by_status": dict(sorted(statuses.items())),
                "jobs_by_state": dict(sorted(states.items())),
            }
            reported = {
                "asset_count": metrics.asset_count,
                "rendition_count": metrics.rendition_count,
                "rendition_bytes": metrics.rendition_bytes,
                "original_bytes": metrics.original_bytes,
                "poison_job_count": metrics.poison_job_count,
                "assets_by_status": {
                    common_pb2.AssetStatus.Name(s.status)
                    .removeprefix("ASSET_STATUS_")
                    .lower(): s.count
                    for s in metrics.assets_by_status
                },
                "jobs_by_state": {
                    common_pb2.JobState.Name(s.state).removeprefix("JOB_STATE_").lower(): s.count
                    for s in metrics.jobs_by_state
                },
            }
            for name, value in store.items():
                if reported[name] != value:
                    verdict.metrics_disagree += 1
                    verdict.findings.append(
                        f"METRICS tenant {tenant.tenant_id}: {name} is {reported[name]} "
                        f"in GetTenantMetrics, {value} in the store"
                    )
