"""`make run` / `make stop` (devstack.local) on a stack of their own, on free ports."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import ALL_SERVICES, free_port, session_processes
from devstack.local import LocalStack, destroy
from services.shared.healthcheck import check as health_status


@pytest.fixture
def local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    for name in ALL_SERVICES:
        monkeypatch.setenv(f"IMAGEPIPE_{name.upper()}_PORT", str(port := free_port()))
        monkeypatch.setenv(f"IMAGEPIPE_{name.upper()}_METRICS_PORT", str(free_port()))
        if name == "catalog":
            monkeypatch.setenv("IMAGEPIPE_CATALOG_ADDR", f"127.0.0.1:{port}")
        if name == "delivery":
            monkeypatch.setenv("IMAGEPIPE_DELIVERY_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("IMAGEPIPE_S3_ENDPOINT", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("IMAGEPIPE_HEALTH_INTERVAL_SECONDS", "0.5")
    stack = LocalStack(tmp_path)
    try:
        yield stack
    finally:
        destroy(stack)


def _wait_gone(session: int) -> None:
    deadline = time.monotonic() + 60
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_processes(session) == []


def _pids(stack: LocalStack) -> dict[str, int | None]:
    return {component.name: component.pid() for component in stack.components}


def test_run_starts_only_what_is_not_running_and_stop_leaves_nothing(
    local_stack: LocalStack,
) -> None:
    assert local_stack.up() == "started"
    before = _pids(local_stack)
    assert local_stack.up() == "reused"
    assert _pids(local_stack) == before

    renderer = before["renderer"]
    assert renderer is not None
    os.kill(renderer, signal.SIGKILL)
    _wait_gone(renderer)

    how = local_stack.up()

    # The four that were running kept running: only the dead one was started.
    after = _pids(local_stack)
    assert {k: v for k, v in after.items() if k != "renderer"} == {
        k: v for k, v in before.items() if k != "renderer"
    }
    assert after["renderer"] != renderer
    assert how.startswith("started renderer")
    settings = local_stack.settings()
    assert health_status(f"127.0.0.1:{settings.renderer_port}", timeout=5) == "SERVING"

    sessions = [pid for pid in after.values() if pid is not None]
    assert len(sessions) == len(local_stack.components)
    local_stack.stop()
    assert local_stack.running() == []
    assert [pid for session in sessions for pid in session_processes(session)] == []
