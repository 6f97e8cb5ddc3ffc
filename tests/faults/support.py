"""Breaking things on purpose: batches, fault controls and the outcome of every upload.

Every fault test uploads a batch, injects a fault, waits for the system to settle,
then classifies each accepted upload from the catalog's own tables:

- rendered:   ready, three renditions, done by its first attempt;
- recovered:  ready, three renditions, done after failed or interrupted attempts;
- poisoned:   given up on, with a poison job saying why;
- lost:       accepted, but neither ready nor poisoned;
- duplicated: a job whose renditions were committed by more than one completed
              attempt (job_attempts with outcome 'succeeded');
- bad renditions: a ready asset without exactly three rendition rows, or whose
              rendition rows point at an object that is missing from S3 or whose size
              differs from the row's (every committed object is stat'ed).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import asyncpg
import grpc
import numpy as np
from minio.error import S3Error
from PIL import Image

from devstack import ServiceProcess, Stack
from imagepipe.v1 import ingest_pb2_grpc
from tests.helpers import Services, Tenant, upload_messages

__all__ = [
    "Answer",
    "Outcome",
    "Uploader",
    "classify",
    "during_a_job",
    "interrupted_attempts",
    "kill_during_a_job",
    "make_images",
    "query",
    "rabbitmq_stopped",
    "replace_service",
    "wait_settled",
    "worker_of",
]


def make_images(count: int, seed: int, size: tuple[int, int] = (640, 480)) -> list[bytes]:
    """Distinct photos-like JPEGs (smooth gradients plus noise), fast to render."""
    rng = np.random.default_rng(seed)
    images = []
    height, width = size[1], size[0]
    y, x = np.mgrid[0:height, 0:width]
    for _ in range(count):
        base = rng.uniform(0, 255, 3)
        slope = rng.uniform(-0.3, 0.3, (2, 3))
        pixels = base + x[..., None] * slope[0] + y[..., None] * slope[1]
        pixels += rng.normal(0, 12, pixels.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def query(stack: Stack, sql: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


@dataclass(frozen=True)
class Answer:
    """One Upload call as the client saw it (monotonic clock)."""

    started: float
    answered: float
    code: str  # a grpc.StatusCode name, "OK" for an accepted upload


@dataclass
class Uploader:
    """Uploads a batch from a few threads, retrying what a client would retry.

    Every call is recorded in `answers`, retried ones included, so a test can say
    how many uploads a fault made the client retry and which were accepted while
    the fault lasted, instead of taking "eventually accepted" for "accepted".
    """

    services: Services
    tenant: Tenant
    accepted: list[str] = field(default_factory=list)  # asset ids answered OK
    refused: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0

    def upload_one(self, data: bytes, retries: int = 60) -> None:
        stub = ingest_pb2_grpc.IngestServiceStub(self.services.ingest)
        for _ in range(retries):
            started = time.monotonic()
            try:
                response = stub.Upload(
                    upload_messages(data), metadata=self.tenant.metadata, timeout=30
                )
            except grpc.RpcError as error:
                with self.lock:
                    self.answers.append(Answer(started, time.monotonic(), error.code().name))
                if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    time.sleep(0.5)  # a dependency is down: retry, as AsyncClient does
                    continue
                with self.lock:
                    self.refused.append(f"{error.code().name}: {error.details()}")
                    self.done += 1
                return
            with self.lock:
                self.answers.append(Answer(started, time.monotonic(), "OK"))
                self.accepted.append(response.asset.asset_id)
                self.done += 1
            return
        with self.lock:
            self.refused.append("gave up retrying")
            self.done += 1

    @property
    def retried(self) -> list[Answer]:
        """Calls answered UNAVAILABLE or DEADLINE_EXCEEDED, which the client retried."""
        with self.lock:
            return [a for a in self.answers if a.code != "OK" and a.code in _RETRIED]

    def between(self, start: float, end: float) -> list[Answer]:
        """Calls made and answered entirely within [start, end]."""
        with self.lock:
            return [a for a in self.answers if start <= a.started and a.answered <= end]

    def at_least(self, count: int) -> bool:
        return self.done >= count

    def start(self, images: Iterable[bytes], threads: int = 4) -> threading.Thread:
        def run() -> None:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(self.upload_one, images))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


_RETRIED = {grpc.StatusCode.UNAVAILABLE.name, grpc.StatusCode.DEADLINE_EXCEEDED.name}


def wait_settled(stack: Stack, tenant: Tenant, timeout: float) -> None:
    """Until no asset of the tenant is pending or processing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = query(
            stack,
            "SELECT count(*) AS n FROM assets WHERE tenant_id = $1::uuid "
            "AND status IN ('pending', 'processing')",
            tenant.tenant_id,
        )[0]["n"]
        if busy == 0:
            return
        time.sleep(0.5)


