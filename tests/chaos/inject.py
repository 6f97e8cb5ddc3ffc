"""Fault injectors: each fault of a schedule, run at its time, overlapping the others.

A resource (a service process, the S3 server, the RabbitMQ node) is held down by
every fault acting on it; overlapping faults on one resource make one longer outage,
and it comes back when the last of them ends. `Injector.heal()` ends everything and
waits until every service serves again.

The runner's own database connections carry APPLICATION_NAME, so that terminating
the run's backends (`pg-terminate`) spares the injectors that hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import asyncpg

from devstack import ServiceProcess, Stack
from services.shared.broker import Topology
from tests.chaos.rabbit import PrivateRabbit
from tests.chaos.schedule import Fault, FaultKind
from tests.faults.support import kill_hard, wait_until

__all__ = ["APPLICATION_NAME", "CrashWatcher", "FaultRecord", "Injector", "connect"]

APPLICATION_NAME = "imagepipe-chaos"


async def connect(stack: Stack) -> asyncpg.Connection:
    return await asyncpg.connect(
        stack.database_url, server_settings={"application_name": APPLICATION_NAME}
    )


@dataclass
class FaultRecord:
    """What a fault of the schedule actually did (a fault may find nothing to act on)."""

    fault: Fault
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def describe(self) -> str:
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return self.fault.describe() + extra


class Outage:
    """A resource that faults take down; the last fault to end brings it back."""

    def __init__(self, name: str, up: Callable[[], None]) -> None:
        self.name = name
        self._up = up
        self._holders = 0
        self.lock = threading.RLock()

    @property
    def down(self) -> bool:
        return self._holders > 0

    def hold(self, take_down: Callable[[], None]) -> bool:
        """Take the resource down unless it is already; True if this call did."""
        with self.lock:
            self._holders += 1
            if self._holders == 1:
                take_down()
                return True
            return False

    def release(self) -> bool:
        """End one hold; True if this call brought the resource back."""
        with self.lock:
            self._holders -= 1
            if self._holders == 0:
                self._up()
                return True
            return False


class ServiceControl:
    """One service of the stack: kill, terminate, start again (never waiting to serve,
    so a restart does not hold up the faults that overlap it)."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.stack = stack
        self.name = name
        self.outage = Outage(name, self.start)
        self.kills = 0

    @property
    def alive(self) -> bool:
        process = self.stack.services[self.name].process
        return process is not None and process.poll() is None

    def kill(self) -> None:
        """SIGKILL the process group (the service and its workers), as an OOM kill."""
        with self.outage.lock:
            kill_hard(self.stack.services[self.name])
            self.kills += 1

    def terminate(self) -> None:
        """SIGTERM and wait for the graceful exit (killed if it does not come)."""
        with self.outage.lock:
            service = self.stack.services[self.name]
            service.signal(signal.SIGTERM)
            assert service.process is not None
            try:
                service.process.wait(60)
            except subprocess.TimeoutExpired:
                kill_hard(service)

    def start(self) -> None:
        with self.outage.lock:
            if not self.alive:
                self.stack.services[self.name] = self.stack.start_service(self.name)

    def crash(self) -> bool:
        """Kill and start again at once, as a crash under a supervisor; False while a
        fault holds the service down (it is not running anything to crash)."""
        with self.outage.lock:
            if self.outage.down or not self.alive:
                return False
            self.kill()
            self.start()
            return True


