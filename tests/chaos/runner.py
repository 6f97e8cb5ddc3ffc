"""One chaos seed from start to verdict.

1. Start a fresh stack (its own database, S3 server, bucket, broker names) on the
   run's private RabbitMQ node; the renderer gets a lower pixel cap than ingest, so the
   batch's poison originals decode at ingest and fail in the renderer.
2. Send the seed's batch over the fault window while the seed's schedule runs and the
   crash watcher kills the renderer each time it starts a crasher.
3. Heal everything, wait until every job has ended or the settle limit has passed.
4. Check (checker.py) and write the result to `<out>/seed-<n>.json`, with the service
   logs when the seed is not clean.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack import ServiceProcess, Stack, StackConfig
from imagepipe.v1 import tenant_admin_pb2, tenant_admin_pb2_grpc
from services.catalog.lifecycle import ABANDONED_AFTER
from tests.chaos.batch import RENDERER_MAX_PIXELS, Item, Kind, make_batch
from tests.chaos.checker import Checker, Verdict
from tests.chaos.inject import CrashWatcher, FaultRecord, Injector, connect
from tests.chaos.rabbit import PrivateRabbit
from tests.chaos.schedule import Fault, Profile, make_schedule
from tests.chaos.uploader import ChaosUploader
from tests.helpers import Services, Tenant

__all__ = ["ChaosStack", "Runner", "SeedResult"]


class ChaosStack(Stack):
    """A Stack whose services may each get their own environment overrides, at every
    (re)start: here the renderer's lower pixel cap and the catalog's Purge grace."""

    def __init__(self, config: StackConfig, service_env: dict[str, dict[str, str]]) -> None:
        super().__init__(config)
        self.service_env = service_env

    def start_service(
        self, name: str, *, instance: str = "", **env_overrides: str
    ) -> ServiceProcess:
        merged = {**self.service_env.get(name, {}), **env_overrides}
        return super().start_service(name, instance=instance, **merged)


@dataclass
class SeedResult:
    seed: int
    profile: str
    faults: list[FaultRecord]
    verdict: Verdict
    seconds: float
    crashes: int
    settled_after: float | None  # seconds after healing; None: the settle limit passed
    lease_waits: int
    errors: list[str]

    @property
    def clean(self) -> bool:
        return self.verdict.clean and not self.errors

    def line(self) -> str:
        return self.verdict.line(self.seed, len(self.faults))

    def summary(self) -> Iterator[str]:
        yield "  faults: " + (", ".join(r.describe() for r in self.faults) or "none")
        settled = (
            f"settled {self.settled_after:.0f}s after healing"
            if self.settled_after is not None
            else "NOT settled within the limit"
        )
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.verdict.poison_reasons.items()))
        yield (
            f"  run: {self.seconds:.0f}s, {settled}; crasher kills={self.crashes}; "
            f"refused={self.verdict.refused} rejected={self.verdict.rejected}; "
            f"poison reasons: {reasons or 'none'} (good images among them: "
            f"{self.verdict.good_poisoned}); "
            f"metrics {'DISAGREE' if self.verdict.metrics_disagree else 'agree'}; "
            f"usage counters {'DISAGREE' if self.verdict.usage_disagree else 'agree'}"
        )
        for error in self.errors:
            yield f"  ERROR {error}"
        if self.lease_waits:
            yield "  settle limit pushed back: a job was leased by a process that no longer runs"
        for slow in self.verdict.slowest[:1]:
            yield f"  slowest {slow}"
        for finding in self.verdict.findings[:20]:
            yield f"  {finding}"
        if len(self.verdict.findings) > 20:
            yield f"  ... {len(self.verdict.findings) - 20} more in the seed's JSON"

    def as_json(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "profile": self.profile,
            "line": self.line(),
            "clean": self.clean,
            "seconds": round(self.seconds, 1),
            "settled_after": self.settled_after,
            "faults": [r.describe() for r in self.faults],
            "crasher_kills": self.crashes,
            "refused": self.verdict.refused,
            "rejected": self.verdict.rejected,
            "poison_reasons": dict(self.verdict.poison_reasons),
            "good_images_poisoned": self.verdict.good_poisoned,
            "metrics_disagree": self.verdict.metrics_disagree,
            "usage_disagree": self.verdict.usage_disagree,
            "findings": self.verdict.findings,
            "notes": self.verdict.notes,
            "slowest_jobs": self.verdict.slowest,
            "settle_pushed_back_for_leases": self.lease_waits > 0,
            "errors": self.errors,
        }


class Runner:
    def __init__(
        self,
        seed: int,
        profile: Profile,
        rabbit: PrivateRabbit,
        out_dir: Path,
        pg_url: str,
    ) -> None:
        self.seed = seed
        self.profile = profile
        self.rabbit = rabbit
        self.out_dir = out_dir
        self.pg_url = pg_url
        self.lease_waits = 0  # settle polls that found a lease held by a dead process

    def run(self, probe: Callable[[ChaosStack, Checker], None] | None = None) -> SeedResult:
        """Run the seed; `probe`, if given, gets the stack and its checker after the
        verdict, before the stack is torn down (to check the checker)."""
        started = time.monotonic()
        schedule = make_schedule(self.seed, self.profile)
        batch = make_batch(self.seed, self.profile)
        work_dir = Path(tempfile.mkdtemp(prefix=f"imagepipe-chaos-{self.seed}-"))
        stack = ChaosStack(
            StackConfig(work_dir, pg_url=self.pg_url, amqp_url=self.rabbit.url),
            service_env={
                "renderer": {"IMAGEPIPE_MAX_PIXELS": str(RENDERER_MAX_PIXELS)},
                # No grace for unreferenced renditions: what a killed attempt wrote is
                # what Purge reclaims now, so the checker's dry run accounts for it.
                "catalog": {"IMAGEPIPE_PURGE_RENDITION_GRACE_SECONDS": "0"},
            },
        )
        try:
            with stack.running():
                result = self._run(stack, schedule, batch, started, probe)
                self._save(result, stack)
                return result
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _run(
        self,
        stack: ChaosStack,
        schedule: list[Fault],
        batch: list[Item],
        started: float,
        probe: Callable[[ChaosStack, Checker], None] | None,
    ) -> SeedResult:
        services = Services.open(stack)
        try:
            tenants = [self._tenant(services, stack, n) for n in range(self.profile.tenants)]
            injector = Injector(stack, self.rabbit)
            watcher = CrashWatcher(stack, injector.services["renderer"])

            def accepted(item: Item, asset_id: str) -> None:
                if item.kind is Kind.CRASHER:
                    watcher.watch(asset_id)

            uploader = ChaosUploader(
                stack.address("ingest"), tenants, self.profile.window, on_accepted=accepted
            )
            watcher.start()
            begin = time.monotonic()
            uploader.start(batch, begin)
            injector.start(schedule, begin)
            try:
                injector.join()
                uploader.join()
            finally:
                injector.heal()
            healed = time.monotonic()
            settled = self._settle(stack)
            watcher.stop()
            checker = Checker(stack, services.catalog, tenants, batch, uploader.accepted)
            verdict = checker.check(refused=len(uploader.refused), rejected=uploader.rejected)
            result = SeedResult(
                seed=self.seed,
                profile=self.profile.name,
                faults=injector.records,
                verdict=verdict,
                seconds=time.monotonic() - started,
                crashes=watcher.kills,
                settled_after=None if settled is None else settled - healed,
                lease_waits=self.lease_waits,
                errors=injector.errors + watcher.errors,
            )
            if probe is not None:
                probe(stack, checker)
            return result
        finally:
            services.close()

    def _settle(self, stack: Stack) -> float | None:
        """The moment every asset and job was terminal, or None past the settle limit.

        The limit is the profile's settle time after healing, which covers retries and
        backoffs. It is pushed back while a job is leased by a process that no longer
        runs (a renderer killed while it worked from the catalog, a relay's ingest
        killed): such a job is only taken back once its lease has expired, plus
        ABANDONED_AFTER for a running one, a documented slow path rather than a stall.
        """
        deadline = time.monotonic() + self.profile.settle

        async def progress() -> tuple[int, float | None]:
            live = [
                f"{socket.gethostname()}:{s.process.pid}"
                for s in stack.services.values()
                if s.process is not None and s.process.poll() is None
            ]
            connection = await connect(stack)
            try:
                row = await connection.fetchrow(
                    """
                    SELECT (SELECT count(*) FROM assets
                            WHERE status IN ('pending', 'processing'))
                         + (SELECT count(*) FROM jobs WHERE state NOT IN ('done', 'dead'))
                           AS busy,
                           (SELECT extract(epoch FROM max(lease_expires_at) - clock_timestamp())
                            FROM jobs WHERE state IN ('pending', 'running')
                              AND lease_owner IS NOT NULL AND lease_owner <> ALL($1::text[]))
                           AS orphaned_lease
                    """,
                    live,
                )
                assert row is not None
                lease = row["orphaned_lease"]
                return int(row["busy"]), None if lease is None else float(lease)
            finally:
                await connection.close()

        while time.monotonic() < deadline:
            busy, orphaned_lease = asyncio.run(progress())
            if busy == 0:
                return time.monotonic()
            if orphaned_lease is not None:
                self.lease_waits += 1
                # A fixed moment: when the lease expires (maybe already), plus the
                # relay's wait for an abandoned attempt, plus the usual settle time.
                recovered_by = (
                    time.monotonic()
                    + orphaned_lease
                    + ABANDONED_AFTER.total_seconds()
                    + self.profile.settle
                )
                deadline = max(deadline, recovered_by)
            time.sleep(1)
        return None

    @staticmethod
    def _tenant(services: Services, stack: Stack, number: int) -> Tenant:
        stub = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog)
        response = stub.CreateTenant(
            tenant_admin_pb2.CreateTenantRequest(name=f"chaos-{number}"),
            metadata=services.admin_metadata,
            timeout=30,
        )
        return Tenant(response.tenant.tenant_id, response.secret_key)

    def _save(self, result: SeedResult, stack: Stack) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"seed-{self.seed}.json"
        path.write_text(json.dumps(result.as_json(), indent=2) + "\n")
        if not result.clean:
            shutil.copytree(
                stack.log_dir, self.out_dir / f"seed-{self.seed}-logs", dirs_exist_ok=True
            )
