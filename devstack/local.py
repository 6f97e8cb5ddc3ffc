"""The long-running local stack behind `make run` / `make stop`.

Unlike the per-test Stack, this one keeps its state between runs under `var/`:

    var/stack.env     generated once: secrets (admin key, internal token, S3 keys, pepper)
                      and this checkout's database and RabbitMQ prefix
    var/demo.env      IMAGEPIPE_API_KEY=... of the demo tenant
    var/s3/           the S3 server's data
    var/log/*.log     one log per process
    var/run/*.pid     one pid per process we started; `stop` signals exactly these

It uses the default ports (gRPC 50051-50054, metrics 9101-9104, S3 9000), all
overridable with the usual IMAGEPIPE_* variables.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devstack import (
    SERVICES,
    S3Server,
    ServerMissing,
    ServiceProcess,
    delete_broker_names,
    drop_database,
    require_servers,
)
from services.shared.healthcheck import check as health_status
from services.shared.settings import Settings

__all__ = ["LocalStack", "destroy"]

S3_PROCESS = "s3"


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _write_env_file(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)


def _alive(pid: int, marker: str) -> bool:
    """True when `pid` runs and its command line mentions `marker` (no reused pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Component:
    name: str
    marker: str  # what its command line contains
    pid_file: Path

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and _alive(pid, self.marker)


class LocalStack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.var = root / "var"
        self.log_dir = self.var / "log"
        self.run_dir = self.var / "run"
        self.secrets_file = self.var / "stack.env"
        self.demo_file = self.var / "demo.env"
        self.components = [
            Component(S3_PROCESS, "serve s3", self.run_dir / "s3.pid"),
            *(Component(n, f"services.{n}", self.run_dir / f"{n}.pid") for n in SERVICES),
        ]

    # Configuration ------------------------------------------------------------------

    def _secrets(self) -> dict[str, str]:
        stored = _read_env_file(self.secrets_file)
        # A database and broker prefix of its own: the catalog must match this
        # checkout's var/s3, whatever other checkouts on the machine do.
        name = f"imagepipe_{secrets.token_hex(3)}"
        wanted: dict[str, Callable[[], str]] = {
            "IMAGEPIPE_DATABASE_URL": lambda: f"postgresql://postgres@127.0.0.1:5432/{name}",
            "IMAGEPIPE_AMQP_PREFIX": lambda: name,
            "IMAGEPIPE_ADMIN_KEY": lambda: secrets.token_hex(24),
            "IMAGEPIPE_INTERNAL_TOKEN": lambda: secrets.token_hex(24),
            "IMAGEPIPE_KEY_PEPPER": lambda: secrets.token_hex(16),
            "IMAGEPIPE_S3_ACCESS_KEY": lambda: f"imagepipe{secrets.token_hex(6)}",
            "IMAGEPIPE_S3_SECRET_KEY": lambda: secrets.token_hex(20),
        }
        missing = {k: make() for k, make in wanted.items() if k not in stored}
        if missing:
            self.var.mkdir(parents=True, exist_ok=True)
            stored |= missing
            _write_env_file(self.secrets_file, stored)
        return stored

    def env(self) -> dict[str, str]:
        """The services' environment: the caller's IMAGEPIPE_* win over var/stack.env."""
        env = dict(os.environ)
        for key, value in self._secrets().items():
            env.setdefault(key, value)
        return env

    def settings(self) -> Settings:
        env = self.env()
        return Settings.model_validate(
            {
                k.removeprefix("IMAGEPIPE_").lower(): v
                for k, v in env.items()
                if k.startswith("IMAGEPIPE_")
            }
        )

    # Life cycle ---------------------------------------------------------------------

    def running(self) -> list[str]:
        return [c.name for c in self.components if c.running()]

    def healthy(self) -> bool:
        settings = self.settings()
        ports = {
            "ingest": settings.ingest_port,
            "catalog": settings.catalog_port,
            "renderer": settings.renderer_port,
            "quality": settings.quality_port,
        }
        return all(
            health_status(f"127.0.0.1:{port}", timeout=2) == "SERVING" for port in ports.values()
        )

    def up(self) -> str:
        """Start (or reuse) the stack; returns 'reused' or 'started'."""
        if len(self.running()) == len(self.components) and self.healthy():
            return "reused"
        self.stop()
        settings = self.settings()
        require_servers(_admin_dsn(settings), settings.amqp_url.get_secret_value())
        self._check_ports_free(settings)
        for directory in (self.log_dir, self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        env = self.env()
        self._start_s3(settings)
        self._migrate(env)
        processes = []
        for name in SERVICES:
            process = ServiceProcess(
                name=name,
                env=env,
                log_file=self.log_dir / f"{name}.log",
                port=_port(settings, name),
            )
            process.start()
            assert process.process is not None
            (self.run_dir / f"{name}.pid").write_text(str(process.process.pid))
            processes.append(process)
        for process in processes:
            process.wait_serving(timeout=90)
        return "started"

    def _check_ports_free(self, settings: Settings) -> None:
        port = settings.s3_endpoint.rpartition(":")[2]
        ports = [int(port)] + [_port(settings, n) for n in SERVICES]
        taken = [p for p in ports if _port_in_use(p)]
        if taken:
            raise ServerMissing(
                f"ports {taken} are in use by something this stack did not start; "
                "stop it or set the IMAGEPIPE_*_PORT / IMAGEPIPE_S3_ENDPOINT variables"
            )

    def _start_s3(self, settings: Settings) -> None:
        port = int(settings.s3_endpoint.rpartition(":")[2])
        server = S3Server(
            self.var / "s3",
            self.log_dir / "s3.log",
            port=port,
            access=settings.s3_access_key.get_secret_value(),
            secret=settings.s3_secret_key.get_secret_value(),
        )
        server.start()
        assert server.pid is not None
        (self.run_dir / "s3.pid").write_text(str(server.pid))

    def _migrate(self, env: dict[str, str]) -> None:
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

    def stop(self, timeout: float = 20) -> list[str]:
        """Signal exactly the processes we started; returns the names stopped."""
        stopped = []
        for component in reversed(self.components):
            pid = component.pid()
            if pid is not None and _alive(pid, component.marker):
                os.kill(pid, signal.SIGTERM)
                stopped.append((component, pid))
        deadline = time.monotonic() + timeout
        for component, pid in stopped:
            while _alive(pid, component.marker) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid, component.marker):
                os.kill(pid, signal.SIGKILL)
            component.pid_file.unlink(missing_ok=True)
        for component in self.components:
            if not component.running():
                component.pid_file.unlink(missing_ok=True)
        return [component.name for component, _ in stopped]


def _port(settings: Settings, name: str) -> int:
    port: int = getattr(settings, f"{name}_port")
    return port


def _admin_dsn(settings: Settings) -> str:
    return urlunsplit(urlsplit(settings.database_url.get_secret_value())._replace(path="/postgres"))


def destroy(stack: LocalStack) -> list[str]:
    """Stop the stack and drop its database and broker names (var/ is left to the caller)."""
    stack.stop()
    if not stack.secrets_file.exists():
        return []
    settings = stack.settings()
    database = urlsplit(settings.database_url.get_secret_value()).path.lstrip("/")
    asyncio.run(drop_database(_admin_dsn(settings), database))
    asyncio.run(delete_broker_names(settings.amqp_url.get_secret_value(), settings.amqp_prefix))
    return [f"database {database}", f"queues {settings.amqp_prefix}.*"]