class Injector:
    """Runs a schedule against a stack: one thread per fault, each at its time."""

    def __init__(self, stack: Stack, rabbit: PrivateRabbit) -> None:
        self.stack = stack
        self.rabbit = rabbit
        self.services = {name: ServiceControl(stack, name) for name in stack.services}
        self.s3 = Outage("s3", stack.s3.start)
        self.broker = Outage("rabbitmq", rabbit.start_app)
        self.records: list[FaultRecord] = []
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self.errors: list[str] = []

    def start(self, schedule: list[Fault], started: float) -> None:
        self._started = started
        for fault in schedule:
            record = FaultRecord(fault)
            self.records.append(record)
            thread = threading.Thread(
                target=self._guarded, args=(record,), name=fault.describe(), daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _sleep_until(self, offset: float) -> None:
        # Scheduling, not synchronisation: a fault happens at its time whatever else does.
        delay = self._started + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _guarded(self, record: FaultRecord) -> None:
        try:
            self._sleep_until(record.fault.at)
            self._run(record)
        except Exception as error:  # a broken injector must show, not hide in a thread
            self.errors.append(f"{record.fault.describe()}: {type(error).__name__}: {error}")

    def _run(self, record: FaultRecord) -> None:
        fault = record.fault
        kind = fault.kind
        if kind is FaultKind.PG_TERMINATE:
            record.note(f"{asyncio.run(self._terminate_backends())} backends")
            return
        if kind is FaultKind.QUEUE_PURGE:
            self._purge(record)
            return
        if kind is FaultKind.CATALOG_DOWN_AT_GIVE_UP:
            asyncio.run(self._catalog_down_at_give_up(record))
            return
        outage, take_down = self._outage(kind)
        if not outage.hold(take_down):
            record.note("already down: outage extended")
        try:
            self._sleep_until(fault.ends)
        finally:
            brought_back = outage.release()
        if brought_back:
            # Starting a thing again takes time too (a broker app: seconds, under load
            # more): say when it was really back.
            record.note(f"back at {time.monotonic() - self._started:.1f}s")

    def _outage(self, kind: FaultKind) -> tuple[Outage, Callable[[], None]]:
        renderer = self.services["renderer"]
        if kind is FaultKind.RENDERER_SIGKILL:
            return renderer.outage, renderer.kill
        if kind is FaultKind.RENDERER_SIGTERM:
            return renderer.outage, renderer.terminate
        if kind is FaultKind.INGEST_SIGKILL:
            return self.services["ingest"].outage, self.services["ingest"].kill
        if kind is FaultKind.CATALOG_SIGKILL:
            return self.services["catalog"].outage, self.services["catalog"].kill
        if kind is FaultKind.RABBITMQ_STOP:
            return self.broker, self.rabbit.stop_app
        if kind is FaultKind.S3_STOP:
            return self.s3, self.stack.s3.stop
        raise AssertionError(f"no outage for {kind}")

    async def _terminate_backends(self) -> int:
        connection = await connect(self.stack)
        try:
            # Only this run's database, and never the runner's own connections.
            return int(
                await connection.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid() "
                    "AND application_name <> $2",
                    self.stack.name,
                    APPLICATION_NAME,
                )
            )
        finally:
            await connection.close()

    def _purge(self, record: FaultRecord) -> None:
        queue = Topology(prefix=self.stack.prefix, delivery_limit=1).work_queue
        # While the broker is stopped there is nothing to purge: do it when it is back.
        deadline = time.monotonic() + 60
        first_error = ""
        while not self.rabbit.purge(queue):
            first_error = first_error or self.rabbit.last_error
            if time.monotonic() > deadline:
                record.note(f"not purged: {first_error}")
                return
            time.sleep(0.5)
        if first_error:
            record.note(
                f"purged late, at {time.monotonic() - self._started:.1f}s, first: {first_error}"
            )

    async def _catalog_down_at_give_up(self, record: FaultRecord) -> None:
        """Hold inserts into poison_jobs back; the moment a give-up waits on that lock
        (the job row already locked, the answer not yet sent), kill the catalog, drop
        the waiting transaction, and keep the catalog down for `hold` seconds."""
        fault = record.fault
        catalog = self.services["catalog"]
        locker = await connect(self.stack)
        # Watched from another connection: inside the locker's transaction,
        # pg_stat_activity would show the same snapshot at every read.
        watcher = await connect(self.stack)
        try:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE poison_jobs IN SHARE MODE")
            waiter = None
            deadline = self._started + fault.ends
            while waiter is None and time.monotonic() < deadline:
                waiter = await watcher.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 "
                    "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO poison_jobs%'",
                    self.stack.name,
                )
                if waiter is None:
                    await asyncio.sleep(0.05)
            if waiter is None:
                await transaction.rollback()
                record.note("no give-up in the window")
                return
            took_down = catalog.outage.hold(catalog.kill)
            await watcher.fetchval("SELECT pg_terminate_backend($1)", waiter)
            await transaction.rollback()
            at = time.monotonic() - self._started
            record.note(f"give-up caught at {at:.1f}s" + ("" if took_down else ", already down"))
        finally:
            await locker.close()
            await watcher.close()
        try:
            await asyncio.sleep(fault.hold)
        finally:
            catalog.outage.release()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def heal(self, timeout: float = 120) -> None:
        """Every fault over, every resource up, every service serving."""
        self.join()
        if not port_open(self.rabbit.port):
            self.rabbit.start_app()
        if not port_open(self.stack.s3.port):
            self.stack.s3.start()
        for control in self.services.values():
            control.start()
        deadline = time.monotonic() + timeout
        for name in self.services:
            self._wait_serving(name, deadline)

    def _replaced(self, name: str, service: ServiceProcess) -> bool:
        return self.stack.services[name] is not service

    def _wait_serving(self, name: str, deadline: float) -> None:
        """Wait for the service to serve; the crash watcher may kill the renderer and
        start a new one meanwhile (it opened a crasher's job): then wait for that one."""
        while True:
            service = self.stack.services[name]
            try:
                service.wait_serving(max(1.0, deadline - time.monotonic()))
                return
            except RuntimeError:
                # The watcher starts the next renderer right after its kill.
                replaced = wait_until(partial(self._replaced, name, service), 10)
                if not replaced or time.monotonic() > deadline:
                    raise


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


class CrashWatcher:
    """Kills the renderer whenever it opens an attempt of a crasher's job, as an image
    that makes it segfault would (the mechanism of tests/faults' crash-loop test)."""

    def __init__(self, stack: Stack, renderer: ServiceControl) -> None:
        self.stack = stack
        self.renderer = renderer
        self.assets: list[str] = []
        self.kills = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="crash-watcher", daemon=True)
        self.errors: list[str] = []

    def watch(self, asset_id: str) -> None:
        self.assets.append(asset_id)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _main(self) -> None:
        try:
            asyncio.run(self._watch())
        except Exception as error:
            self.errors.append(f"crash watcher: {type(error).__name__}: {error}")

    async def _watch(self) -> None:
        seen: dict[str, int] = {}
        connection: asyncpg.Connection | None = None
        while not self._stopping.is_set():
            if not self.assets:
                await asyncio.sleep(0.05)
                continue
            try:
                if connection is None or connection.is_closed():
                    connection = await connect(self.stack)
                rows = await connection.fetch(
                    "SELECT j.asset_id::text AS asset, count(t.attempt) AS n FROM jobs j "
                    "LEFT JOIN job_attempts t ON t.job_id = j.id "
                    "WHERE j.asset_id = ANY($1::uuid[]) GROUP BY j.asset_id",
                    list(self.assets),
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection = None
                await asyncio.sleep(0.05)
                continue
            for row in rows:
                started = int(row["n"])
                if started > seen.get(row["asset"], 0):
                    seen[row["asset"]] = started
                    if self.renderer.crash():
                        self.kills += 1
            await asyncio.sleep(0.005)
        if connection is not None:
            await connection.close()
