"""Uploading a batch of files: one after another under a progress bar on stderr.

With ``--wait``, each asset is followed (WatchAsset, or polls) from the moment its
upload returns, while the next files upload; the results are reported in file order
once all have settled. Every file is reported, refused or not, and any failure (a
refused or unreadable file, a failed render, a wait that timed out) makes the exit
status 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from imagepipe.cli.output import (
    View,
    err,
    error_view,
    local_error,
    out,
    show,
    upload_row,
    upload_table,
)
from imagepipe.cli.shapes import upload_json
from imagepipe.client import AsyncClient, ImagepipeError, UploadResult
from imagepipe.v1 import common_pb2

__all__ = ["UploadReport", "expand_paths", "upload_files"]


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the regular files inside folders, recursively, sorted.

    Paths that do not exist stay in the list so the upload reports them per file.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        else:
            files.append(path)
    return files


async def upload_files(
    client: AsyncClient,
    files: Sequence[Path],
    *,
    labels: Mapping[str, str],
    wait_timeout: float | None,
    as_json: bool,
) -> int:
    """Upload `files`; wait up to `wait_timeout` s for each asset (None: do not wait).

    Returns the exit status: 1 if any file failed.
    """
    client.require_api_key()
    progress = _progress(as_json)
    report = UploadReport(as_json=as_json, console=progress.console)
    batch = _Batch(client, progress, report, labels=labels, wait_timeout=wait_timeout)
    with progress:  # draws nothing when disabled
        await batch.send(files)
        await batch.settle()
    report.finish()
    return 1 if report.failures else 0


@dataclass
class UploadReport:
    """Outcomes of a batch: JSON lines as they come, or rows of a table printed at the end."""

    as_json: bool
    console: Console  # where errors go: the progress bar's, so they print above it
    failures: int = 0
    table: Table = field(default_factory=upload_table)

    def ok(self, file: str, result: UploadResult, asset: common_pb2.Asset | None = None) -> None:
        row = upload_json(file, result, asset)
        if row["status"] == "failed":
            self.failures += 1
        show(View([row], lambda: upload_row(self.table, row)), as_json=self.as_json)

    def failed(self, file: str, error: ImagepipeError, asset_id: str = "") -> None:
        self.failures += 1
        context = {"file": file, "asset_id": asset_id} if asset_id else {"file": file}
        shown = error_view(error, context, subject=file, console=self.console)
        show(shown, as_json=self.as_json)

    def finish(self) -> None:
        # Rows are only added without --json, so an empty table means nothing to print.
        if self.table.row_count:
            out.print(self.table)


@dataclass
class _Batch:
    client: AsyncClient
    progress: Progress
    report: UploadReport
    labels: Mapping[str, str]
    wait_timeout: float | None
    waits: list[tuple[str, UploadResult, asyncio.Task[common_pb2.Asset]]] = field(
        default_factory=list
    )

    async def send(self, files: Sequence[Path]) -> None:
        """Upload each file in turn; the bar counts bytes, the last column files."""
        sizes = [_file_size(f) for f in files]
        task = self.progress.add_task(
            "uploading", total=sum(sizes), files=f"0/{len(files)} files", bytes=True
        )
        done_bytes = 0
        for index, (path, size) in enumerate(zip(files, sizes, strict=True)):
            self.progress.update(task, description=escape(path.name))
            await self._send_one(path, task, done_bytes)
            done_bytes += size
            self.progress.update(
                task, completed=done_bytes, files=f"{index + 1}/{len(files)} files"
            )
        self.progress.update(task, description="uploaded")

    async def _send_one(self, path: Path, task: TaskID, done_bytes: int) -> None:
        name = str(path)

        def advance(sent: int) -> None:
            self.progress.update(task, completed=done_bytes + sent)

        try:
            result = await self.client.upload(path, labels=self.labels, on_progress=advance)
        except ImagepipeError as error:
            self.report.failed(name, error)
        except OSError as error:
            self.report.failed(name, local_error(error))
        else:
            if self.wait_timeout is None:
                self.report.ok(name, result)
                return
            waiting = asyncio.create_task(
                self.client.wait_ready(result.asset_id, self.wait_timeout)
            )
            self.waits.append((name, result, waiting))

    async def settle(self) -> None:
        """Report the waited-for assets in file order; a second bar counts them."""
        if not self.waits:
            return
        count = f"{len(self.waits)} asset" + ("s" if len(self.waits) > 1 else "")
        ready = self.progress.add_task("rendering", total=len(self.waits), files=count)
        for _, _, waiting in self.waits:
            waiting.add_done_callback(lambda _t: self.progress.advance(ready))
        for name, result, waiting in self.waits:
            try:
                asset = await waiting
            except ImagepipeError as error:
                self.report.failed(name, error, result.asset_id)
            else:
                self.report.ok(name, result, asset)


def _progress(as_json: bool) -> Progress:
    return Progress(
        # A fixed-width name column keeps the bar still while names change.
        TextColumn(
            "{task.description}", table_column=Column(width=24, no_wrap=True, overflow="ellipsis")
        ),
        BarColumn(),
        _BytesColumn(binary_units=True),
        _SpeedColumn(),
        TextColumn("{task.fields[files]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        # With --json stdout stays machine-readable; the bar still shows on a terminal.
        disable=as_json and not err.is_terminal,
        # Rich would route stdout through the bar's console (stderr) while it shows, taking
        # the JSON lines away from whoever reads stdout.
        redirect_stdout=not as_json,
    )


class _BytesColumn(DownloadColumn):
    """Bytes done/total, only on the upload task (the render wait counts assets)."""

    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("bytes") else Text("")


class _SpeedColumn(TransferSpeedColumn):
    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("bytes") else Text("")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
