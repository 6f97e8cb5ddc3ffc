"""Services start on their own ports, report health, and stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import time

import pytest

from devstack import SERVICES, Stack


@pytest.mark.parametrize("name", SERVICES)
def test_sigterm_stops_a_service_gracefully(name: str, stack: Stack) -> None:
    extra = stack.start_service(name, instance="sigterm")
    try:
        extra.wait_serving()
        started = time.monotonic()
        extra.signal(signal.SIGTERM)
        assert extra.process is not None
        code = extra.process.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        extra.stop()
    assert code == 0, extra.tail()
    assert elapsed < 15
    events = [
        json.loads(line)["event"]
        for line in extra.log_file.read_text().splitlines()
        if line.startswith("{")
    ]
    assert f"{name} shutting down" in events
    assert events[-1] == f"{name} stopped"
