"""The `imagepipe` command line, built only on :mod:`imagepipe.client`.

Keys and addresses come from the environment (IMAGEPIPE_API_KEY, IMAGEPIPE_ADMIN_KEY,
IMAGEPIPE_{INGEST,CATALOG,RENDERER,QUALITY}_ADDR), so secrets never show up in shell
history or process lists. Every command prints aligned tables by default and, with
``--json``, exactly one JSON object per line on stdout for scripts. Progress and
human-readable errors go to stderr. The exit status is 0 only when everything
succeeded.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any, TypeAlias, TypeVar

import grpc
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from imagepipe.client import (
    AsyncClient,
    ImagepipeError,
    UploadResult,
    format_name,
    job_state_name,
    parse_formats,
    status_name,
)
from imagepipe.v1 import catalog_pb2, common_pb2, quality_pb2, renderer_pb2

__all__ = [
    "app",
    "asset_json",
    "compare_json",
    "error_json",
    "main",
    "psnr_value",
    "rendition_json",
    "upload_json",
]

JsonObject: TypeAlias = dict[str, Any]
_HEX_COLOUR = re.compile(r"#[0-9a-f]{6}")

app = typer.Typer(
    name="imagepipe",
    help="Upload images to imagepipe and inspect assets, renditions and their quality.\n\n"
    "Keys and addresses come from IMAGEPIPE_API_KEY, IMAGEPIPE_ADMIN_KEY and "
    "IMAGEPIPE_{INGEST,CATALOG,RENDERER,QUALITY}_ADDR.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tenant_app = typer.Typer(help="Manage tenants (needs IMAGEPIPE_ADMIN_KEY).", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
poison_app = typer.Typer(help="Jobs given up on: list and replay them.", no_args_is_help=True)
app.add_typer(poison_app, name="poison")

# Consoles look up sys.stdout / sys.stderr when they print, so tests can capture them.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object per line on stdout, no tables.")
]


# -- JSON shapes (also what the tables show) ----------------------------------------


def rendition_json(rendition: common_pb2.Rendition) -> JsonObject:
    row: JsonObject = {
        "preset": rendition.preset,
        "width": rendition.width,
        "height": rendition.height,
        "bytes": rendition.size_bytes,
        "format": format_name(rendition.format),
        "quality": rendition.quality,
    }
    if rendition.min_ssim > 0:
        # The quality was chosen for an SSIM target; the scores measured then come along.
        row["min_ssim"] = rendition.min_ssim
    if rendition.HasField("scores"):
        row["psnr_db"] = psnr_value(rendition.scores)
        row["ssim"] = round(rendition.scores.ssim, 5)
    return row


def asset_json(asset: common_pb2.Asset) -> JsonObject:
    return {
        "asset_id": asset.asset_id,
        "status": status_name(asset.status),
        "content_hash": asset.content_hash,
        "perceptual_hash": asset.perceptual_hash,
        "filename": asset.filename,
        "content_type": asset.content_type,
        "format": format_name(asset.format),
        "width": asset.width,
        "height": asset.height,
        "bytes": asset.size_bytes,
        "frame_count": asset.frame_count,
        "labels": dict(asset.labels),
        "job_id": asset.job_id,
        "thumbhash": asset.placeholder.thumbhash,
        "dominant_color": asset.placeholder.dominant_color,
        "renditions": [rendition_json(r) for r in asset.renditions],
    }


def upload_json(
    file: str, result: UploadResult, asset: common_pb2.Asset | None = None
) -> JsonObject:
    """One uploaded file; `asset` is the asset after waiting, when the caller waited."""
    described = asset_json(asset if asset is not None else result.asset)
    return {
        "file": file,
        "asset_id": described.pop("asset_id"),
        "deduplicated": result.deduplicated,
        **described,
        "near_duplicates": [
            {"asset_id": d.asset_id, "distance": d.distance} for d in result.near_duplicates
        ],
        "request_id": result.request_id,
    }


def error_json(error: ImagepipeError) -> JsonObject:
    return {
        "code": error.code_name,
        "reason": error.reason,
        "message": error.message,
        "request_id": error.request_id,
    }


def psnr_value(scores: common_pb2.QualityScores) -> float | str:
    """PSNR in dB, or "inf" for identical images (JSON has no infinity)."""
    return "inf" if scores.psnr_infinite else round(scores.psnr_db, 3)


def compare_json(response: quality_pb2.CompareResponse) -> list[JsonObject]:
    return [
        {
            "asset_id": response.asset_id,
            "preset": r.preset,
            "format": format_name(r.format),
            "width": r.width,
            "height": r.height,
            "bytes": r.size_bytes,
            "original_bytes": r.original_size_bytes,
            "quality": r.quality,
            "psnr_db": psnr_value(r.scores),
            "ssim": round(r.scores.ssim, 5),
            "hash_distance": r.scores.hash_distance,
            "good": r.good,
            "min_ssim": r.min_ssim,
            "measured_at_render": r.measured_at_render,
        }
        for r in response.renditions
    ]


def preset_json(preset: renderer_pb2.Preset) -> JsonObject:
    return {
        "name": preset.name,
        "max_width": preset.max_width,
        "max_height": preset.max_height,
        "formats": [format_name(f) for f in preset.formats],
        "quality": preset.quality,
        "min_ssim": preset.min_ssim,
    }


def local_error(error: OSError) -> ImagepipeError:
    """A file that could not be read, reported like a server refusal."""
    if isinstance(error, FileNotFoundError):
        code, reason = grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND"
    elif isinstance(error, PermissionError):
        code, reason = grpc.StatusCode.PERMISSION_DENIED, "FILE_NOT_READABLE"
    else:
        code, reason = grpc.StatusCode.UNKNOWN, "FILE_READ_ERROR"
    return ImagepipeError(code, error.strerror or str(error), reason=reason)


# -- output -------------------------------------------------------------------------


def emit_json(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), sort_keys=False) + "\n")
    sys.stdout.flush()


def print_error(error: ImagepipeError, subject: str = "", console: Console | None = None) -> None:
    prefix = f"{escape(subject)}: " if subject else ""
    reason = (
        f" [dim](reason {escape(error.reason)})[/dim]" if error.reason != error.code_name else ""
    )
    rid = f" [dim]request id {escape(error.request_id)}[/dim]" if error.request_id else ""
    (console or err).print(
        f"[bold red]error[/bold red] {prefix}[red]{error.code_name}[/red]: "
        f"{escape(error.message)}{reason}{rid}"
    )


def report_error(error: ImagepipeError, as_json: bool, **context: str) -> None:
    if as_json:
        emit_json({**context, "error": error_json(error)})
    else:
        print_error(error, " ".join(context.values()))


_Result = TypeVar("_Result")


async def each_id(
    ids: Sequence[str],
    call: Callable[[str], Awaitable[_Result]],
    show: Callable[[str, _Result], None],
    *,
    as_json: bool,
    id_field: str,
) -> int:
    """Call the server once per id, in order; an error is reported and the rest still
    run. Exit status 1 if any failed."""
    failed = 0
    for item in ids:
        try:
            result = await call(item)
        except ImagepipeError as error:
            failed += 1
            report_error(error, as_json, **{id_field: item})
            continue
        show(item, result)
    return 1 if failed else 0


def _size(width: int, height: int) -> str:
    return f"{width}×{height}" if width or height else "-"


def _bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # unreachable; keeps type checkers content


def _status_style(status: str) -> str:
    return {"ready": "green", "failed": "red", "deleted": "dim"}.get(status, "yellow")


def asset_tables(asset: common_pb2.Asset) -> tuple[Table, Table]:
    described = asset_json(asset)
    props = Table(show_header=False, box=None, pad_edge=False)
    props.add_column(style="bold")
    props.add_column()
    status = described["status"]
    rows = [
        ("asset id", asset.asset_id),
        ("status", f"[{_status_style(status)}]{status}[/]"),
        ("file name", escape(asset.filename) or "-"),
        ("type", f"{described['format']} ({escape(asset.content_type)})"),
        ("size", f"{_size(asset.width, asset.height)}, {_bytes(asset.size_bytes)}"),
        ("content hash", asset.content_hash),
        ("perceptual hash", asset.perceptual_hash),
        ("labels", escape(", ".join(f"{k}={v}" for k, v in sorted(asset.labels.items()))) or "-"),
        ("job id", asset.job_id or "-"),
        ("thumbhash", asset.placeholder.thumbhash or "-"),
        ("dominant colour", _colour_swatch(asset.placeholder.dominant_color)),
    ]
    for name, value in rows:
        props.add_row(name, value)
    renditions = Table(title="renditions", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("preset", "format", "size"):
        renditions.add_column(column)
    for column in ("bytes", "quality", "SSIM", "PSNR dB"):
        renditions.add_column(column, justify="right")
    for r in asset.renditions:
        ssim, psnr = _rendition_scores(r)
        renditions.add_row(
            r.preset,
            format_name(r.format),
            _size(r.width, r.height),
            _bytes(r.size_bytes),
            _quality(r),
            ssim,
            psnr,
        )
    return props, renditions


def _colour_swatch(colour: str) -> str:
    """`#rrggbb` beside a block painted in it (rich reads the hex as a colour)."""
    if not _HEX_COLOUR.fullmatch(colour):
        return escape(colour) or "-"
    return f"{colour} [on {colour}]    [/]"


def _quality(rendition: common_pb2.Rendition) -> str:
    """The encoder quality, and the SSIM target it was chosen for, if any."""
    if rendition.min_ssim > 0:
        return f"{rendition.quality} (SSIM ≥ {rendition.min_ssim:g})"
    return str(rendition.quality)


def _rendition_scores(rendition: common_pb2.Rendition) -> tuple[str, str]:
    """SSIM and PSNR measured at render time, or dashes when none were."""
    if not rendition.HasField("scores"):
        return "-", "-"
    psnr = psnr_value(rendition.scores)
    return f"{rendition.scores.ssim:.4f}", psnr if isinstance(psnr, str) else f"{psnr:.2f}"


class _BytesColumn(DownloadColumn):
    """Bytes done/total, only on the upload task (the render wait counts assets)."""

    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("bytes") else Text("")


class _SpeedColumn(TransferSpeedColumn):
    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("bytes") else Text("")


# -- running commands ---------------------------------------------------------------


def _run(command: Callable[[AsyncClient], Awaitable[int]], *, as_json: bool) -> None:
    """Run one command against a client from the environment; exit with its status."""

    async def body() -> int:
        async with AsyncClient.from_env() as client:
            return await command(client)

    try:
        status = asyncio.run(body())
    except ImagepipeError as error:
        report_error(error, as_json)
        status = 1
    except OSError as error:  # a local file (e.g. rendition -o) could not be written
        report_error(local_error(error), as_json)
        status = 1
    raise typer.Exit(status)


def _labels(values: Sequence[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values or ():
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = text
    return labels


def _accept(value: str) -> list[common_pb2.ImageFormat.ValueType]:
    try:
        return parse_formats([value]) if value else []
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--accept") from None


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


@dataclass
class _UploadReport:
    """Collects outcomes of an upload batch, printed as they come or as a table."""

    as_json: bool
    console: Console
    failures: int = 0
    table: Table = field(
        default_factory=lambda: Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    )

    def __post_init__(self) -> None:
        # Ids are copied from here: never truncate them; long paths fold instead.
        self.table.add_column("file", overflow="fold", min_width=12)
        self.table.add_column("asset id", no_wrap=True, min_width=36)
        for column in ("status", "size"):
            self.table.add_column(column, no_wrap=True)
        self.table.add_column("renditions", justify="right", no_wrap=True)

    def ok(self, file: str, result: UploadResult, asset: common_pb2.Asset | None = None) -> None:
        row = upload_json(file, result, asset)
        if row["status"] == "failed":
            self.failures += 1
        if self.as_json:
            emit_json(row)
            return
        status = row["status"]
        self.table.add_row(
            escape(file),
            row["asset_id"],
            f"[{_status_style(status)}]{status}[/]" + (" (dup)" if row["deduplicated"] else ""),
            _size(row["width"], row["height"]),
            str(len(row["renditions"])),
        )

    def failed(self, file: str, error: ImagepipeError, asset_id: str = "") -> None:
        self.failures += 1
        if self.as_json:
            context = {"file": file, "asset_id": asset_id} if asset_id else {"file": file}
            emit_json({**context, "error": error_json(error)})
        else:
            print_error(error, file, self.console)

    def finish(self) -> None:
        if not self.as_json and self.table.row_count:
            out.print(self.table)


async def _upload_batch(
    client: AsyncClient,
    files: Sequence[Path],
    *,
    labels: Mapping[str, str],
    wait: bool,
    wait_timeout: float,
    as_json: bool,
) -> int:
    client.require_api_key()
    sizes = [_file_size(f) for f in files]
    progress = Progress(
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
    )
    report = _UploadReport(as_json=as_json, console=progress.console)
    waits: list[tuple[str, UploadResult, asyncio.Task[common_pb2.Asset]]] = []
    with progress:  # draws nothing when disabled
        task = progress.add_task(
            "uploading", total=sum(sizes), files=f"0/{len(files)} files", bytes=True
        )
        done_bytes = 0
        for index, (path, size) in enumerate(zip(files, sizes, strict=True)):
            name = str(path)
            progress.update(task, description=escape(path.name))

            def advance(sent: int, base: int = done_bytes) -> None:
                progress.update(task, completed=base + sent)

            try:
                result = await client.upload(path, labels=labels, on_progress=advance)
            except ImagepipeError as error:
                report.failed(name, error)
            except OSError as error:
                report.failed(name, local_error(error))
            else:
                if wait:
                    waiting = asyncio.create_task(client.wait_ready(result.asset_id, wait_timeout))
                    waits.append((name, result, waiting))
                else:
                    report.ok(name, result)
            done_bytes += size
            progress.update(task, completed=done_bytes, files=f"{index + 1}/{len(files)} files")
        progress.update(task, description="uploaded")
        if waits:
            count = f"{len(waits)} asset" + ("s" if len(waits) > 1 else "")
            ready = progress.add_task("rendering", total=len(waits), files=count)
            for _, _, waiting in waits:
                waiting.add_done_callback(lambda _t: progress.advance(ready))
            for name, result, waiting in waits:
                try:
                    asset = await waiting
                except ImagepipeError as error:
                    report.failed(name, error, result.asset_id)
                else:
                    report.ok(name, result, asset)
    report.finish()
    return 1 if report.failures else 0


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- commands -----------------------------------------------------------------------


@app.command()
def upload(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Image files, or folders to upload every file in.", metavar="PATH"),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until each asset is ready or failed.")
    ] = False,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="KEY=VALUE label for every file; repeatable."),
    ] = None,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", help="Seconds to wait for each asset.", min=0.1)
    ] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Upload images; folders are walked recursively in name order."""
    labels = _labels(label)
    files = expand_paths(paths)

    async def command(client: AsyncClient) -> int:
        return await _upload_batch(
            client, files, labels=labels, wait=wait, wait_timeout=wait_timeout, as_json=as_json
        )

    _run(command, as_json=as_json)


