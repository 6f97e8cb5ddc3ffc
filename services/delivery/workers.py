"""Several delivery processes on one port: a supervisor and its workers.

One Python process answers on one core; delivery is CPU-bound once its caches are warm.
With IMAGEPIPE_DELIVERY_PROCESSES above 1, `python -m services.delivery` becomes a
supervisor that starts that many workers (`python -m services.delivery` again, marked by
WORKER_ENV). Each worker is a complete delivery service with its own caches, listening on
the same port with SO_REUSEPORT, so the kernel spreads connections over them. The
supervisor:

- serves the workers' metrics, summed, on the metrics port (prometheus_client's
  multiprocess mode: each worker writes its samples to files in a directory made here);
- forwards SIGTERM/SIGINT, so every worker drains as a single process would, and ends
  when they have (status 0 if each did);
- starts a worker again when one dies unasked (after a short pause, so a worker that
  cannot start does not spin).

Workers die with the supervisor (PR_SET_PDEATHSIG), however it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from services.shared.logs import get_logger
from services.shared.sandbox import die_with_parent
from services.shared.settings import Settings

__all__ = ["WORKER_ENV", "become_worker", "is_worker", "supervise"]

log = get_logger(__name__)

# Set in a worker's environment: the supervisor's pid.
WORKER_ENV = "IMAGEPIPE_DELIVERY_WORKER_OF"
RESTART_DELAY_SECONDS = 1.0
# Past the workers' own drain (shutdown_grace_seconds), how long they get to exit.
EXIT_MARGIN_SECONDS = 10.0


def is_worker(environ: Mapping[str, str] = os.environ) -> bool:
    return WORKER_ENV in environ


def become_worker() -> None:
    """In a worker, first thing: die with the supervisor."""
    die_with_parent(int(os.environ[WORKER_ENV]))


def _reserve_port(host: str, port: int) -> tuple[int, socket.socket | None]:
    """Port 0 asks for any free port; every worker must get the same one. A socket bound
    (not listening) with SO_REUSEPORT holds it while the workers bind it too."""
    if port:
        return port, None
    holder = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, 0))
    return int(holder.getsockname()[1]), holder


class _Workers:
    def __init__(self, count: int, env: dict[str, str], metrics_dir: str) -> None:
        self._count = count
        self._env = env
        self._metrics_dir = metrics_dir
        self.running: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False

    async def start(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.delivery", env=self._env
        )
        self.running[process.pid] = process

    async def keep_running(self) -> None:
        """Until stopping: start the workers, and again any that ends."""
        for _ in range(self._count):
            await self.start()
        while not self.stopping:
            waits = {asyncio.create_task(p.wait()): pid for pid, p in self.running.items()}
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
            for task in done:
                pid = waits[task]
                self._ended(pid)
                if not self.stopping:
                    log.error(
                        "delivery worker ended unasked; starting another",
                        extra={"pid": pid, "status": task.result()},
                    )
                    await asyncio.sleep(RESTART_DELAY_SECONDS)
                    await self.start()

    def _ended(self, pid: int) -> None:
        self.running.pop(pid, None)
        mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]

    async def stop(self, timeout: float) -> bool:
        """SIGTERM to every worker, SIGKILL to any still there after `timeout`; True
        when each ended cleanly."""
        self.stopping = True
        processes = list(self.running.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            statuses = await asyncio.wait_for(
                asyncio.gather(*(p.wait() for p in processes)), timeout
            )
        except TimeoutError:
            for process in processes:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await asyncio.gather(*(p.wait() for p in processes))
            return False
        # Ended by the SIGTERM itself: a worker still starting, with nothing in flight.
        return all(status in (0, -signal.SIGTERM) for status in statuses)


async def supervise(settings: Settings, count: int) -> None:
    """Run `count` workers on the delivery port until SIGTERM/SIGINT."""
    metrics_dir = tempfile.mkdtemp(prefix="imagepipe-delivery-metrics-")
    port, holder = _reserve_port(settings.bind_host, settings.delivery_port)
    env = dict(os.environ) | {
        WORKER_ENV: str(os.getpid()),
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "IMAGEPIPE_DELIVERY_PORT": str(port),
    }
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    if settings.delivery_metrics_port:
        start_http_server(
            settings.delivery_metrics_port, addr=settings.bind_host, registry=registry
        )
    workers = _Workers(count, env, metrics_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "delivery supervisor running %d workers",
        count,
        extra={"address": f"{settings.bind_host}:{port}", "workers": count},
    )
    keeper = asyncio.create_task(workers.keep_running())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([keeper, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        workers.stopping = True
        for task in (keeper, stopped):
            task.cancel()
        await asyncio.gather(keeper, stopped, return_exceptions=True)
        clean = await workers.stop(settings.shutdown_grace_seconds + EXIT_MARGIN_SECONDS)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if holder is not None:
            holder.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if not clean:
        raise SystemExit(1)
