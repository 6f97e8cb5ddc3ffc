"""Fuzzing the live ingest: random bytes and mutated images never get INTERNAL/UNKNOWN,
never crash or hang it, and its memory stays bounded.

IMAGEPIPE_FUZZ_CASES sets the number of cases (2000 by default, as in CI).
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devstack import Stack
from imagepipe.v1 import ingest_pb2_grpc
from tests.helpers import Services, Tenant, error_info, upload_messages

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CASES = int(os.environ.get("IMAGEPIPE_FUZZ_CASES", "2000"))
# Small accepted files of every container format make fast, meaningful seeds.
SEEDS = {
    path.name: path.read_bytes()
    for path in sorted(CORPUS.iterdir())
    if path.suffix in (".jpg", ".png", ".gif", ".webp", ".bmp", ".tif")
    and not path.name.startswith("invalid_")
    and path.stat().st_size <= 60_000
}
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
# Stated bound for the ingest process's resident memory during the fuzz run.
RSS_BOUND_MIB = 200


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_dimensions(data: bytes, width: int, height: int) -> bytes:
    """The same file with huge declared dimensions (checksums kept valid)."""
    if data.startswith(b"\x89PNG"):
        ihdr = bytearray(data[16:29])
        ihdr[0:8] = struct.pack(">II", width, height)
        return data[:8] + _png_chunk(b"IHDR", bytes(ihdr)) + data[33:]
    if data.startswith(b"GIF8"):
        return data[:6] + struct.pack("<HH", width & 0xFFFF, height & 0xFFFF) + data[10:]
    if data.startswith(b"BM"):
        return data[:18] + struct.pack("<ii", width, height) + data[26:]
    if data.startswith(b"\xff\xd8"):
        for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
            at = data.find(marker)
            if at > 0:
                size = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
                return data[: at + 5] + size + data[at + 9 :]
    return data


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "flip", "truncate", "splice", "dimensions"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=4096))
    seed = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    if kind == "flip":
        data = bytearray(seed)
        for position in draw(st.lists(st.integers(0, len(seed) - 1), min_size=1, max_size=16)):
            data[position] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "truncate":
        return seed[: draw(st.integers(0, len(seed) - 1))]
    if kind == "splice":
        other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
        cut = draw(st.integers(0, min(len(seed), 512)))
        return seed[:cut] + other[draw(st.integers(0, len(other))) :]
    width = draw(st.sampled_from([0, 1, 65_535, 100_000, 2**31 - 1]))
    height = draw(st.sampled_from([0, 1, 65_535, 100_000, 2**31 - 1]))
    return with_dimensions(seed, width, height)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class FuzzRun:
    stub: ingest_pb2_grpc.IngestServiceStub
    tenant: Tenant
    pid: int
    codes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)  # asset ids of the cases answered OK
    start_rss: float = 0.0
    max_rss: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def fuzz(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> Iterator[FuzzRun]:
    process = stack.services["ingest"].process
    assert process is not None
    run = FuzzRun(
        ingest_pb2_grpc.IngestServiceStub(services.ingest), make_tenant("fuzz"), process.pid
    )
    run.start_rss = run.max_rss = _rss_mib(run.pid)

    def sample() -> None:
        while not run.stop.wait(0.05):
            run.max_rss = max(run.max_rss, _rss_mib(run.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    yield run
    run.stop.set()
    sampler.join()


@settings(
    max_examples=CASES,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(data=payloads())
def test_no_input_gets_an_internal_error(fuzz: FuzzRun, data: bytes) -> None:
    try:
        response = fuzz.stub.Upload(
            upload_messages(data, "fuzz.bin"), metadata=fuzz.tenant.metadata, timeout=60
        )
        code, reason = grpc.StatusCode.OK, "ACCEPTED"
        fuzz.accepted.add(response.asset.asset_id)
    except grpc.RpcError as error:
        code, reason = error.code(), error_info(error).reason
    fuzz.codes[code.name] += 1
    fuzz.reasons[reason] += 1
    assert code in ALLOWED, f"{code.name} ({reason}) for {len(data)} bytes starting {data[:16]!r}"


def test_ingest_survived_the_fuzz_with_bounded_memory(fuzz: FuzzRun, stack: Stack) -> None:
    ingest = stack.services["ingest"]
    assert ingest.process is not None and ingest.process.poll() is None, "ingest died"
    ingest.wait_serving(timeout=10)
    cases = sum(fuzz.codes.values())
    print(
        f"\nfuzz: {cases} cases, codes {dict(fuzz.codes)}, "
        f"reasons {dict(fuzz.reasons.most_common())}\n"
        f"fuzz: ingest RSS {fuzz.start_rss:.0f} MiB at start, {fuzz.max_rss:.0f} MiB at most "
        f"(bound {RSS_BOUND_MIB} MiB)"
    )
    assert cases >= CASES
    assert fuzz.max_rss < RSS_BOUND_MIB


def test_every_accepted_fuzz_case_renders(fuzz: FuzzRun, stack: Stack) -> None:
    """What ingest accepts, the renderer can render: every accepted case ends ready."""
    # Bit flips in entropy-coded data decode: a run of this size always accepts some.
    assert fuzz.accepted, f"no fuzz case was accepted (codes {dict(fuzz.codes)}): nothing to check"
    deadline = time.monotonic() + 120
    while True:
        statuses = _statuses(stack, fuzz.tenant.tenant_id)
        if not statuses.keys() & {"pending", "processing"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(f"\nfuzz: {len(fuzz.accepted)} accepted assets, by status {statuses}")
    assert statuses == {"ready": len(fuzz.accepted)}, statuses


def _statuses(stack: Stack, tenant_id: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            rows = await connection.fetch(
                "SELECT status, count(*) AS n FROM assets "
                "WHERE tenant_id = $1::uuid GROUP BY status",
                tenant_id,
            )
            return {r["status"]: r["n"] for r in rows}
        finally:
            await connection.close()

    return asyncio.run(run())
