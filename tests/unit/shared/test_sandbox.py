"""The decoder sandbox: a runaway or crashing job costs only its own worker."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from services.shared.errors import InvalidImage
from services.shared.sandbox import DecodePool


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def _pid() -> int:
    return os.getpid()


async def test_a_timeout_kills_only_that_job_and_the_slot_recovers() -> None:
    pool = DecodePool(2, memory_limit_bytes=0, timeout=1.0)
    try:
        slow = asyncio.create_task(pool.run(_sleep, 30))
        quick = asyncio.create_task(pool.run(_sleep, 0.2))
        assert await quick == "slept"
        with pytest.raises(InvalidImage) as refused:
            await slow
        assert refused.value.reason == "IMAGE_DECODE_TIMEOUT"
        assert await pool.run(_sleep, 0) == "slept"
    finally:
        pool.close()


async def test_a_crash_is_refused_and_the_worker_replaced() -> None:
    pool = DecodePool(1, memory_limit_bytes=0, timeout=30)
    try:
        before = await pool.run(_pid)
        with pytest.raises(InvalidImage) as refused:
            await pool.run(_crash)
        assert refused.value.reason == "IMAGE_DECODER_CRASHED"
        assert await pool.run(_pid) != before
    finally:
        pool.close()


async def test_the_memory_limit_turns_a_huge_allocation_into_a_refusal() -> None:
    pool = DecodePool(1, memory_limit_bytes=512 * 1024 * 1024, timeout=30)
    try:
        assert await pool.run(_allocate, 64) == 64 * 1024 * 1024
        with pytest.raises(InvalidImage) as refused:
            await pool.run(_allocate, 2048)
        assert refused.value.reason in ("IMAGE_TOO_LARGE", "IMAGE_DECODER_CRASHED")
        assert await pool.run(_allocate, 8) == 8 * 1024 * 1024
    finally:
        pool.close()
