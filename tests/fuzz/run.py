"""Drive fuzz cases against a running stack and check the oracle.

`fuzz(stack, cases=N, seed=S)` sets up two tenants (one uploads, one is the target
of hostile RPCs and owns a few real assets and jobs), runs the cases on a few
threads, then checks the stack (pids, logs, leftovers) and returns a Report whose
`summary` is the one line `make fuzz` prints.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from PIL import Image

from devstack import SERVICES, Stack
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from tests.fuzz.cases import Case, Context, Method, make_case, methods
from tests.fuzz.oracle import LogFinding, Outcome, outcome_of, scan_logs
from tests.helpers import Tenant, secrets_in_logs, stack_secrets, upload_messages

__all__ = ["Failure", "Report", "Session", "call", "fuzz", "open_session"]

BAD_CREDENTIALS = (
    "Bearer ip_0123456789abcdef_" + "0" * 40,
    "Bearer ip_zz_zz",
    "Bearer " + "x" * 8000,
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "bearer  ",
)


@dataclass(frozen=True)
class Failure:
    case: Case
    problem: str
    outcome: Outcome | None = None
    log: LogFinding | None = None

    def line(self, seed: int) -> str:
        what = f"{self.outcome.code} {self.outcome.reason or '-'}: " if self.outcome else ""
        if self.outcome and self.outcome.details:
            what += self.outcome.details[:160] + " "
        if self.log:
            what += f"[{self.log.file}] {self.log.event}"
            what += f" | {self.log.exception}" if self.log.exception else ""
        return (
            f"FAIL seed={seed} index={self.case.index} {self.case.label}: {self.problem}: "
            f"{what.strip()} ({self.case.detail[:200]})"
        )


@dataclass
class Report:
    seed: int
    cases: int = 0
    buckets: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    logs: list[LogFinding] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    # Every case's answer, kept for replays of a few cases (FUZZ_ONLY) only.
    answers: list[tuple[Case, Outcome]] = field(default_factory=list)
    no_reason: int = 0
    transport_refusals: int = 0
    unavailable: int = 0
    timeouts: int = 0
    seconds: float = 0.0

    @property
    def tracebacks(self) -> int:
        return sum(f.kind == "traceback" for f in self.logs)

    @property
    def error_lines(self) -> int:
        return sum(f.kind == "error" for f in self.logs)

    @property
    def ok(self) -> bool:
        return not (self.failures or self.restarts or self.logs or self.leftovers or self.leaks)

    @property
    def summary(self) -> str:
        b = self.buckets
        rate = self.cases / self.seconds if self.seconds else 0.0
        return (
            f"fuzz: cases={self.cases} ok={b['ok']} invalid_argument={b['invalid_argument']} "
            f"other={b['other']} internal={b['internal']} unknown={b['unknown']} "
            f"restarts={len(self.restarts)} tracebacks={self.tracebacks} "
            f"error_lines={self.error_lines} no_reason={self.no_reason} "
            f"unavailable={self.unavailable} hangs={self.timeouts} "
            f"metadata_too_large={self.transport_refusals} "
            f"leftovers={len(self.leftovers)} leaks={len(self.leaks)} "
            f"altered={len(self.altered)} seed={self.seed} "
            f"seconds={self.seconds:.0f} cases_per_s={rate:.1f}"
        )

    def classes(self) -> list[str]:
        """Distinct failure classes (RPC, input class, problem, log line) with a count
        and the first case of each, for replay."""
        grouped: dict[tuple[str, ...], list[Failure]] = {}
        for failure in self.failures:
            key: tuple[str, ...] = (
                failure.case.method.name,
                failure.case.family,
                failure.problem,
                failure.outcome.reason if failure.outcome else "",
                _signature(failure.outcome.details) if failure.outcome else "",
                failure.log.event[:60] if failure.log else "",
                failure.log.exception[:80] if failure.log else "",
            )
            grouped.setdefault(key, []).append(failure)
        lines = []
        for key, members in sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            first = min(members, key=lambda f: f.case.index)
            indices = ",".join(str(f.case.index) for f in sorted(members, key=_index)[:8])
            lines.append(
                f"{len(members):5d} x {' | '.join(k for k in key if k)}  (index {indices})"
            )
            lines.append(f"        e.g. {first.line(self.seed)}")
        return lines


def _signature(details: str) -> str:
    """A status message without what differs from case to case (ids, type names)."""
    text = re.sub(r"fuzz-\d+-\d+|[0-9a-f-]{16,}|'imagepipe\.v1\.\w+'", "*", details)
    return text[:90]


def _index(failure: Failure) -> int:
    return failure.case.index


# Setup ------------------------------------------------------------------------------


@dataclass
class Session:
    """One fuzz run's stack, connections, tenants and the real values cases use."""

    stack: Stack
    seed: int
    channels: dict[str, grpc.Channel]
    rpcs: dict[str, Method]
    context: Context
    uploader: Tenant  # uploads and compares: its rows and objects are checked
    target: Tenant  # every other tenant RPC

    def case(self, index: int) -> Case:
        return make_case(self.seed, index, self.context, self.rpcs)

    def request_id(self, index: int) -> str:
        return f"fuzz-{self.seed}-{index}"

    def case_of(self, request_id: str) -> Case | None:
        prefix = self.request_id(0)[:-1]
        if not request_id.startswith(prefix) or not request_id[len(prefix) :].isdigit():
            return None
        return self.case(int(request_id[len(prefix) :]))

    def metadata(self, case: Case) -> tuple[tuple[str, str], ...]:
        tenant = self.uploader if case.method.name in ("Upload", "CompareImages") else self.target
        value = {
            "none": "",
            "tenant": f"Bearer {tenant.key}",
            "admin": f"Bearer {self.stack.admin_key}",
            "internal": f"Bearer {self.stack.internal_token}",
            "bad": BAD_CREDENTIALS[case.index % len(BAD_CREDENTIALS)],
        }[case.credential]
        request_id = ("x-request-id", self.request_id(case.index))
        return (request_id, ("authorization", value)) if value else (request_id,)


