"""`make stop` (devstack.local): nothing the stack started may outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from devstack import kill_session, session_processes
from devstack.local import LocalStack

# Stands for a service: its command line names it, and it starts a process of its own
# (as a service starts decoder workers) that does not end with it.
SERVICE = textwrap.dedent(
    """
    import os, sys, time
    child = os.fork()
    if child == 0:
        time.sleep(600)
        os._exit(0)
    print(child, flush=True)
    time.sleep(600)
    """
)


def test_stop_kills_what_a_sigkilled_service_left_behind(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    stack.run_dir.mkdir(parents=True)
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE, "services.renderer"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert service.stdout is not None
        with service.stdout:
            child = int(service.stdout.readline())
        (stack.run_dir / "renderer.pid").write_text(str(service.pid))
        os.kill(service.pid, signal.SIGKILL)
        service.wait(30)
        assert child in session_processes(service.pid)

        stopped = stack.stop()

        assert session_processes(service.pid) == []
        assert [name.split()[0] for name in stopped] == ["renderer"]
        assert not (stack.run_dir / "renderer.pid").exists()
    finally:
        kill_session(service.pid)
        if service.poll() is None:
            service.kill()
            service.wait()


def test_stop_leaves_alone_a_process_that_reused_a_recorded_pid(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    stack.run_dir.mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (stack.run_dir / "renderer.pid").write_text(str(stranger.pid))
        assert stack.stop() == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
