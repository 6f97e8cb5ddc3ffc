"""Running image decoders where a hostile file cannot hurt the service.

Decoding runs in worker processes with an address-space limit. A worker that
crashes (or blows its memory limit) breaks only its pool, which is replaced; the
caller gets a clear refusal instead of a dead service.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

from services.shared.errors import InvalidImage, Unavailable
from services.shared.imaging.decode import register_decoders
from services.shared.logs import get_logger

__all__ = ["DecodePool"]

log = get_logger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _limit_memory(max_bytes: int) -> None:
    if max_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    register_decoders()


class DecodePool:
    def __init__(self, workers: int, *, memory_limit_bytes: int, timeout: float) -> None:
        self._workers = workers
        self._memory_limit = memory_limit_bytes
        self._timeout = timeout
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._workers,
            # spawn, not fork: the parent runs gRPC threads that must not be forked.
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_limit_memory,
            initargs=(self._memory_limit,),
        )

    async def run(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            future = loop.run_in_executor(pool, fn, *args)
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            self._replace(pool, "decode timed out")
            raise InvalidImage(
                f"image took longer than {self._timeout:g} s to decode",
                reason="IMAGE_DECODE_TIMEOUT",
            ) from None
        except BrokenProcessPool:
            self._replace(pool, "decoder process died")
            raise InvalidImage(
                "the image crashed the decoder (corrupt data or out of memory)",
                reason="IMAGE_DECODER_CRASHED",
            ) from None
        except MemoryError:
            raise InvalidImage(
                "decoding the image needs more memory than allowed", reason="IMAGE_TOO_LARGE"
            ) from None
        except RuntimeError as error:
            if "shutdown" in str(error):
                raise Unavailable("decoder pool is shutting down") from None
            raise

    def _replace(self, broken: ProcessPoolExecutor, why: str) -> None:
        if broken is not self._pool:
            return  # another call already replaced it
        log.warning("replacing decoder pool: %s", why)
        self._pool = self._new_pool()
        for process in list(getattr(broken, "_processes", {}).values()):
            process.kill()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
