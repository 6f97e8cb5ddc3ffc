"""What the benchmarks share: the corpus photos, percentiles, peak memory, the summary line."""

from __future__ import annotations

import os
import secrets
import statistics
from pathlib import Path

from PIL import Image

from devstack import Stack
from imagepipe.client import AsyncClient

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"
LAG_BUCKETS = "imagepipe_event_loop_lag_seconds_bucket"


def corpus_photos() -> list[Path]:
    """The four `photo_*` files of the corpus, most pixels first."""

    def pixels(path: Path) -> int:
        with Image.open(path) as image:
            return image.size[0] * image.size[1]

    return sorted(CORPUS.glob("photo_*.jpg"), key=pixels, reverse=True)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def _status_mib(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    raise LookupError(f"{field} not in /proc/{pid}/status")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far.

    VmHWM, not getrusage: ru_maxrss survives exec, so a spawned child would report
    its parent's peak.
    """
    return _status_mib("self", "VmHWM")


def rss_mib(pid: int) -> float:
    """Current resident set size of another process."""
    return _status_mib(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def machine_busy_seconds() -> float:
    """CPU seconds this machine has spent busy (every core, every process) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq, then steal and guest time, which are
    # not this machine's work (guest time is also counted in user time)
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(c) for c in text]
    return children


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of a process and, separately, of its live children."""
    own = cpu_seconds(pid)
    children = 0.0
    for child in child_pids(pid):
        try:
            children += cpu_seconds(child)
        except FileNotFoundError:
            continue
    return own, children


def print_summary(figures: dict[str, float | int | str]) -> None:
    """The last line of every benchmark, so runs can be compared by machine."""
    parts = []
    for key, value in figures.items():
        text = _number(value) if isinstance(value, float) else str(value)
        parts.append(f"{key}={text}")
    print("summary: " + " ".join(parts), flush=True)


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


async def tenant_client(stack: Stack) -> AsyncClient:
    """A client of a new tenant of `stack` (the caller closes it)."""
    async with AsyncClient(
        admin_key=stack.admin_key, catalog_addr=stack.address("catalog")
    ) as admin:
        tenant = await admin.create_tenant(f"bench-{secrets.token_hex(4)}")
    return AsyncClient(
        tenant.secret_key,
        ingest_addr=stack.address("ingest"),
        catalog_addr=stack.address("catalog"),
    )


def lag_share(buckets: dict[str, float], limit: float) -> float:
    """Share of loop-lag observations above `limit` seconds, from histogram buckets."""
    counts = {}
    for labels, value in buckets.items():
        bound = labels.split('le="', 1)[1].split('"', 1)[0]
        counts[float(bound)] = value
    total = counts.get(float("inf"), 0.0)
    if not total:
        return 0.0
    within = max((v for b, v in counts.items() if b <= limit), default=0.0)
    return (total - within) / total
