"""Run the real imagepipe stack on this machine: for `make run`, tests and benchmarks.

A Stack owns what it starts and removes it again:
- an S3 server (`rclone serve s3`, data on disk) on a free port, with its bucket;
- a PostgreSQL database (created, migrated, dropped);
- a RabbitMQ name prefix (its queues and exchanges are deleted at the end);
- the four services as subprocesses on free ports, each logging to its own file.

PostgreSQL and RabbitMQ themselves must already run; `require_servers` says clearly
which one is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
from minio import Minio

from services.catalog.db.migrate import apply_migrations, ensure_database
from services.shared.broker import Topology
from services.shared.healthcheck import check as health_status

__all__ = [
    "SERVICES",
    "S3Server",
    "ServerMissing",
    "ServiceProcess",
    "Stack",
    "StackConfig",
    "delete_broker_names",
    "drop_database",
    "free_port",
    "kill_session",
    "port_in",
    "release_port",
    "require_servers",
    "scrape_metric",
    "session_processes",
    "unique_jpeg",
]

SERVICES = ("catalog", "ingest", "renderer", "quality")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def scrape_metric(port: int, name: str) -> dict[str, float]:
    """Samples of one metric family from a service's /metrics, by label set."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+]+)$", line)
        if match:
            samples[match[1] or ""] = float(match[2])
    return samples


def unique_jpeg(jpeg: bytes, tag: str) -> bytes:
    """The same JPEG picture with a comment segment after SOI: other bytes, other SHA-256.

    For tests and benchmarks that need many distinct uploads of real photos.
    """
    payload = tag.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def session_processes(session: int) -> list[int]:
    """Pids of the live processes of a session (Linux /proc; zombies are not counted).

    Every process the stack starts leads a session of its own (start_new_session), and
    whatever it starts in turn (decoder workers, multiprocessing's resource tracker)
    stays in that session even when its parent dies and it is re-parented: the session
    is how everything a service left behind is found. The kernel keeps a session's id
    from being reused as a pid while any member lives.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        state, _ppid, _pgrp, sid = stat.rpartition(")")[2].split()[:4]
        if int(sid) == session and state != "Z":
            found.append(int(entry.name))
    return found


def kill_session(session: int, timeout: float = 10) -> list[int]:
    """SIGKILL every process of a session and wait until they are gone; returns those
    still there after `timeout` (none unless one is stuck in the kernel)."""
    deadline = time.monotonic() + timeout
    while (left := session_processes(session)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return session_processes(session)


class ServerMissing(RuntimeError):
    """A server the stack needs is not reachable."""


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


def _tool(name: str) -> str:
    """A console script installed in this interpreter's environment, or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ServerMissing(f"`{name}` is not installed (pip install the dev extras: make install)")
    return found


def require_servers(pg_url: str, amqp_url: str) -> None:
    """Raise ServerMissing naming the server that does not answer."""

    async def check() -> None:
        try:
            connection = await asyncpg.connect(pg_url, timeout=5)
            await connection.close()
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            raise ServerMissing(
                f"PostgreSQL is not reachable at {_safe(pg_url)} ({error}); start it, e.g. "
                "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
            ) from None
        try:
            amqp = await aio_pika.connect(amqp_url, timeout=5)
            await amqp.close()
        except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as error:
            raise ServerMissing(
                f"RabbitMQ is not reachable at {_safe(amqp_url)} ({error}); start it, e.g. "
                "`rabbitmq-server -detached`"
            ) from None

    asyncio.run(check())


def _safe(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port}"


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def drop_database(admin_url: str, name: str) -> None:
    """Drop a database, disconnecting whoever still uses it."""
    connection = await asyncpg.connect(admin_url)
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await connection.close()


async def delete_broker_names(amqp_url: str, prefix: str) -> None:
    """Delete the exchanges and queues of the render topology with this prefix."""
    topology = Topology(prefix=prefix, delivery_limit=1)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for queue in topology.queues:
            await channel.queue_delete(queue)
        for exchange in (topology.exchange, topology.dead_letter_exchange):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


