"""wrk, the HTTP load generator (Debian's package), driven from Python.

One function: run wrk against a list of URLs of one host (each connection walks the list
in turn) and read back what its Lua `done` hook prints: requests, bytes, latency
percentiles, errors. `make bench` installs wrk when it is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["WrkResult", "require_wrk", "run_wrk"]

# Each wrk thread has its own Lua state: `paths` and the counter are per thread.
_SCRIPT = """
local paths = {%(paths)s}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1], %(headers)s)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRK-JSON {"requests":%%d,"bytes":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,'
    .. '"errors":%%d,"non2xx":%%d}\\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    megabytes: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_s(self) -> float:
        return self.megabytes / self.seconds


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    return found


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string for these characters


def run_wrk(
    urls: Sequence[str],
    *,
    connections: int = 64,
    seconds: float = 20,
    threads: int = 2,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """Load the URLs' host with `connections` connections for `seconds`."""
    first = urlsplit(urls[0])
    if any(urlsplit(url).netloc != first.netloc for url in urls):
        raise ValueError("wrk loads one host: every URL must name the same one")
    paths = ", ".join(
        _lua_string(urlsplit(url).path + ("?" + urlsplit(url).query if urlsplit(url).query else ""))
        for url in urls
    )
    lua_headers = (
        "{"
        + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items())
        + "}"
    )
    with tempfile.TemporaryDirectory(prefix="imagepipe-wrk-") as work:
        script = Path(work) / "walk.lua"
        script.write_text(_SCRIPT % {"paths": paths, "headers": lua_headers})
        completed = subprocess.run(
            [
                require_wrk(),
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                # A slow answer is a latency to count, not a socket error.
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(script),
                f"{first.scheme}://{first.netloc}/",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    line = next(ln for ln in completed.stdout.splitlines() if ln.startswith("WRK-JSON "))
    figures = json.loads(line.removeprefix("WRK-JSON "))
    return WrkResult(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        megabytes=figures["bytes"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=figures["errors"],
        non_2xx=figures["non2xx"],
    )
