"""Running image decoders where a hostile file cannot hurt the service.

Each job runs in a worker process of its own slot, with an address-space limit.
A job that overruns its time is killed with its worker; a worker that crashes
(segfault, out of memory) takes only its own job down. Either way that one slot
gets a fresh worker and the caller gets a clear refusal; the other jobs and the
service carry on.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from PIL import _imaging as pillow_core  # PIL.Image.core, where PILLOW_BLOCKS_MAX lands
from prometheus_client import Counter

from services.shared.errors import InvalidImage, Unavailable
from services.shared.imaging.decode import register_decoders
from services.shared.logs import get_logger

__all__ = ["DecodePool", "prepare_worker"]

log = get_logger(__name__)

_R = TypeVar("_R")

WORKERS_REPLACED = Counter(
    "imagepipe_decoder_workers_replaced_total",
    "Decoder worker processes killed or crashed, and replaced.",
    ["why"],
)
# A worker is recycled after this many jobs, so slow leaks in codecs stay bounded.
JOBS_PER_WORKER = 500


# Freed image blocks Pillow keeps for the next image instead of handing them back to
# the kernel: every job allocates the same few large buffers, and taking fresh pages
# for them (faults, zeroing) cost about a tenth of a render (bench/render.py). The
# cache only ever holds blocks this worker had in use at once, so it stays within
# the worker's memory limit.
PILLOW_BLOCKS_CACHED = 64


def prepare_worker(max_bytes: int) -> None:
    """Set up a process that decodes images: memory limit (0: none), Pillow's block
    cache, the allowed decoders."""
    if max_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    pillow_core.set_blocks_max(PILLOW_BLOCKS_CACHED)
    register_decoders()


class _Slot:
    """One worker process, replaced whole when it must die."""

    def __init__(self, memory_limit: int) -> None:
        self._memory_limit = memory_limit
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1,
            # spawn, not fork: the parent runs gRPC threads that must not be forked.
            mp_context=multiprocessing.get_context("spawn"),
            initializer=prepare_worker,
            initargs=(self._memory_limit,),
            max_tasks_per_child=JOBS_PER_WORKER,
        )

    def replace(self, why: str) -> None:
        WORKERS_REPLACED.labels(why).inc()
        log.warning("replacing a decoder worker: %s", why)
        broken = self.executor
        self.executor = self._start()
        for process in list(getattr(broken, "_processes", {}).values()):
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

    async def run(self, fn: Callable[..., _R], *args: object) -> _R:
        slot = await self._free.get()
        try:
            future = asyncio.get_running_loop().run_in_executor(slot.executor, fn, *args)
            return await asyncio.wait_for(future, self._timeout)
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
            self._free.put_nowait(slot)

    def close(self) -> None:
        for slot in self._slots:
            slot.close()
