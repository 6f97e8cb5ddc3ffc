"""The decoder sandbox: a runaway or crashing job costs only its own worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

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
    pool = DecodePool(2, memory_limit_bytes=0, timeout=5.0)
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


def _sleep_announced(address: str, seconds: float) -> str:
    """Sleep, after telling the test (by connecting to `address`) that the job started."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(address)
    time.sleep(seconds)
    return "slept"


@contextlib.asynccontextmanager
async def _announcements(tmp_path: Path) -> AsyncIterator[tuple[str, asyncio.Event]]:
    started = asyncio.Event()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started.set()
        writer.close()

    address = str(tmp_path / "started.sock")
    server = await asyncio.start_unix_server(connected, address)
    async with server:
        yield address, started


async def test_a_job_after_a_cancelled_one_gets_an_idle_worker(tmp_path: Path) -> None:
    # The slow job's caller goes away while its worker runs it: the next job must not
    # queue behind it in that worker and be refused for a timeout of someone else's.
    pool = DecodePool(1, memory_limit_bytes=0, timeout=5.0)
    try:
        async with _announcements(tmp_path) as (address, started):
            slow = asyncio.create_task(pool.run(_sleep_announced, address, 600))
            await asyncio.wait_for(started.wait(), 60)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await pool.run(_sleep, 0) == "slept"
    finally:
        pool.close()


async def test_a_cancelled_job_that_ends_in_time_gives_its_worker_back(tmp_path: Path) -> None:
    pool = DecodePool(1, memory_limit_bytes=0, timeout=60)
    try:
        before = await pool.run(_pid)
        async with _announcements(tmp_path) as (address, started):
            short = asyncio.create_task(pool.run(_sleep_announced, address, 0.5))
            await asyncio.wait_for(started.wait(), 60)
        short.cancel()
        with pytest.raises(asyncio.CancelledError):
            await short
        # Not killed for being abandoned: the same warm worker takes the next job.
        assert await pool.run(_pid) == before
    finally:
        pool.close()