@dataclass(frozen=True)
class Outcome:
    uploads: int
    rendered: int
    recovered: int
    poisoned: int
    lost: int
    duplicated: int
    # Ready assets without exactly three rendition rows, or with a rendition row whose
    # object is missing from S3 or has another size than the row says.
    bad_renditions: int
    objects_checked: int  # rendition objects stat'ed in S3

    def line(self) -> str:
        return (
            f"uploads={self.uploads} rendered={self.rendered} recovered={self.recovered} "
            f"lost={self.lost} duplicated={self.duplicated}"
            + (f" poisoned={self.poisoned}" if self.poisoned else "")
            + f" bad_renditions={self.bad_renditions} objects_checked={self.objects_checked}"
        )


def classify(stack: Stack, asset_ids: Iterable[str]) -> Outcome:
    wanted = sorted(set(asset_ids))
    rows = query(
        stack,
        """
        SELECT a.id, a.status, j.attempts,
               (SELECT count(*) FROM job_attempts t
                 WHERE t.job_id = j.id AND t.outcome = 'succeeded') AS succeeded,
               (SELECT count(*) FROM renditions r WHERE r.asset_id = a.id) AS renditions,
               (SELECT count(*) FROM poison_jobs p
                 WHERE p.job_id = j.id AND p.replayed_at IS NULL) AS poison
        FROM assets a JOIN jobs j ON j.asset_id = a.id
        WHERE a.id = ANY($1::uuid[])
        """,
        wanted,
    )
    ready = [r for r in rows if r["status"] == "ready"]
    objects = query(
        stack,
        "SELECT asset_id, object_key, size_bytes FROM renditions WHERE asset_id = ANY($1::uuid[])",
        [r["id"] for r in ready],
    )
    wrong_objects = {r["asset_id"] for r in objects if not _stored(stack, r)}
    return Outcome(
        uploads=len(wanted),
        rendered=sum(1 for r in ready if r["attempts"] == 1),
        recovered=sum(1 for r in ready if r["attempts"] > 1),
        poisoned=sum(1 for r in rows if r["status"] == "failed" and r["poison"]),
        lost=len(wanted)
        - len(ready)
        - sum(1 for r in rows if r["status"] == "failed" and r["poison"]),
        duplicated=sum(1 for r in rows if r["succeeded"] > 1),
        bad_renditions=sum(1 for r in ready if r["renditions"] != 3 or r["id"] in wrong_objects),
        objects_checked=len(objects),
    )


def _stored(stack: Stack, rendition: asyncpg.Record) -> bool:
    """Whether the rendition's object is in S3 with the size its row records."""
    try:
        stat = stack.s3.client().stat_object(stack.bucket, rendition["object_key"])
    except S3Error as error:
        if error.code in ("NoSuchKey", "NoSuchObject"):
            return False
        raise
    return bool(stat.size == rendition["size_bytes"])


def kill_hard(service: ServiceProcess) -> None:
    """SIGKILL the service and its decoder workers, as a crash or OOM kill would."""
    assert service.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(service.process.pid), signal.SIGKILL)
    service.process.wait(timeout=30)


