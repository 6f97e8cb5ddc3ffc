"""`python -m tests.fuzz`: start a stack of its own, fuzz it, print the summary line.

    FUZZ_CASES   number of cases (5000)
    FUZZ_SEED    seed of the run (a fixed default, so two runs are the same run)
    FUZZ_WORKERS calls in flight at once (4)
    FUZZ_ONLY    comma-separated case indices to replay (with the seed they failed under)

Exits 1 when the oracle finds anything; every failing case is printed with its seed
and index, then the distinct failure classes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from devstack import Stack, StackConfig
from tests.fuzz.run import Report, fuzz

DEFAULT_CASES = 5000
DEFAULT_SEED = 15


def print_report(report: Report) -> None:
    for case, outcome in sorted(report.answers, key=lambda answer: answer[0].index):
        print(
            f"case index={case.index} {case.label} ({case.detail[:300]}): "
            f"{outcome.code} {outcome.reason} {outcome.details[:200]}"
        )
    for failure in sorted(report.failures, key=lambda f: f.case.index):
        print(failure.line(report.seed))
    # Lines of no case (logged before a request id exists), one per distinct line.
    unattributed = Counter(
        f"[{f.file}] {f.kind}: {f.event[:120]} | {f.exception[:120]}"
        for f in report.logs
        if not f.request_id.startswith(f"fuzz-{report.seed}-")
    )
    for line, count in sorted(unattributed.items()):
        print(f"FAIL log {count} x {line}")
    for problem in report.restarts + report.leftovers + report.leaks:
        print(f"FAIL {problem}")
    for change in report.altered:
        print(f"NOTE {change}")
    if report.failures:
        print("failure classes (count x RPC | input class | problem | reason | log line):")
        print("\n".join(report.classes()))
    print("answers:", ", ".join(f"{k}={v}" for k, v in report.reasons.most_common()))
    print(report.summary, flush=True)


def main() -> int:
    cases = int(os.environ.get("FUZZ_CASES", str(DEFAULT_CASES)))
    seed = int(os.environ.get("FUZZ_SEED", str(DEFAULT_SEED)))
    workers = int(os.environ.get("FUZZ_WORKERS", "4"))
    only_text = os.environ.get("FUZZ_ONLY", "")
    only = [int(i) for i in only_text.split(",") if i.strip()] or None
    work_dir = Path(tempfile.mkdtemp(prefix="imagepipe-fuzz-"))
    stack = Stack(StackConfig.from_env(work_dir))
    try:
        with stack.running():
            report = fuzz(stack, cases=cases, seed=seed, workers=workers, only=only, progress=True)
        print_report(report)
    finally:
        if os.environ.get("IMAGEPIPE_KEEP_TEST_LOGS"):
            print(f"service logs kept in {stack.log_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
