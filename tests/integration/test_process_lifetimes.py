"""Processes a service starts die with it, however it dies.

A service killed with SIGKILL runs no cleanup: its decoder workers (each holding a
decoder's memory) and multiprocessing's resource tracker used to live on under PID 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from devstack import Stack, kill_session, session_processes

# A service in miniature: a decode pool whose workers have all started, then idle.
POOL_OWNER = textwrap.dedent(
    """
    import asyncio, os
    from services.shared.sandbox import DecodePool

    async def main() -> None:
        pool = DecodePool(2, memory_limit_bytes=0, timeout=60)
        workers = await asyncio.gather(pool.run(os.getpid), pool.run(os.getpid))
        print(" ".join(map(str, workers)), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def _wait_until_gone(session: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_decoder_workers_and_their_tracker_die_with_a_sigkilled_owner(tmp_path: Path) -> None:
    errors = tmp_path / "stderr"
    with errors.open("wb") as stderr:
        owner = subprocess.Popen(
            [sys.executable, "-c", POOL_OWNER],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        assert owner.stdout is not None
        with owner.stdout:
            workers = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(workers) == 2, errors.read_text()
        started = session_processes(owner.pid)
        # The owner, its two workers and the resource tracker.
        assert set(workers) < set(started)
        assert len(started) >= 4

        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(30)

        left = _wait_until_gone(owner.pid, timeout=60)
        assert left == [], f"still running after their owner was killed: {_describe(left)}"
    finally:
        kill_session(owner.pid)
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_a_sigkilled_renderer_leaves_no_process_behind(stack: Stack) -> None:
    renderer = stack.start_service("renderer", instance="sigkilled")
    assert renderer.process is not None
    session = renderer.process.pid
    try:
        renderer.wait_serving()
        # Its decoder workers start with it (one per job it runs at once).
        deadline = time.monotonic() + 60
        while len(_workers(session)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_workers(session)) >= 2

        renderer.process.kill()
        renderer.process.wait(30)

        left = _wait_until_gone(session, timeout=60)
        assert left == [], f"still running after the renderer was killed: {_describe(left)}"
    finally:
        renderer.stop()


def _workers(session: int) -> list[str]:
    return [line for line in _describe(session_processes(session)) if "spawn_main" in line]


def _describe(pids: list[int]) -> list[str]:
    described = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode()
            described.append(f"{pid}: {command[:120]}")
        except OSError:
            described.append(str(pid))
    return described