def crash_whenever_it_starts(
    stack: Stack,
    job_id: object,
    *,
    env: dict[str, str],
    max_kills: int,
    timeout: float,
    after_kill: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    started: Callable[[ServiceProcess], None] | None = None,
) -> int:
    """Run renderers with `env`, SIGKILLing each the moment it opens an attempt of
    `job_id` (as a segfault or an OOM kill of the whole renderer would end it) and
    starting the next at once, until the job is poison, `max_kills` kills or `timeout`
    seconds. `after_kill` runs on the watching connection after each kill, `started`
    with each renderer started. Returns the number of kills."""

    def start() -> None:
        stack.services["renderer"] = stack.start_service("renderer", **env)
        if started is not None:
            started(stack.services["renderer"])

    async def watch() -> int:
        connection = await asyncpg.connect(stack.database_url)
        try:
            kills, seen = 0, 0
            start()
            deadline = time.monotonic() + timeout
            while kills < max_kills and time.monotonic() < deadline:
                opened = await connection.fetchval(
                    "SELECT count(*) FROM job_attempts WHERE job_id = $1", job_id
                )
                if opened > seen:  # the renderer just began the job: it "crashes"
                    seen = opened
                    kill_hard(stack.services["renderer"])
                    kills += 1
                    if after_kill is not None:
                        await after_kill(connection)
                    start()
                elif await connection.fetchval(
                    "SELECT 1 FROM poison_jobs WHERE job_id = $1", job_id
                ):
                    return kills
                await asyncio.sleep(0.002)
            return kills
        finally:
            await connection.close()

    return asyncio.run(watch())


def worker_of(service: ServiceProcess) -> str:
    """The name a renderer process records on the attempts it starts (host:pid)."""
    assert service.process is not None
    return f"{socket.gethostname()}:{service.process.pid}"


def kill_during_a_job(
    stack: Stack, service: ServiceProcess, timeout: float
) -> tuple[str, datetime.datetime]:
    """SIGKILL the renderer `service` (and its workers) while it holds an open attempt;
    its worker name and the database time just after the kill, for
    `interrupted_attempts`."""
    worker = worker_of(service)
    return worker, during_a_job(stack, worker, partial(kill_hard, service), timeout)


def during_a_job(
    stack: Stack, worker: str, act: Callable[[], None], timeout: float
) -> datetime.datetime:
    """Run `act` the moment `worker` holds an open attempt; the database time just after.

    Watches job_attempts on one connection (a few ms per look), so a signal lands while
    a job is in progress rather than between jobs. Whether it really did is for the
    caller to check from the attempts afterwards (`interrupted_attempts`, or attempts
    that finished after the returned time).
    """

    async def watch() -> datetime.datetime | None:
        connection = await asyncpg.connect(stack.database_url)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if await connection.fetchval(
                    "SELECT 1 FROM job_attempts WHERE worker = $1 AND finished_at IS NULL",
                    worker,
                ):
                    act()
                    moment: datetime.datetime = await connection.fetchval(
                        "SELECT clock_timestamp()"
                    )
                    return moment
                await asyncio.sleep(0.002)
            return None
        finally:
            await connection.close()

    moment = asyncio.run(watch())
    assert moment is not None, f"{worker} started no job within {timeout:g} s"
    return moment


def interrupted_attempts(stack: Stack, worker: str, killed_at: datetime.datetime) -> list[str]:
    """Jobs whose attempt by `worker` had not finished when it was killed at `killed_at`
    (still open, or closed later by someone else): the work a dead process left behind."""
    rows = query(
        stack,
        "SELECT job_id::text AS job_id FROM job_attempts WHERE worker = $1 "
        "AND (finished_at IS NULL OR finished_at > $2)",
        worker,
        killed_at,
    )
    return [r["job_id"] for r in rows]


def replace_service(stack: Stack, name: str, **env: str) -> ServiceProcess:
    """Start a fresh process for `name` on its usual port and make it the stack's."""
    fresh = stack.start_service(name, **env)
    fresh.wait_serving(timeout=60)
    stack.services[name] = fresh
    return fresh


class rabbitmq_stopped:  # noqa: N801 - used as a context manager, reads like a clause
    """`rabbitmqctl stop_app` for the duration; always started again, even on failure."""

    def __enter__(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60)

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=False, timeout=120)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def shuffled(items: list[bytes], seed: int) -> list[bytes]:
    copy = list(items)
    random.Random(seed).shuffle(copy)
    return copy