def _tenant(stack: Stack, channel: grpc.Channel, name: str) -> Tenant:
    stub = tenant_admin_pb2_grpc.TenantAdminServiceStub(channel)
    response = stub.CreateTenant(
        tenant_admin_pb2.CreateTenantRequest(name=name),
        metadata=(("authorization", f"Bearer {stack.admin_key}"),),
        timeout=30,
    )
    return Tenant(response.tenant.tenant_id, response.secret_key)


def _small_png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (shade, 255 - shade, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def open_session(stack: Stack, seed: int) -> Session:
    """Two tenants; the rpc tenant gets three assets (and their jobs) and page tokens."""
    channels = {name: grpc.insecure_channel(stack.address(name)) for name in SERVICES}
    run = secrets.token_hex(4)  # several sessions may share a stack
    uploader = _tenant(stack, channels["catalog"], f"fuzz-upload-{seed}-{run}")
    target = _tenant(stack, channels["catalog"], f"fuzz-rpc-{seed}-{run}")
    ingest = ingest_pb2_grpc.IngestServiceStub(channels["ingest"])
    own = [
        ingest.Upload(
            upload_messages(_small_png(s), "own.png"), metadata=target.metadata, timeout=60
        )
        for s in (10, 120, 240)
    ]
    other = ingest.Upload(
        upload_messages(_small_png(60), "other.png"), metadata=uploader.metadata, timeout=60
    )
    catalog = catalog_pb2_grpc.CatalogServiceStub(channels["catalog"])
    assets = catalog.ListAssets(
        catalog_pb2.ListAssetsRequest(page_size=1), metadata=target.metadata, timeout=30
    )
    jobs = catalog.ListJobs(catalog_pb2.ListJobsRequest(), metadata=target.metadata, timeout=30)
    first_job = catalog.ListJobs(
        catalog_pb2.ListJobsRequest(page_size=1), metadata=target.metadata, timeout=30
    )
    admin = (("authorization", f"Bearer {stack.admin_key}"),)
    tenants = tenant_admin_pb2_grpc.TenantAdminServiceStub(channels["catalog"]).ListTenants(
        tenant_admin_pb2.ListTenantsRequest(page_size=1), metadata=admin, timeout=30
    )
    presets = renderer_pb2_grpc.RendererServiceStub(channels["renderer"]).ListPresets(
        renderer_pb2.ListPresetsRequest(), metadata=target.metadata, timeout=30
    )
    context = Context(
        rpc_tenant_id=target.tenant_id,
        upload_tenant_id=uploader.tenant_id,
        own_assets=[r.asset.asset_id for r in own],
        own_jobs=[j.job_id for j in jobs.jobs],
        other_assets=[other.asset.asset_id],
        presets=[p.name for p in presets.presets],
        tokens={
            "ListAssets": assets.next_page_token,
            "ListJobs": first_job.next_page_token,
            "ListTenants": tenants.next_page_token,
        },
    )
    return Session(stack, seed, channels, methods(), context, uploader, target)


# Running ----------------------------------------------------------------------------


def call(channel: grpc.Channel, case: Case, metadata: tuple[tuple[str, str], ...]) -> Outcome:
    """Send the case's bytes as they are and classify the answer."""
    method: Method = case.method
    timeout = 180.0 if method.client_streaming else 60.0
    response: Any
    try:
        if method.client_streaming and not method.server_streaming:
            stream_unary: Any = channel.stream_unary(method.path)
            response = stream_unary(iter(case.messages), metadata=metadata, timeout=timeout)
            return Outcome("OK", "", "", response)
        if method.server_streaming:
            unary_stream: Any = channel.unary_stream(method.path)
            responses = unary_stream(case.messages[0], metadata=metadata, timeout=timeout)
            # The first message says the call was accepted; the rest of a watch or a
            # rendition stream adds nothing here. Cancelling is a client's right.
            first = next(iter(responses), b"")
            responses.cancel()
            return Outcome("OK", "", "", first)
        unary_unary: Any = channel.unary_unary(method.path)
        response = unary_unary(case.messages[0], metadata=metadata, timeout=timeout)
        return Outcome("OK", "", "", response)
    except grpc.RpcError as error:
        return outcome_of(error)


def _altered(case: Case, outcome: Outcome) -> str:
    """An accepted fresh upload must have stored the header it was sent."""
    if case.sent is None or outcome.code != "OK":
        return ""
    response = ingest_pb2.UploadResponse.FromString(outcome.response)
    if response.deduplicated:
        return ""
    asset = response.asset
    stored = (asset.filename, asset.declared_content_type, tuple(sorted(asset.labels.items())))
    names = ("filename", "content_type", "labels")
    changed = [n for n, a, b in zip(names, stored, case.sent, strict=True) if a != b]
    if not changed:
        return ""
    return (
        f"index={case.index} {case.family}: accepted, stored {'/'.join(changed)} other than "
        f"sent ({case.detail[:160]})"
    )


def fuzz(
    stack: Stack,
    *,
    cases: int,
    seed: int,
    workers: int = 4,
    only: Iterable[int] | None = None,
    progress: bool = False,
) -> Report:
    """Run cases 0..cases-1 of `seed` (or just `only`) and check the stack afterwards."""
    report = Report(seed=seed)
    pids = _pids(stack)
    session = open_session(stack, seed)
    try:
        accepted = set(session.context.other_assets)
        refused: dict[str, int] = {}  # content hash of each refused upload: its case
        indices = list(only) if only is not None else list(range(cases))
        started = time.monotonic()
        for case, outcome in _run(session, indices, workers, progress):
            report.cases += 1
            report.buckets[outcome.bucket] += 1
            report.families[case.family] += 1
            report.reasons[f"{outcome.code} {outcome.reason}".strip()] += 1
            if only is not None:
                report.answers.append((case, outcome))
            report.transport_refusals += outcome.transport_refusal
            if outcome.code == "OK" and case.upload:
                accepted.add(ingest_pb2.UploadResponse.FromString(outcome.response).asset.asset_id)
            elif case.upload:
                refused[_content_hash(case)] = case.index
            if outcome.problem:
                report.failures.append(Failure(case, outcome.problem, outcome))
                report.no_reason += outcome.code not in ("OK", "INTERNAL", "UNKNOWN") and (
                    not outcome.reason
                )
                report.unavailable += outcome.code == "UNAVAILABLE"
                report.timeouts += outcome.timed_out
            altered = _altered(case, outcome)
            if altered:
                report.altered.append(altered)
        report.seconds = time.monotonic() - started
        _check_stack(session, report, pids, accepted)
        report.leftovers = [_blame(line, refused) for line in report.leftovers]
    finally:
        for channel in session.channels.values():
            channel.close()
    return report


def _content_hash(case: Case) -> str:
    digest = hashlib.sha256()
    for data in case.messages:
        try:
            digest.update(ingest_pb2.UploadRequest.FromString(data).chunk)
        except Exception:  # the invalid message of a raw/* case
            continue
    return digest.hexdigest()


def _blame(leftover: str, refused: dict[str, int]) -> str:
    """Name the refused upload whose bytes a leftover object holds."""
    for content_hash, index in refused.items():
        if content_hash in leftover:
            return f"{leftover} (the bytes of refused case index={index})"
    return leftover


def _run(
    session: Session, indices: list[int], workers: int, progress: bool
) -> Iterator[tuple[Case, Outcome]]:
    """Cases run on `workers` threads, at most 2 x workers built ahead (some are MBs)."""
    pending: dict[Future[Outcome], Case] = {}
    todo = iter(indices)
    done_count = 0
    with ThreadPoolExecutor(workers) as pool:
        while True:
            while len(pending) < 2 * workers:
                index = next(todo, None)
                if index is None:
                    break
                case = session.case(index)
                channel = session.channels[case.method.host]
                pending[pool.submit(call, channel, case, session.metadata(case))] = case
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done_count += 1
                if progress and done_count % 250 == 0:
                    print(f"fuzz: {done_count}/{len(indices)} cases", flush=True)
                yield pending.pop(future), future.result()


# After the run ----------------------------------------------------------------------


def _pids(stack: Stack) -> dict[str, int]:
    pids = {}
    for name, service in stack.services.items():
        assert service.process is not None, f"{name} was never started"
        pids[name] = service.process.pid
    return pids


def _check_stack(
    session: Session, report: Report, pids: dict[str, int], accepted: set[str]
) -> None:
    stack = session.stack
    for name, pid in pids.items():
        process = stack.services[name].process
        if process is None or process.pid != pid:
            report.restarts.append(f"{name}: pid {pid} replaced")
        elif process.poll() is not None:
            report.restarts.append(f"{name}: pid {pid} exited with {process.returncode}")
        else:
            try:
                stack.services[name].wait_serving(timeout=30)
            except RuntimeError as error:
                report.restarts.append(f"{name}: not serving: {str(error)[:200]}")
    # The renderer may still be working on accepted uploads; give it a moment so its
    # log lines about them are included. Bounded: a stuck render is not this oracle's.
    _settle(stack, session.uploader, timeout=60)
    service_logs = [p for p in sorted(stack.log_dir.glob("*.log")) if p.name != "s3.log"]
    report.logs = scan_logs(service_logs)
    for finding in report.logs:
        case = session.case_of(finding.request_id)
        if case is not None:
            report.failures.append(Failure(case, f"{finding.kind} in {finding.file}", log=finding))
    report.leftovers = asyncio.run(_leftovers(stack, session.uploader.tenant_id, accepted))
    tenant_keys = {"upload tenant key": session.uploader.key, "rpc tenant key": session.target.key}
    report.leaks = secrets_in_logs(stack.log_dir, {**stack_secrets(stack), **tenant_keys})


def _settle(stack: Stack, tenant: Tenant, timeout: float) -> None:
    async def busy() -> int:
        connection = await asyncpg.connect(stack.database_url)
        try:
            value = await connection.fetchval(
                "SELECT count(*) FROM assets WHERE tenant_id = $1::uuid "
                "AND status IN ('pending', 'processing')",
                tenant.tenant_id,
            )
            return int(value)
        finally:
            await connection.close()

    deadline = time.monotonic() + timeout
    while asyncio.run(busy()) and time.monotonic() < deadline:
        time.sleep(1)


async def _leftovers(stack: Stack, tenant_id: str, accepted: set[str]) -> list[str]:
    """Rows and objects of the upload tenant that no accepted upload explains."""
    connection = await asyncpg.connect(stack.database_url)
    try:
        rows = await connection.fetch(
            "SELECT id::text AS id, original_key FROM assets WHERE tenant_id = $1::uuid",
            tenant_id,
        )
    finally:
        await connection.close()
    found: list[str] = []
    row_ids = {r["id"] for r in rows}
    keys = {r["original_key"] for r in rows}
    found += [f"asset row {a} of no accepted upload" for a in sorted(row_ids - accepted)]
    found += [f"accepted asset {a} has no row" for a in sorted(accepted - row_ids)]
    client = stack.s3.client()
    objects = {
        o.object_name
        for prefix in (f"originals/{tenant_id}/", f"renditions/{tenant_id}/")
        for o in client.list_objects(stack.bucket, prefix=prefix, recursive=True)
        if o.object_name
    }
    originals = {o for o in objects if o.startswith("originals/")}
    found += [f"object {k} of no asset row" for k in sorted(originals - keys)]
    found += [f"asset row points at missing object {k}" for k in sorted(keys - originals)]
    for key in sorted(objects - originals):
        asset_id = key.split("/")[2]
        if asset_id not in row_ids:
            found.append(f"rendition object {key} of no asset row")
    return found
