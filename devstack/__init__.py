"""Run the real imagepipe stack on this machine: for `make run`, tests and benchmarks.

A Stack owns what it starts and removes it again:
- an S3 server (`rclone serve s3`, data on disk) on a free port, with its bucket;
- a PostgreSQL database (created, migrated, dropped);
- a RabbitMQ name prefix (its queues and exchanges are deleted at the end);
- the services as subprocesses on free ports, each logging to its own file: the four
  gRPC services (SERVICES) and delivery, the HTTP one (HTTP_SERVICES).

PostgreSQL and RabbitMQ themselves must already run; `require_servers` says clearly
which one is missing. Only the catalog talks to PostgreSQL from Python (its `migrate`
command sets a stack's database up); creating nothing else, this harness only checks
the server and drops databases, with the server's own client, `psql`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from minio import Minio

from devstack.ports import PORT_LOCK_DIR, free_port, port_in, release_port
from devstack.ports import _held as _held  # the reservations, for tests to look at
from services.shared.broker import Topology
from services.shared.healthcheck import check as health_status

__all__ = [
    "ALL_SERVICES",
    "HTTP_SERVICES",
    "PORT_LOCK_DIR",
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
    "migrate_database",
    "port_in",
    "release_port",
    "require_servers",
    "scrape_metric",
    "service_ready",
    "session_processes",
    "unique_jpeg",
]

SERVICES = ("catalog", "ingest", "renderer", "quality")  # gRPC, health by grpc.health.v1
HTTP_SERVICES = {"delivery": "/readyz"}  # HTTP, ready while GET of this path is 200
ALL_SERVICES = (*SERVICES, *HTTP_SERVICES)
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


def _tool(name: str) -> str:
    """A console script installed in this interpreter's environment, or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ServerMissing(f"`{name}` is not installed (pip install the dev extras: make install)")
    return found


def _psql(url: str, sql: str) -> list[str]:
    """The command that runs `sql` on the database `url` names, failing on any error."""
    psql = shutil.which("psql")
    if not psql:
        raise ServerMissing(
            "`psql` is not installed: install PostgreSQL's client (scripts/ensure-servers.sh "
            "installs PostgreSQL with it)"
        )
    return [psql, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", url, "--command", sql]


_PSQL_ENV = {**os.environ, "PGCONNECT_TIMEOUT": "5"}


def require_servers(pg_url: str, amqp_url: str) -> None:
    """Raise ServerMissing naming the server that does not answer."""
    checked = subprocess.run(
        _psql(pg_url, "SELECT 1"),
        env=_PSQL_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if checked.returncode != 0:
        raise ServerMissing(
            f"PostgreSQL is not reachable at {_safe(pg_url)} ({checked.stderr.strip()}); start "
            "it, e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )

    async def check() -> None:
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


def migrate_database(env: Mapping[str, str]) -> None:
    """Create and migrate the database IMAGEPIPE_DATABASE_URL in `env` names, with the
    catalog's own `migrate` command."""
    result = subprocess.run(
        [sys.executable, "-m", "services.catalog", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise ServerMissing(f"migration failed:\n{result.stdout}{result.stderr}")


async def drop_database(admin_url: str, name: str) -> None:
    """Drop a database, disconnecting whoever still uses it."""
    quoted = '"' + name.replace('"', '""') + '"'
    process = await asyncio.create_subprocess_exec(
        *_psql(admin_url, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
        env=_PSQL_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, error = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"could not drop database {name}: {error.decode().strip()}")


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


def service_ready(name: str, port: int, timeout: float = 1) -> bool:
    """A gRPC service reports SERVING; an HTTP service answers 200 on its readiness path."""
    path = HTTP_SERVICES.get(name)
    if path is None:
        return health_status(f"127.0.0.1:{port}", timeout=timeout) == "SERVING"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


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
            if service_ready(self.name, self.port):
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
        self.key_pepper = secrets.token_hex(16)
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
        self.ports = {name: free_port() for name in SERVICES}  # gRPC ports
        self.http_ports = {name: free_port() for name in HTTP_SERVICES}
        self.metrics_ports = {name: free_port() for name in ALL_SERVICES}
        self.services: dict[str, ServiceProcess] = {}

    def port_of(self, service: str) -> int:
        """The port a service listens on, gRPC or HTTP."""
        return self.ports.get(service) or self.http_ports[service]

    @property
    def delivery_url(self) -> str:
        """Where browsers reach delivery: the base of every delivery URL."""
        return f"http://127.0.0.1:{self.http_ports['delivery']}"

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
            IMAGEPIPE_KEY_PEPPER=self.key_pepper,
            IMAGEPIPE_CATALOG_ADDR=f"127.0.0.1:{self.ports['catalog']}",
            IMAGEPIPE_HEALTH_INTERVAL_SECONDS="0.5",
            IMAGEPIPE_DELIVERY_PUBLIC_URL=self.delivery_url,
            # Short, so tests see a delete or a revocation take effect within seconds.
            IMAGEPIPE_DELIVERY_LOOKUP_TTL_SECONDS="2",
        )
        for name in ALL_SERVICES:
            env[f"IMAGEPIPE_{name.upper()}_PORT"] = str(self.port_of(name))
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
        migrate_database(self.env())
        for name in ALL_SERVICES:
            self.services[name] = self.start_service(name)
        for service in self.services.values():
            service.wait_serving()

    def start_service(
        self, name: str, *, instance: str = "", **env_overrides: str
    ) -> ServiceProcess:
        """Start one service process (another renderer, a restarted one, ...)."""
        port = self.port_of(name)
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