@app.command()
def get(
    asset_id: Annotated[str, typer.Argument(help="The asset's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show an asset and its renditions."""

    async def command(client: AsyncClient) -> int:
        asset = await client.get_asset(asset_id)
        if as_json:
            emit_json(asset_json(asset))
        else:
            props, renditions = asset_tables(asset)
            out.print(props)
            if asset.renditions:
                out.print(renditions)
        return 0

    _run(command, as_json=as_json)


@app.command()
def rendition(
    asset_id: Annotated[str, typer.Argument(help="The asset's id.")],
    preset: Annotated[str, typer.Argument(help="Preset name, e.g. card.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the rendition's bytes to this file."),
    ] = None,
    accept: Annotated[
        str, typer.Option("--accept", help="Accepted formats by preference, e.g. webp,jpeg.")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Download a rendition (-o FILE), or show its metadata and a presigned URL."""
    formats = _accept(accept)

    async def command(client: AsyncClient) -> int:
        if output is not None:
            content = await client.read_rendition_content(asset_id, preset, formats)
            await asyncio.to_thread(output.write_bytes, content.data)
            row = {"asset_id": asset_id, **rendition_json(content.rendition), "file": str(output)}
            if as_json:
                emit_json(row)
            else:
                out.print(
                    f"wrote {escape(str(output))}: {row['format']} "
                    f"{_size(row['width'], row['height'])}, {_bytes(len(content.data))}"
                )
            return 0
        link = await client.get_rendition(asset_id, preset, formats)
        expires = link.expire_time.isoformat() + "Z" if link.expire_time else None
        row = {
            "asset_id": asset_id,
            **rendition_json(link.rendition),
            "url": link.url,
            "url_expire_time": expires,
        }
        if as_json:
            emit_json(row)
            return 0
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("preset", escape(row["preset"]))
        table.add_row("format", row["format"])
        table.add_row("size", f"{_size(row['width'], row['height'])}, {_bytes(row['bytes'])}")
        table.add_row("quality", _quality(link.rendition))
        ssim, psnr = _rendition_scores(link.rendition)
        if link.rendition.HasField("scores"):
            table.add_row("SSIM", ssim)
            table.add_row("PSNR dB", psnr)
        table.add_row("url expires", expires or "-")
        out.print(table)
        # The URL on a line of its own, unwrapped, so it can be copied whole.
        out.print(link.url, soft_wrap=True, markup=False)
        return 0

    _run(command, as_json=as_json)


@app.command()
def compare(
    asset_id: Annotated[str, typer.Argument(help="The asset's id.")],
    as_json: JsonOption = False,
) -> None:
    """Score every rendition against the original: PSNR, SSIM, hash distance."""

    async def command(client: AsyncClient) -> int:
        rows = compare_json(await client.compare(asset_id))
        if as_json:
            for row in rows:
                emit_json(row)
            return 0
        table = Table(
            title=f"quality of {asset_id}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        table.add_column("preset", min_width=6)
        table.add_column("format", min_width=6)
        table.add_column("size", no_wrap=True)
        for column in ("bytes", "original", "quality", "PSNR dB", "SSIM", "hash dist."):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("measured", no_wrap=True)
        for row in rows:
            psnr = row["psnr_db"]
            target = f" (SSIM ≥ {row['min_ssim']:g})" if row["min_ssim"] > 0 else ""
            table.add_row(
                escape(row["preset"]),
                row["format"],
                _size(row["width"], row["height"]),
                _bytes(row["bytes"]),
                _bytes(row["original_bytes"]),
                f"{row['quality']}{target}",
                psnr if isinstance(psnr, str) else f"{psnr:.2f}",
                f"{row['ssim']:.4f}",
                str(row["hash_distance"]),
                "at render" if row["measured_at_render"] else "now",
                style=None if row["good"] else "yellow",
            )
        out.print(table)
        return 0

    _run(command, as_json=as_json)


@app.command()
def presets(as_json: JsonOption = False) -> None:
    """List the rendition presets."""

    async def command(client: AsyncClient) -> int:
        rows = [preset_json(p) for p in await client.list_presets()]
        if as_json:
            for row in rows:
                emit_json(row)
            return 0
        table = Table()
        table.add_column("preset")
        table.add_column("fits in")
        table.add_column("formats")
        table.add_column("quality", justify="right")
        for row in rows:
            quality = f"SSIM ≥ {row['min_ssim']:g}" if row["min_ssim"] > 0 else str(row["quality"])
            table.add_row(
                escape(row["name"]),
                _size(row["max_width"], row["max_height"]),
                ", ".join(row["formats"]),
                quality,
            )
        out.print(table)
        return 0

    _run(command, as_json=as_json)


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Unique name: a-z, 0-9, - and _.")],
    as_json: JsonOption = False,
) -> None:
    """Create a tenant and print its first API key (shown only once)."""

    async def command(client: AsyncClient) -> int:
        client.require_admin_key()
        created = await client.create_tenant(name)
        row = {
            "tenant_id": created.tenant.tenant_id,
            "name": created.tenant.name,
            "key_id": created.api_key.key_id,
            "api_key": created.secret_key,
        }
        if as_json:
            emit_json(row)
            return 0
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("tenant id", row["tenant_id"])
        table.add_row("name", escape(row["name"]))
        table.add_row("api key", row["api_key"])
        out.print(table)
        err.print("[yellow]store the key now: it is not shown again[/yellow]")
        return 0

    _run(command, as_json=as_json)


def _asset_table(assets: Sequence[common_pb2.Asset], title: str) -> Table:
    table = Table(title=title)
    for column in ("asset id", "status", "file name", "size", "renditions", "created"):
        table.add_column(column)
    for asset in assets:
        table.add_row(
            asset.asset_id,
            status_name(asset.status),
            escape(asset.filename),
            f"{asset.width}×{asset.height}",
            str(len(asset.renditions)),
            asset.create_time.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds"),
        )
    return table


@app.command("list")
def list_command(
    status: Annotated[
        str | None, typer.Option(help="Only assets in this status (pending, ready, failed …).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List live assets, newest first."""

    async def command(client: AsyncClient) -> int:
        found = []
        async for asset in client.list_assets(status, page_size=min(limit, 500)):
            found.append(asset)
            if len(found) >= limit:
                break
        if as_json:
            for asset in found:
                emit_json(asset_json(asset))
        else:
            out.print(_asset_table(found, f"{len(found)} asset(s)"))
        return 0

    _run(command, as_json=as_json)


@app.command()
def delete(
    asset_ids: Annotated[list[str], typer.Argument(help="Assets to delete.")],
    as_json: JsonOption = False,
) -> None:
    """Soft-delete assets (their objects are reclaimed by `imagepipe purge --apply`)."""

    def show(asset_id: str, asset: common_pb2.Asset) -> None:
        if as_json:
            emit_json(asset_json(asset))
        else:
            out.print(f"deleted {asset_id}")

    async def command(client: AsyncClient) -> int:
        return await each_id(
            asset_ids, client.delete_asset, show, as_json=as_json, id_field="asset_id"
        )

    _run(command, as_json=as_json)


@app.command()
def similar(
    target: Annotated[str, typer.Argument(help="An asset id, or a 16-hex-digit perceptual hash.")],
    max_distance: Annotated[
        int, typer.Option(help="Largest Hamming distance (0: the server's threshold).")
    ] = 0,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Near duplicates, closest first."""

    async def command(client: AsyncClient) -> int:
        by_hash = len(target) == 16 and all(c in "0123456789abcdefABCDEF" for c in target)
        found = await client.find_similar(
            asset_id="" if by_hash else target,
            perceptual_hash=target.lower() if by_hash else "",
            max_distance=max_distance,
            limit=limit,
        )
        rows = [
            {"asset_id": a.asset_id, "perceptual_hash": a.perceptual_hash, "distance": a.distance}
            for a in found
        ]
        if as_json:
            for row in rows:
                emit_json(row)
            return 0
        table = Table(title=f"{len(rows)} near duplicate(s)")
        for column in ("asset id", "perceptual hash", "distance"):
            table.add_column(column)
        for row in rows:
            table.add_row(str(row["asset_id"]), str(row["perceptual_hash"]), str(row["distance"]))
        out.print(table)
        return 0

    _run(command, as_json=as_json)


@app.command()
def watch(
    asset_id: Annotated[str, typer.Argument(help="The asset to follow.")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
    as_json: JsonOption = False,
) -> None:
    """Print the asset's status each time it changes, until ready, failed or deleted."""

    async def command(client: AsyncClient) -> int:
        last = None
        async for asset in client.watch(asset_id, timeout=timeout):
            last = asset
            if as_json:
                emit_json(asset_json(asset))
            else:
                out.print(f"{asset.asset_id}  {status_name(asset.status)}")
        return 0 if last is not None and last.status == common_pb2.ASSET_STATUS_READY else 1

    _run(command, as_json=as_json)


def metrics_json(metrics: catalog_pb2.GetTenantMetricsResponse) -> JsonObject:
    return {
        "tenant_id": metrics.tenant_id,
        "assets": metrics.asset_count,
        "assets_by_status": {status_name(s.status): s.count for s in metrics.assets_by_status},
        "renditions": metrics.rendition_count,
        "original_bytes": metrics.original_bytes,
        "rendition_bytes": metrics.rendition_bytes,
        "logical_bytes": metrics.logical_bytes,
        "physical_bytes": metrics.physical_bytes,
        "deduplication_saved_bytes": metrics.logical_bytes - metrics.physical_bytes,
        "deduplicated_uploads": metrics.deduplicated_uploads,
        "jobs_by_state": {job_state_name(j.state): j.count for j in metrics.jobs_by_state},
        "poison_jobs": metrics.poison_job_count,
        "renditions_by_format": {
            format_name(f.format): {"count": f.count, "bytes": f.size_bytes}
            for f in metrics.renditions_by_format
        },
    }


@app.command()
def metrics(as_json: JsonOption = False) -> None:
    """What the tenant stores: assets, renditions, bytes, deduplication, jobs."""

    async def command(client: AsyncClient) -> int:
        row = metrics_json(await client.tenant_metrics())
        if as_json:
            emit_json(row)
            return 0
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in row.items():
            shown = (
                _human_bytes(value) if key.endswith("_bytes") and isinstance(value, int) else value
            )
            table.add_row(key.replace("_", " "), escape(str(shown)))
        out.print(table)
        return 0

    _run(command, as_json=as_json)


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


@app.command()
def purge(
    apply: Annotated[
        bool, typer.Option("--apply", help="Really delete (default: list only).")
    ] = False,
    older_than: Annotated[
        int | None, typer.Option("--older-than", help="Days (default: the server's PURGE_DAYS).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List, or with --apply delete, objects nothing live uses any more."""

    async def command(client: AsyncClient) -> int:
        report = await client.purge(apply=apply, older_than_days=older_than)
        kinds = {
            catalog_pb2.PURGE_ITEM_KIND_DELETED_ORIGINAL: "deleted original",
            catalog_pb2.PURGE_ITEM_KIND_DELETED_RENDITION: "deleted rendition",
            catalog_pb2.PURGE_ITEM_KIND_ORPHAN_OBJECT: "orphan",
        }
        if as_json:
            emit_json(
                {
                    "dry_run": report.dry_run,
                    "cutoff": report.cutoff_time.ToDatetime(tzinfo=UTC).isoformat(),
                    "objects": report.object_count,
                    "bytes": report.bytes_freed,
                    "asset_rows_removed": report.asset_rows_removed,
                    "items": [
                        {"kind": kinds.get(i.kind, "?"), "key": i.object_key, "bytes": i.size_bytes}
                        for i in report.items
                    ],
                }
            )
            return 0
        table = Table(title=("would delete" if report.dry_run else "deleted"))
        for column in ("kind", "object", "bytes"):
            table.add_column(column)
        for item in report.items:
            table.add_row(kinds.get(item.kind, "?"), escape(item.object_key), str(item.size_bytes))
        out.print(table)
        verb = "would free" if report.dry_run else "freed"
        out.print(f"{report.object_count} objects, {verb} {_human_bytes(report.bytes_freed)}")
        if report.dry_run:
            err.print("dry run: nothing deleted; add --apply to delete")
        return 0

    _run(command, as_json=as_json)


def poison_json(poison_job: catalog_pb2.PoisonJob) -> JsonObject:
    return {
        "poison_job_id": poison_job.poison_job_id,
        "job_id": poison_job.job_id,
        "asset_id": poison_job.asset_id,
        "reason": catalog_pb2.PoisonReason.Name(poison_job.reason)
        .removeprefix("POISON_REASON_")
        .lower(),
        "error": poison_job.error,
        "attempts": len(poison_job.attempts),
        "created": poison_job.create_time.ToDatetime(tzinfo=UTC).isoformat(),
        "replayed": (
            poison_job.replay_time.ToDatetime(tzinfo=UTC).isoformat()
            if poison_job.HasField("replay_time")
            else None
        ),
    }


@poison_app.command("list")
def poison_list(
    include_replayed: Annotated[
        bool, typer.Option("--all", help="Also list poison jobs already replayed.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List jobs given up on, newest first."""

    async def command(client: AsyncClient) -> int:
        rows = [
            poison_json(p) async for p in client.list_poison_jobs(include_replayed=include_replayed)
        ]
        if as_json:
            for row in rows:
                emit_json(row)
            return 0
        table = Table(title=f"{len(rows)} poison job(s)")
        for column in ("poison job", "asset", "reason", "attempts", "error", "replayed"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["poison_job_id"],
                row["asset_id"],
                row["reason"],
                str(row["attempts"]),
                escape(str(row["error"])[:80]),
                "yes" if row["replayed"] else "no",
            )
        out.print(table)
        return 0

    _run(command, as_json=as_json)


@poison_app.command("retry")
def poison_retry(
    poison_job_ids: Annotated[list[str], typer.Argument(help="Poison job ids to replay.")],
    as_json: JsonOption = False,
) -> None:
    """Replay poison jobs: their renders are queued again with a fresh retry budget."""

    def show(poison_job_id: str, replayed: catalog_pb2.RetryPoisonJobResponse) -> None:
        row = {
            "poison_job_id": poison_job_id,
            "job_id": replayed.job.job_id,
            "asset_id": replayed.job.asset_id,
            "state": job_state_name(replayed.job.state),
        }
        if as_json:
            emit_json(row)
        else:
            out.print(f"replayed {poison_job_id}: job {row['job_id']} is {row['state']}")

    async def command(client: AsyncClient) -> int:
        return await each_id(
            poison_job_ids,
            client.retry_poison_job,
            show,
            as_json=as_json,
            id_field="poison_job_id",
        )

    _run(command, as_json=as_json)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
