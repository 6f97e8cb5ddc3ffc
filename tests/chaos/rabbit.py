"""A private RabbitMQ node for one chaos run, so its outages touch nobody else.

The machine's broker on 5672 is shared; stopping it would fail everyone else's tests.
This starts a second node of the installed `rabbitmq-server` with its own node name,
ports, data and log directories, config file (only its listener) and no plugins, and
drives it with `rabbitmqctl -n <node>`. `stop()` always takes the node down, killing
it if it does not exit by itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from devstack import ServerMissing, free_port

__all__ = ["PrivateRabbit"]

_SBIN = Path("/usr/lib/rabbitmq/bin")


def _script(name: str) -> str:
    """The real script, not the Debian wrapper that switches to the rabbitmq user and
    to the machine's node (it would ignore our environment)."""
    path = _SBIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise ServerMissing(f"`{name}` is not installed (apt-get install rabbitmq-server)")
    return found


class PrivateRabbit:
    """One RabbitMQ node in `base_dir`, listening on a free loopback port."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.node = f"chaos{secrets.token_hex(3)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.log_file = base_dir / "node.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.last_error = ""

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            # The Erlang cookie lives in $HOME; a private one keeps this node to itself.
            HOME=str(self.base_dir),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base_dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base_dir / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base_dir / "enabled_plugins"),
            # Not /etc/rabbitmq's files: they name the shared node and its listener.
            RABBITMQ_CONF_ENV_FILE=str(self.base_dir / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.base_dir / "rabbitmq"),
            RABBITMQ_PID_FILE=str(self.base_dir / "node.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    def start(self, timeout: float = 90) -> None:
        """Start the node (data kept from an earlier start) and wait until it serves."""
        for sub in ("mnesia", "log"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        (self.base_dir / "rabbitmq-env.conf").write_text("")
        (self.base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
        )
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [_script("rabbitmq-server")],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerMissing(f"private RabbitMQ node exited; see {self.log_file}")
            if self.ctl("await_startup", "--timeout", "5", check=False) == 0:
                return
            time.sleep(0.5)
        raise ServerMissing(
            f"private RabbitMQ node not up after {timeout:g} s; see {self.log_file}"
        )

    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> int:
        """`rabbitmqctl -n <node> args...`; its return code (`last_error` its output)."""
        done = subprocess.run(
            [_script("rabbitmqctl"), "-q", "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        # The first sentence says it ("this command requires the 'rabbit' app to be
        # running..."); the usage text after it does not.
        self.last_error = " ".join((done.stderr or done.stdout).split()).split(". ")[0][:200]
        if check and done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {self.last_error}"
            )
        return done.returncode

    def stop_app(self) -> None:
        """The broker goes away (connections closed, port refused); the node stays."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app", timeout=120)
        self.ctl("await_startup", check=False, timeout=120)

    def purge(self, queue: str) -> bool:
        """Drop every ready message of `queue`; False when the broker cannot do it now."""
        return self.ctl("purge_queue", queue, check=False) == 0

    def stop(self) -> None:
        """Take the node down, whatever state it is in."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.ctl("stop", check=False, timeout=30)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> PrivateRabbit:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
