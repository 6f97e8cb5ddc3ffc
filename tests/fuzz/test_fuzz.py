"""The fuzz tool itself (its oracle, its bytes) and a quick fuzz run on a stack of its own.

`make fuzz` runs the same code over 5 000 cases (python -m tests.fuzz); here
FUZZ_TEST_CASES (300) cases of seed FUZZ_SEED run against a fresh stack, so the
pid, log and leftover checks see nothing but the fuzz.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from devstack import Stack, StackConfig
from imagepipe.v1 import ingest_pb2
from services.shared.errors import ImagepipeError, InvalidArgument, to_grpc_status
from tests.fuzz import wire
from tests.fuzz.__main__ import print_report
from tests.fuzz.cases import Case, Context, Method, invalid_bytes, make_case, methods
from tests.fuzz.mutate import SPLITTERS, mutate, seeds
from tests.fuzz.oracle import scan_logs
from tests.fuzz.run import call, fuzz, open_session

CASES = int(os.environ.get("FUZZ_TEST_CASES", "300"))
SEED = int(os.environ.get("FUZZ_SEED", "15"))


# The oracle, against a real gRPC server whose answers are known ------------------------

ECHO = "/fuzz.Oracle/Echo"
ANSWERS = {
    b"ok": None,
    b"invalid": InvalidArgument("bad", reason="SOME_REASON"),
    # What the services' interceptor sends for an unhandled exception.
    b"internal": ImagepipeError("internal error; quote request id x when reporting"),
}


def _behaviour(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"crash":
        raise ValueError("an unhandled bug")  # grpc answers UNKNOWN
    if request == b"bare":
        context.abort(grpc.StatusCode.NOT_FOUND, "no details")
    error = ANSWERS[request]
    if error is not None:
        status = to_grpc_status(error, "x")
        context.abort_with_status(status)
    return b"fine"


@pytest.fixture(scope="module")
def oracle_channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    handler = grpc.method_handlers_generic_handler(
        "fuzz.Oracle", {"Echo": grpc.unary_unary_rpc_method_handler(_behaviour)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(None)


def _case(request: bytes) -> Case:
    method = Method(ECHO, "none", object, False, False)  # type: ignore[arg-type]
    return Case(0, "oracle", "", method, "none", (request,))


@pytest.mark.parametrize(
    ("request_bytes", "bucket", "problem"),
    [
        (b"ok", "ok", ""),
        (b"invalid", "invalid_argument", ""),
        (b"internal", "internal", "INTERNAL"),
        (b"crash", "unknown", "UNKNOWN"),
        (b"bare", "other", "NOT_FOUND without an ErrorInfo reason"),
    ],
)
def test_the_oracle_classifies_real_answers(
    oracle_channel: grpc.Channel, request_bytes: bytes, bucket: str, problem: str
) -> None:
    outcome = call(oracle_channel, _case(request_bytes), ())
    assert (outcome.bucket, outcome.problem) == (bucket, problem), outcome
    if request_bytes == b"invalid":
        assert outcome.reason == "SOME_REASON"


def test_grpc_refusing_oversized_metadata_is_counted_not_failed(
    oracle_channel: grpc.Channel,
) -> None:
    outcome = call(oracle_channel, _case(b"ok"), (("authorization", "x" * 20_000),))
    assert outcome.code == "RESOURCE_EXHAUSTED" and outcome.transport_refusal, outcome
    assert (outcome.bucket, outcome.problem) == ("other", "")


def test_log_scan_finds_error_lines_and_tracebacks(tmp_path: Path) -> None:
    lines = [
        {"level": "info", "event": "rpc GetAsset OK", "request_id": "fuzz-1-1"},
        {"level": "warning", "event": "INVALID_ARGUMENT: bad"},
        {
            "level": "error",
            "event": "unhandled error",
            "request_id": "fuzz-1-2",
            "exception": "Traceback (most recent call last):\n  ...\nValueError: x",
        },
        {"level": "error", "event": "Task exception was never retrieved"},
        {"level": "warning", "event": "retrying", "exception": "Traceback (most\nOSError: y"},
    ]
    log = tmp_path / "svc.log"
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\nTraceback (most recent\n")
    found = scan_logs([log])
    assert [(f.kind, f.request_id, f.exception) for f in found] == [
        ("traceback", "fuzz-1-2", "ValueError: x"),
        ("error", "", ""),
        ("traceback", "", "OSError: y"),
        ("traceback", "", ""),
    ]


# The bytes the fuzz sends ---------------------------------------------------------------


def _context() -> Context:
    """Shaped like a real session's: three assets and jobs of the rpc tenant."""
    ids = [str(uuid.UUID(int=i)) for i in range(1, 10)]
    tokens = {"ListAssets": "eyJx", "ListJobs": "eyJ4", "ListTenants": "Zg=="}
    return Context(ids[0], ids[1], ids[2:5], ids[5:8], ids[8:], ["thumb", "web"], tokens)


