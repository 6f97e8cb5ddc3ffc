"""`python -m tests.chaos --seeds 20` (`make chaos SEEDS=20`): run chaos seeds, print a
`chaos:` line and a summary per seed, exit 1 unless every seed is clean.

`--seeds N` runs seeds 1..N; a list (`3,7,11` or `3 7 11`) or a range (`5-9`) runs
those. Results go to `--out` (default var/chaos/<UTC time>/): one JSON per seed, the
service logs of every seed that is not clean, and summary.txt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import tempfile
from pathlib import Path

from devstack import DEFAULT_PG, ServerMissing, require_servers
from tests.chaos.rabbit import PrivateRabbit
from tests.chaos.runner import Runner
from tests.chaos.schedule import PROFILES


def parse_seeds(text: str) -> list[int]:
    """`20` -> 1..20; `3,7,11` / `3 7 11` -> those; `5-9` -> 5..9."""
    parts = text.replace(",", " ").split()
    if len(parts) == 1 and parts[0].isdigit():
        return list(range(1, int(parts[0]) + 1))
    seeds: list[int] = []
    for part in parts:
        low, _, high = part.partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seeds", default="5", help="N (seeds 1..N), a list or a range")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the private broker and the stack are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    seeds = parse_seeds(args.seeds)
    profile = PROFILES[args.profile]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("var/chaos") / stamp
    pg_url = os.environ.get("IMAGEPIPE_TEST_PG_URL", DEFAULT_PG)
    lines = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="imagepipe-chaos-rabbit-") as base:
        try:
            with PrivateRabbit(Path(base)) as rabbit:
                require_servers(pg_url, rabbit.url)
                print(f"chaos: {len(seeds)} seeds, profile {profile.name}, results in {out}")
                for seed in seeds:
                    result = Runner(seed, profile, rabbit, out, pg_url).run()
                    failed += not result.clean
                    block = [result.line(), *result.summary()]
                    lines += block
                    print("\n".join(block), flush=True)
        except ServerMissing as error:
            print(f"chaos: {error}", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print(f"chaos: {len(seeds) - failed}/{len(seeds)} seeds clean; results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
