"""Loopback ports for the stack's servers, reserved machine-wide before they are probed.

Every process on the machine that picks ports this way (every test session, bench and
`make run`) shares the reservations: two sessions never hand out the same port, and a
port someone already listens on is never handed out.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import tempfile
from pathlib import Path

__all__ = ["PORT_LOCK_DIR", "free_port", "port_in", "release_port"]

# Ports this process holds: each with the open lock file that reserves it.
_held: dict[int, int] = {}
# Shared by every process on the machine that picks ports this way (every test
# session, bench and `make run`): a port is reserved by an flock on its file, which
# the kernel releases when the holder dies, however it dies.
PORT_LOCK_DIR = Path(tempfile.gettempdir()) / "imagepipe-ports"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _reserve(port: int) -> bool:
    """Take the machine-wide reservation of `port`; False if another process holds it."""
    PORT_LOCK_DIR.mkdir(exist_ok=True)
    fd = os.open(PORT_LOCK_DIR / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held[port] = fd
    return True


def release_port(port: int) -> None:
    """Give back a reservation (it also ends with this process)."""
    fd = _held.pop(port, None)
    if fd is not None:
        os.close(fd)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_in(first: int, last: int, attempts: int = 200) -> int:
    """A port in [first, last] that this process now holds and nobody listens on.

    Choosing a port and the service binding it are seconds apart, and a listener can
    only bind a port once it is free: two sessions that chose the same port (each
    having seen it free) collide, and so does a service binding a port while another
    session's probe holds it for an instant ("Address already in use"). So a port is
    reserved first, machine-wide, and only then probed: a reserved port is never
    probed nor handed out by anyone else until its holder ends.
    """
    rng = secrets.SystemRandom()
    for _ in range(attempts):
        port = rng.randint(first, last)
        if port in _held or not _reserve(port):
            continue
        if _bindable(port):
            return port
        release_port(port)  # something outside these reservations listens there
    raise RuntimeError(f"no free loopback port in {first}-{last}")


def free_port() -> int:
    """A loopback port nobody listens on or holds, outside the kernel's ephemeral range.

    A port the kernel picked for `bind(0)` lies inside the range it also uses for the
    local end of outgoing connections, so between choosing it and the service binding
    it, a client socket of this very stack can take it. Ports below that range are
    only ever taken by an explicit bind, and each is reserved (see port_in).
    """
    low, high = _ephemeral_range()
    first, last = (20000, low - 1) if low > 21000 else (high + 1, 65535)
    return port_in(first, last)
