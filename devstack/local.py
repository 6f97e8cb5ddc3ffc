"""The long-running local stack behind `make run` / `make stop`.

Unlike the per-test Stack, this one keeps its state between runs under `var/`:

    var/stack.env     generated once: secrets (admin key, internal token, S3 keys, pepper)
                      and this checkout's database and RabbitMQ prefix
    var/demo.env      IMAGEPIPE_API_KEY=... of the demo tenant
    var/s3/           the S3 server's data
    var/log/*.log     one log per process
    var/run/*.pid     one pid per process we started, each the leader of its own session;
                      `stop` signals exactly these, then kills whatever is left in their
                      sessions (decoder workers of a service that was SIGKILLed, ...)

It uses the default ports (gRPC 50051-50054, delivery's HTTP 8080, metrics 9101-9105,
S3 9000), all overridable with the usual IMAGEPIPE_* variables.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devstack import (
    ALL_SERVICES,
    S3Server,
    ServerMissing,
    ServiceProcess,
    delete_broker_names,
    drop_database,
    kill_session,
    migrate_database,
    require_servers,
    service_ready,
    session_processes,
)
from devstack.gallery import WEB_PRESETS_JSON
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


def _exists(pid: int) -> bool:
    """True when `pid` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


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

    def processes(self) -> list[int]:
        """Every live process of this component: the one we started and whatever it
        started, found by its session, even when it outlived a killed leader."""
        pid = self.pid()
        if pid is None or (_exists(pid) and not _alive(pid, self.marker)):
            # A live process under that pid that is not ours: the pid was reused, which
            # the kernel allows only once nothing of our session is left.
            return []
        return session_processes(pid)


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
            *(Component(n, f"services.{n}", self.run_dir / f"{n}.pid") for n in ALL_SERVICES),
        ]
        # Processes this object started (to reap them once they are stopped).
        self._children: list[subprocess.Popen[bytes]] = []

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
        # Delivery URLs the catalog signs point at the port delivery listens on.
        port = env.get("IMAGEPIPE_DELIVERY_PORT") or Settings.model_fields["delivery_port"].default
        env.setdefault("IMAGEPIPE_DELIVERY_PUBLIC_URL", f"http://127.0.0.1:{port}")
        # The gallery shows what a browser gets: small presets in AVIF, WebP and JPEG.
        env.setdefault("IMAGEPIPE_PRESETS", WEB_PRESETS_JSON)
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
        return all(service_ready(name, _port(settings, name), timeout=2) for name in ALL_SERVICES)

    def up(self) -> str:
        """Start what is not running, reuse what is; returns what was done.

        A component that is down is started alone: restarting the others would drop
        their in-flight work for nothing. One that runs but never becomes SERVING
        (stuck) is restarted too.
        """
        down = [c for c in self.components if not c.running()]
        if not down and self.healthy():
            return "reused"
        settings = self.settings()
        require_servers(_admin_dsn(settings), settings.amqp_url.get_secret_value())
        self._start(down, settings)
        # Once more for what died meanwhile or never became SERVING (stuck).
        if failed := self._wait_serving(settings, timeout=90):
            self._start(failed, settings)
            down += [c for c in failed if c not in down]
            if still := self._wait_serving(settings, timeout=90):
                names = ", ".join(c.name for c in still)
                raise ServerMissing(f"{names} not SERVING after a restart; see var/log/")
        if len(down) == len(self.components):
            return "started"
        return "started " + ", ".join(c.name for c in down) + " (the rest was running)"

    def _start(self, components: list[Component], settings: Settings) -> None:
        if not components:
            return
        # What a dead component left behind (decoder workers, ...) goes first.
        self._stop_components(components)
        names = {c.name for c in components}
        self._check_ports_free(settings, names)
        for directory in (self.log_dir, self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        env = self.env()
        if S3_PROCESS in names:
            self._start_s3(settings)
        if "catalog" in names:
            migrate_database(env)
        for name in ALL_SERVICES:
            if name not in names:
                continue
            process = ServiceProcess(
                name=name,
                env=env,
                log_file=self.log_dir / f"{name}.log",
                port=_port(settings, name),
            )
            process.start()
            assert process.process is not None
            self._children.append(process.process)
            (self.run_dir / f"{name}.pid").write_text(str(process.process.pid))

    def _wait_serving(self, settings: Settings, timeout: float) -> list[Component]:
        """Wait until every service answers SERVING; returns those that exited or were
        still not SERVING after `timeout`."""
        deadline = time.monotonic() + timeout
        waiting = [c for c in self.components if c.name in ALL_SERVICES]
        exited: list[Component] = []
        while waiting and time.monotonic() < deadline:
            waiting = [c for c in waiting if not service_ready(c.name, _port(settings, c.name))]
            # By pid alone: a process just started runs under our command line only
            # once it has executed Python.
            exited += [c for c in waiting if (pid := c.pid()) is None or not _exists(pid)]
            waiting = [c for c in waiting if c not in exited]
            if waiting:
                time.sleep(0.2)
        return exited + waiting

    def _check_ports_free(self, settings: Settings, names: set[str]) -> None:
        ports = [_port(settings, n) for n in ALL_SERVICES if n in names]
        if S3_PROCESS in names:
            ports.append(int(settings.s3_endpoint.rpartition(":")[2]))
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
        if server.process is not None:
            self._children.append(server.process)
        (self.run_dir / "s3.pid").write_text(str(server.pid))

    def stop(self, timeout: float = 20) -> list[str]:
        """Stop everything the stack started; returns what was stopped."""
        return self._stop_components(self.components, timeout)

    def _stop_components(self, components: list[Component], timeout: float = 20) -> list[str]:
        """SIGTERM the processes we started (a graceful shutdown), SIGKILL those that
        outlast `timeout`, then kill whatever is left in their sessions: the workers and
        resource tracker of a service that was SIGKILLed earlier, which no pid file
        names. Returns a description of each component stopped."""
        signalled = []
        for component in reversed(components):
            pid = component.pid()
            if pid is not None and _alive(pid, component.marker):
                os.kill(pid, signal.SIGTERM)
                signalled.append((component, pid))
        deadline = time.monotonic() + timeout
        for component, pid in signalled:
            while _alive(pid, component.marker) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid, component.marker):
                os.kill(pid, signal.SIGKILL)
        stopped = [component.name for component, _ in signalled]
        for component in components:
            pid = component.pid()
            left = component.processes()
            if pid is not None and left:
                if component.name not in stopped:
                    stopped.append(f"{component.name} (left behind: {len(left)} processes)")
                if still := kill_session(pid):
                    raise RuntimeError(f"{component.name}: processes {still} do not die")
            component.pid_file.unlink(missing_ok=True)
        for child in self._children:
            child.poll()
        self._children = [child for child in self._children if child.returncode is None]
        return stopped


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
