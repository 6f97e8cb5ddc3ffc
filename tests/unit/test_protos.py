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


def test_no_breaking_change_against_main() -> None:
    git = shutil.which("git")
    assert git is not None
    has_main = subprocess.run(
        [git, "rev-parse", "--verify", "--quiet", "main"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if has_main.returncode != 0:
        return  # a checkout without a main branch has nothing to compare against
    result = subprocess.run(
        [str(BUF), "breaking", "--against", ".git#branch=main"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
