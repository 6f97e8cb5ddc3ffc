"""Production code stays small enough to read: modules of at most 600 lines, functions
of at most 60 (long SQL goes into module-level constants). The generated protobuf code
in imagepipe/v1 is not ours to size."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "imagepipe", "devstack")
GENERATED = ROOT / "imagepipe" / "v1"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    found = [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if not path.is_relative_to(GENERATED)
    ]
    assert found, "no production modules found: is ROOT right?"
    return found


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_module_has_at_most_600_lines() -> None:
    too_long = [
        f"{_name(path)}: {lines} lines"
        for path in _modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not too_long, (
        f"modules over {MAX_MODULE_LINES} lines (split them by what they do):\n  "
        + "\n  ".join(too_long)
    )


def test_every_function_has_at_most_60_lines() -> None:
    too_long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{_name(path)}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, (
        f"functions over {MAX_FUNCTION_LINES} lines (extract steps, move SQL into "
        "module-level constants):\n  " + "\n  ".join(too_long)
    )
