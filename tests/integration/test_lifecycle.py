"""Services start on their own ports, report health, and stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal

import pytest

from devstack import SERVICES, Stack


@pytest.mark.parametrize("name", SERVICES)
def test_sigterm_stops_a_service_gracefully(name: str, stack: Stack) -> None:
    extra = stack.start_service(name, instance="sigterm")
    try:
        extra.wait_serving()
        extra.signal(signal.SIGTERM)
        assert extra.process is not None
        # A hang guard, not a timing claim: bench/timings.py reports how long it takes.
        code = extra.process.wait(timeout=60)
    finally:
        extra.stop()
    assert code == 0, extra.tail()
    events = [
        json.loads(line)["event"]
        for line in extra.log_file.read_text().splitlines()
        if line.startswith("{")
    ]
    assert f"{name} shutting down" in events
    assert events[-1] == f"{name} stopped"
