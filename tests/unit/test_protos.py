"""The contract itself: buf lint clean, and breaking changes caught against main."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUF = REPO / "node_modules" / ".bin" / "buf"


def test_buf_lint_is_clean() -> None:
    assert BUF.exists(), "buf is missing: run `npm install` (make does it)"
    result = subprocess.run(
        [str(BUF), "lint"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _main_ref(git: str) -> str | None:
    """The main branch to compare with: the local one, else the remote's."""
    for ref in ("main", "origin/main"):
        found = subprocess.run(
            [git, "rev-parse", "--verify", "--quiet", ref],
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        if found.returncode == 0:
            return ref
    return None


def test_no_breaking_change_against_main() -> None:
    git = shutil.which("git")
    assert git is not None
    ref = _main_ref(git)
    # Without main there is nothing to compare with, and a silent pass would prove nothing.
    assert ref is not None, "no `main` or `origin/main` branch: fetch main to check the contract"
    result = subprocess.run(
        [str(BUF), "breaking", "--against", f".git#ref={ref}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