class S3Server:
    """`rclone serve s3` over a directory, on loopback."""

    def __init__(self, data_dir: Path, log_file: Path, *, port: int, access: str, secret: str):
        self.data_dir = data_dir
        self.log_file = log_file
        self.port = port
        self.access = access
        self.secret = secret
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._process = self._spawn(log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerMissing(f"rclone serve s3 exited; see {self.log_file}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.1)
        raise ServerMissing(f"rclone serve s3 did not listen on {self.endpoint}")

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                _tool("rclone"),
                "serve",
                "s3",
                "--addr",
                self.endpoint,
                "--auth-key",
                f"{self.access},{self.secret}",
                "--config",
                "/dev/null",
                str(self.data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def client(self, region: str = "us-east-1") -> Minio:
        return Minio(self.endpoint, self.access, self.secret, secure=False, region=region)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        kill_session(self._process.pid)


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    log_file: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_file}\n{self.tail()}")
            if health_status(self.address, timeout=1) == "SERVING":
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not SERVING after {timeout:g} s\n{self.tail()}")

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (graceful), SIGKILL past `timeout`; then whatever the service left in
        its session (it may have been SIGKILLed before) is killed too."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        kill_session(self.process.pid)
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class StackConfig:
    """Where the stack puts things and which shared servers it uses."""

    work_dir: Path
    pg_url: str = DEFAULT_PG
    amqp_url: str = DEFAULT_AMQP
    name: str = field(default_factory=lambda: f"ipt{secrets.token_hex(4)}")
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, work_dir: Path, **kwargs: object) -> StackConfig:
        return cls(
            work_dir=work_dir,
            pg_url=os.environ.get("IMAGEPIPE_TEST_PG_URL", DEFAULT_PG),
            amqp_url=os.environ.get("IMAGEPIPE_TEST_AMQP_URL", DEFAULT_AMQP),
            **kwargs,  # type: ignore[arg-type]
        )


class Stack:
    """Everything one run needs, isolated from every other run on the machine."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.name = config.name
        self.admin_key = secrets.token_hex(24)
        self.internal_token = secrets.token_hex(24)
        self.database_url = _with_database(config.pg_url, self.name)
        self.bucket = self.name
        self.prefix = self.name
        self.log_dir = config.work_dir / "logs"
        self.s3 = S3Server(
            config.work_dir / "s3",
            self.log_dir / "s3.log",
            port=free_port(),
            access=f"ak{secrets.token_hex(8)}",
            secret=secrets.token_hex(20),
        )
        self.ports = {name: free_port() for name in SERVICES}
        self.metrics_ports = {name: free_port() for name in SERVICES}
        self.services: dict[str, ServiceProcess] = {}

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment every service process gets (plus per-call overrides)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
        env.update(
            IMAGEPIPE_DATABASE_URL=self.database_url,
            IMAGEPIPE_AMQP_URL=self.config.amqp_url,
            IMAGEPIPE_AMQP_PREFIX=self.prefix,
            IMAGEPIPE_S3_ENDPOINT=self.s3.endpoint,
            IMAGEPIPE_S3_ACCESS_KEY=self.s3.access,
            IMAGEPIPE_S3_SECRET_KEY=self.s3.secret,
            IMAGEPIPE_S3_BUCKET=self.bucket,
            IMAGEPIPE_ADMIN_KEY=self.admin_key,
            IMAGEPIPE_INTERNAL_TOKEN=self.internal_token,
            IMAGEPIPE_CATALOG_ADDR=f"127.0.0.1:{self.ports['catalog']}",
            IMAGEPIPE_HEALTH_INTERVAL_SECONDS="0.5",
        )
        for name in SERVICES:
            env[f"IMAGEPIPE_{name.upper()}_PORT"] = str(self.ports[name])
            env[f"IMAGEPIPE_{name.upper()}_METRICS_PORT"] = str(self.metrics_ports[name])
        env.update(self.config.extra_env)
        env.update(overrides)
        return env

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def start(self) -> None:
        require_servers(self.config.pg_url, self.config.amqp_url)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.s3.start()
        self.s3.client().make_bucket(self.bucket)
        asyncio.run(self._migrate())
        for name in SERVICES:
            self.services[name] = self.start_service(name)
        for service in self.services.values():
            service.wait_serving()

    def start_service(
        self, name: str, *, instance: str = "", **env_overrides: str
    ) -> ServiceProcess:
        """Start one service process (another renderer, a restarted one, ...)."""
        port = self.ports[name]
        if instance:
            port = free_port()
            env_overrides.setdefault(f"IMAGEPIPE_{name.upper()}_PORT", str(port))
            env_overrides.setdefault(f"IMAGEPIPE_{name.upper()}_METRICS_PORT", "0")
        service = ServiceProcess(
            name=name,
            env=self.env(**env_overrides),
            log_file=self.log_dir / f"{name}{'-' + instance if instance else ''}.log",
            port=port,
        )
        service.start()
        return service

    async def _migrate(self) -> None:
        await ensure_database(self.database_url)
        await apply_migrations(self.database_url)

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        self.s3.stop()

    def cleanup(self) -> None:
        """Drop what this run created on the shared servers (database, broker names)."""
        errors: list[str] = []
        try:
            asyncio.run(drop_database(self.config.pg_url, self.name))
        except Exception as error:
            errors.append(f"database: {error}")
        try:
            asyncio.run(delete_broker_names(self.config.amqp_url, self.prefix))
        except Exception as error:
            errors.append(f"rabbitmq: {error}")
        shutil.rmtree(self.s3.data_dir, ignore_errors=True)
        if errors:
            raise RuntimeError("cleanup incomplete: " + "; ".join(errors))

    @contextlib.contextmanager
    def running(self) -> Iterator[Stack]:
        try:
            self.start()
            yield self
        finally:
            self.stop()
            self.cleanup()