def test_raw_cases_are_refused_by_the_protobuf_runtime_for_every_rpc() -> None:
    rpcs = methods()
    assert {"Upload", "GetAsset", "Purge", "RegisterAsset", "ListPresets"} <= set(rpcs)
    rng = random.Random(1)
    for method in rpcs.values():
        for _ in range(30):
            _, data = invalid_bytes(rng, method.request)
            assert not wire.is_valid(method.request, data), (method.name, data)


@pytest.mark.parametrize("seed", [SEED, 1])
def test_every_case_of_a_full_run_can_be_built(seed: int) -> None:
    rpcs, context = methods(), _context()
    cases = [make_case(seed, i, context, rpcs) for i in range(5000)]
    assert {case.method.name for case in cases} == set(rpcs)


def test_cases_replay_exactly_from_seed_and_index() -> None:
    rpcs, context = methods(), _context()
    first = [make_case(7, i, context, rpcs) for i in range(300)]
    assert first == [make_case(7, i, context, rpcs) for i in range(300)]
    families = {case.family.split("/")[0] for case in first}
    assert families == {"upload", "compare", "header", "field", "raw"}


def test_containers_split_and_join_back_unchanged() -> None:
    split = 0
    for seed in seeds():
        for splitter in SPLITTERS.values():
            parts = splitter(seed.data)
            if parts is not None:
                prefix, units, suffix = parts
                assert prefix + b"".join(units) + suffix == seed.data, seed.name
                split += len(units) > 1
    assert split >= 30  # every container of the corpus is understood, not skipped


def test_mutations_change_the_bytes() -> None:
    rng = random.Random(3)
    changed = sum(mutate(rng, seed)[1] != seed.data for seed in seeds() for _ in range(5))
    assert changed >= 0.9 * 5 * len(seeds())


# A quick fuzz run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[Stack]:
    work_dir = Path(tempfile.mkdtemp(prefix="imagepipe-fuzz-"))
    stack = Stack(StackConfig.from_env(work_dir))
    try:
        with stack.running():
            yield stack
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_fuzz_finds_no_internal_error_restart_traceback_or_leftover(
    fuzz_stack: Stack, capsys: Any
) -> None:
    report = fuzz(fuzz_stack, cases=CASES, seed=SEED)
    with capsys.disabled():
        print()
        print_report(report)
    assert report.cases == CASES
    # The run proved something: uploads were accepted and refused, RPCs answered.
    assert report.buckets["ok"] > 0 and report.buckets["invalid_argument"] > 0
    if not report.ok:
        pytest.fail("\n".join([*report.classes(), report.summary]), pytrace=False)


@pytest.mark.stack
def test_a_known_good_upload_counts_as_ok(fuzz_stack: Stack) -> None:
    session = open_session(fuzz_stack, SEED)
    try:
        data = next(s.data for s in seeds() if s.name == "png_rgba_dice.png")
        request = ingest_pb2.UploadRequest
        messages = (
            request(header=ingest_pb2.UploadHeader(filename="dice.png")).SerializeToString(),
            request(chunk=data).SerializeToString(),
        )
        case = Case(0, "known-good", "", session.rpcs["Upload"], "tenant", messages, upload=True)
        outcome = call(session.channels["ingest"], case, session.metadata(case))
    finally:
        for channel in session.channels.values():
            channel.close()
    assert (outcome.bucket, outcome.problem) == ("ok", ""), outcome
    assert ingest_pb2.UploadResponse.FromString(outcome.response).asset.width == 300
