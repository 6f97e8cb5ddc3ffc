"""Running image decoders where a hostile file cannot hurt the service.

Each job runs in a worker process of its own slot, with an address-space limit.
A job that overruns its time is killed with its worker; a worker that crashes
(segfault, out of memory) takes only its own job down. Either way that one slot
gets a fresh worker and the caller gets a clear refusal; the other jobs and the
service carry on.

A slot is handed to the next caller only once its worker is idle: when a caller is
cancelled (client gone, deadline) while its job runs, the slot stays out of the pool
until that job ends, within the job's own time limit.

Workers die with the process that started them, however it dies (see
`die_with_parent`): a SIGKILLed service leaves no decoders behind, and with them gone
multiprocessing's resource tracker sees its pipe close and exits too.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from PIL import _imaging as pillow_core  # PIL.Image.core, where PILLOW_BLOCKS_MAX lands
from prometheus_client import Counter

from services.shared.errors import InvalidImage, Unavailable
from services.shared.imaging.decode import register_decoders
from services.shared.logs import get_logger

__all__ = ["DecodePool", "die_with_parent", "prepare_worker"]

log = get_logger(__name__)

_R = TypeVar("_R")

WORKERS_REPLACED = Counter(
    "imagepipe_decoder_workers_replaced_total",
    "Decoder worker processes killed or crashed, and replaced.",
    ["why"],
)
# A worker is recycled after this many jobs, so slow leaks in codecs stay bounded.
JOBS_PER_WORKER = 500
# Longest a new worker may take to start (imports; slow on a busy machine).
WORKER_START_SECONDS = 120.0


# Freed image blocks Pillow keeps for the next image instead of handing them back to
# the kernel: every job allocates the same few large buffers, and taking fresh pages
# for them (faults, zeroing) cost about a tenth of a render (bench/render.py). The
# cache only ever holds blocks this worker had in use at once, so it stays within
# the worker's memory limit.
PILLOW_BLOCKS_CACHED = 64


# prctl(2) option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
# How often a worker checks its parent where the kernel cannot tell it.
PARENT_CHECK_SECONDS = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this process when `parent_pid` (the service that started it) is gone.

    On Linux the kernel sends SIGKILL at the parent's death (PR_SET_PDEATHSIG). It fires
    when the *thread* that forked this process ends, so workers must be started from a
    thread that lives as long as the pool: the one that owns it (the service's event
    loop builds the pool and replaces its workers) or the executor's manager thread
    (which refills the pool and lives until it is shut down). A parent that died before
    the call is caught by the ppid check; where prctl is missing, a daemon thread
    watches the parent pid instead.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            _watch_parent(parent_pid)
    else:
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def prepare_worker(max_bytes: int, parent_pid: int | None = None) -> None:
    """Set up a process that decodes images: death with its parent (when given), memory
    limit (0: none), Pillow's block cache, the allowed decoders."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    if max_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    pillow_core.set_blocks_max(PILLOW_BLOCKS_CACHED)
    register_decoders()


def _ready() -> None:
    """A first job that only makes the worker start."""


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a future's error as seen: its only reader may have gone."""
    if not future.cancelled():
        future.exception()


class _Slot:
    """One worker process, replaced whole when it must die."""

    def __init__(self, memory_limit: int) -> None:
        self._memory_limit = memory_limit
        self.ready: Future[None]
        self.executor = self._start()

    async def started(self) -> None:
        """Return once the worker runs; Unavailable if it cannot start."""
        if not self.ready.done():
            # asyncio.wait neither cancels what it waits for (a caller that gives up
            # must not cancel the start for the next one) nor raises its error.
            waiter = asyncio.wrap_future(self.ready)
            waiter.add_done_callback(_retrieved)
            await asyncio.wait({waiter}, timeout=WORKER_START_SECONDS)
        if self.ready.cancelled():
            raise Unavailable("the decoder pool is shutting down")
        if not self.ready.done() or self.ready.exception() is not None:
            self.replace("did not start")
            raise Unavailable("a decoder worker could not start; try again")

    def _start(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            1,
            # spawn, not fork: the parent runs gRPC threads that must not be forked.
            mp_context=multiprocessing.get_context("spawn"),
            initializer=prepare_worker,
            initargs=(self._memory_limit, os.getpid()),
            max_tasks_per_child=JOBS_PER_WORKER,
        )
        # Start the worker now rather than with the first job; jobs wait for this
        # before their time limit starts, which is the job's, not the worker's start-up.
        self.ready = executor.submit(_ready)
        return executor

    def replace(self, why: str) -> None:
        WORKERS_REPLACED.labels(why).inc()
        log.warning("replacing a decoder worker: %s", why)
        broken = self.executor
        self.executor = self._start()
        for process in list((getattr(broken, "_processes", None) or {}).values()):
            process.kill()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class DecodePool:
    def __init__(self, workers: int, *, memory_limit_bytes: int, timeout: float) -> None:
        self._timeout = timeout
        self._slots = [_Slot(memory_limit_bytes) for _ in range(workers)]
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._slots:
            self._free.put_nowait(slot)
        # Slots whose caller left while the worker still runs its job.
        self._settling: set[asyncio.Task[None]] = set()

    async def run(self, fn: Callable[..., _R], *args: object) -> _R:
        slot = await self._free.get()
        release = True
        try:
            await slot.started()
            deadline = asyncio.get_running_loop().time() + self._timeout
            job: Future[_R] = slot.executor.submit(fn, *args)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(job), self._timeout)
            except asyncio.CancelledError:
                # A job the worker has started cannot be taken back: until it ends the
                # worker is busy, and the next caller's job would wait behind it and
                # overrun its own time. Keep the slot out of the pool until then.
                if not job.cancel():
                    release = False
                    self._settle(slot, job, deadline)
                raise
        except TimeoutError:
            slot.replace("timeout")
            raise InvalidImage(
                f"image took longer than {self._timeout:g} s to decode",
                reason="IMAGE_DECODE_TIMEOUT",
            ) from None
        except BrokenProcessPool:
            slot.replace("crash")
            raise InvalidImage(
                "the image crashed the decoder "
                "(corrupt data, or it needs more memory than allowed)",
                reason="IMAGE_DECODER_CRASHED",
            ) from None
        except MemoryError:
            raise InvalidImage(
                "decoding the image needs more memory than allowed", reason="IMAGE_TOO_LARGE"
            ) from None
        except RuntimeError as error:
            if "shutdown" in str(error):
                raise Unavailable("the decoder pool is shutting down") from None
            raise
        finally:
            if release:
                self._free.put_nowait(slot)

    def _settle(self, slot: _Slot, job: Future[Any], deadline: float) -> None:
        """Return `slot` once its abandoned job ends; past the job's time limit, replace
        the worker. Waiting rather than replacing at once: a cancelled decode is cheaper
        to finish than a new worker is to start, so cancelling uploads in a loop costs
        the service no more than the uploads themselves would."""

        async def settle() -> None:
            try:
                remaining = deadline - asyncio.get_running_loop().time()
                await asyncio.wait_for(asyncio.wrap_future(job), max(remaining, 0))
            except TimeoutError:
                slot.replace("timeout")
            except BrokenProcessPool:
                slot.replace("crash")
            except Exception:  # the job's own failure: nobody is waiting for its answer
                pass
            finally:
                self._free.put_nowait(slot)

        task = asyncio.get_running_loop().create_task(settle())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def close(self) -> None:
        for task in self._settling:
            task.cancel()
        for slot in self._slots:
            slot.close()
