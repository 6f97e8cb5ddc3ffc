"""Ports for the stack's servers: reserved machine-wide before they are probed, so two
sessions on one machine never hand out the same port, and a port someone already
listens on is never handed out."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

import devstack
from devstack import free_port, port_in, release_port

HOLD = (
    "import sys, devstack\n"
    "port = int(sys.argv[1])\n"
    "assert devstack.port_in(port, port) == port\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


def _a_port() -> int:
    port = free_port()
    release_port(port)
    return port


def test_a_port_held_by_another_session_is_not_handed_out() -> None:
    port = _a_port()
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with other:
        try:
            assert other.stdout is not None and other.stdout.readline() == "held\n"
            with pytest.raises(RuntimeError, match="no free loopback port"):
                port_in(port, port, attempts=20)
        finally:
            assert other.stdin is not None
            other.stdin.close()
            other.wait(30)
    # The holder's end releases its reservation, however it ended.
    assert port_in(port, port) == port
    release_port(port)


def test_a_port_someone_listens_on_is_skipped_and_not_kept() -> None:
    port = _a_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with pytest.raises(RuntimeError):
            port_in(port, port, attempts=5)
        assert port not in devstack._held


def test_one_process_never_hands_out_a_port_twice() -> None:
    port = free_port()
    try:
        with pytest.raises(RuntimeError):
            port_in(port, port, attempts=5)
    finally:
        release_port(port)
