"""The CLI's one output fork (show: JSON lines or the drawing) and its error reporting."""

from __future__ import annotations

import json

import grpc
import pytest

from imagepipe.cli.output import View, byte_size, error_view, local_error, out, show
from imagepipe.cli.running import each_id
from imagepipe.client import ImagepipeError, NotFound


def _lines(text: str) -> list[object]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_prints_each_row_on_its_own_line_and_draws_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    drawn: list[str] = []
    rows = [{"asset_id": "a-1", "labels": {"k": "v"}}, {"asset_id": "a-2", "labels": {}}]

    show(View(rows, lambda: drawn.append("table")), as_json=True)

    printed = capsys.readouterr()
    assert drawn == []
    assert printed.out == '{"asset_id":"a-1","labels":{"k":"v"}}\n{"asset_id":"a-2","labels":{}}\n'
    assert printed.err == ""


def test_without_json_only_the_drawing_shows(capsys: pytest.CaptureFixture[str]) -> None:
    show(View([{"asset_id": "a-1"}], lambda: out.print("the table")), as_json=False)
    printed = capsys.readouterr()
    assert printed.out == "the table\n"
    assert "{" not in printed.out and printed.err == ""


def test_an_error_is_a_json_object_with_its_context_or_a_line_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = ImagepipeError(
        grpc.StatusCode.NOT_FOUND, "no such asset", reason="ASSET_NOT_FOUND", request_id="r-1"
    )

    show(error_view(error, {"asset_id": "a-9"}), as_json=True)
    (line,) = _lines(capsys.readouterr().out)
    assert line == {
        "asset_id": "a-9",
        "error": {
            "code": "NOT_FOUND",
            "reason": "ASSET_NOT_FOUND",
            "message": "no such asset",
            "request_id": "r-1",
        },
    }

    show(error_view(error, {"file": "a.jpg", "asset_id": "a-9"}, subject="a.jpg"), as_json=False)
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.strip() == (
        "error a.jpg: NOT_FOUND: no such asset (reason ASSET_NOT_FOUND) request id r-1"
    )

    bare = ImagepipeError(grpc.StatusCode.UNAVAILABLE, "down")
    show(error_view(bare), as_json=False)
    assert capsys.readouterr().err.strip() == "error UNAVAILABLE: down"


async def test_each_id_reports_failures_and_carries_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def call(item: str) -> str:
        if item == "bad":
            raise NotFound(grpc.StatusCode.NOT_FOUND, f"no {item}", reason="JOB_NOT_FOUND")
        return item.upper()

    def view_of(item: str, result: str) -> View:
        return View([{"id": item, "result": result}], lambda: out.print(f"{item} -> {result}"))

    status = await each_id(["a", "bad", "b"], call, view_of, as_json=True, id_field="id")
    assert status == 1
    assert _lines(capsys.readouterr().out) == [
        {"id": "a", "result": "A"},
        {
            "id": "bad",
            "error": {
                "code": "NOT_FOUND",
                "reason": "JOB_NOT_FOUND",
                "message": "no bad",
                "request_id": "",
            },
        },
        {"id": "b", "result": "B"},
    ]

    status = await each_id(["a", "b"], call, view_of, as_json=False, id_field="id")
    assert status == 0
    assert capsys.readouterr().out == "a -> A\nb -> B\n"


def test_one_byte_formatter() -> None:
    assert byte_size(0) == "0 B"
    assert byte_size(900) == "900 B"
    assert byte_size(9000) == "8.8 KiB"
    assert byte_size(3_500_000) == "3.3 MiB"
    assert byte_size(5_000_000_000) == "4.7 GiB"
    assert byte_size(5 * 1024**4) == "5120.0 GiB"


def test_local_file_errors_read_like_server_refusals() -> None:
    missing = local_error(FileNotFoundError(2, "No such file or directory"))
    assert (missing.code, missing.reason, missing.message) == (
        grpc.StatusCode.NOT_FOUND,
        "FILE_NOT_FOUND",
        "No such file or directory",
    )
    denied = local_error(PermissionError(13, "Permission denied"))
    assert (denied.code, denied.reason) == (grpc.StatusCode.PERMISSION_DENIED, "FILE_NOT_READABLE")
    other = local_error(IsADirectoryError(21, "Is a directory"))
    assert (other.code, other.reason) == (grpc.StatusCode.UNKNOWN, "FILE_READ_ERROR")
