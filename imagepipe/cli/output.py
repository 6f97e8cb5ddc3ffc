"""How commands show what they got: JSON lines for scripts, Rich tables for people.

A command describes its answer as a :class:`View` (the JSON objects, and how to draw
them for people) and hands it to :func:`show`, the one place output forks on
``--json``. Results go to stdout; progress, notes and human-readable errors to
stderr, so ``--json`` output stays one JSON object per line.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import grpc
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagepipe.cli.shapes import JsonObject, asset_json, error_json, metadata_json, psnr_value
from imagepipe.client import ImagepipeError, format_name, status_name
from imagepipe.v1 import common_pb2

__all__ = [
    "View",
    "asset_tables",
    "byte_size",
    "draw_asset",
    "draw_assets",
    "draw_backfill",
    "draw_compare",
    "draw_created_signing_key",
    "draw_delivery_link",
    "draw_link",
    "draw_metrics",
    "draw_poison_jobs",
    "draw_presets",
    "draw_purge",
    "draw_signing_keys",
    "draw_similar",
    "draw_tenant",
    "draw_tenant_settings",
    "draw_written",
    "emit_json",
    "err",
    "error_view",
    "local_error",
    "metadata_table",
    "out",
    "pixel_size",
    "print_error",
    "show",
    "status_cell",
    "upload_row",
    "upload_table",
]

# Consoles look up sys.stdout / sys.stderr when they print, so tests can capture them.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

_HEX_COLOUR = re.compile(r"#[0-9a-f]{6}")


@dataclass(frozen=True)
class View:
    """What a command shows: JSON objects for ``--json``, and how to draw them for people."""

    rows: Sequence[JsonObject]
    draw: Callable[[], None]


def show(view: View, *, as_json: bool) -> None:
    """One JSON object per line on stdout with ``--json``; the drawing otherwise."""
    if as_json:
        for row in view.rows:
            emit_json(row)
    else:
        view.draw()


def emit_json(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), sort_keys=False) + "\n")
    sys.stdout.flush()


# -- errors -------------------------------------------------------------------------


def error_view(
    error: ImagepipeError,
    context: Mapping[str, str] | None = None,
    *,
    subject: str | None = None,
    console: Console | None = None,
) -> View:
    """An error: ``{**context, "error": {...}}``, or a red line on stderr.

    The red line names `subject`, by default the context's values (a file, an id).
    """
    context = context or {}
    named = " ".join(context.values()) if subject is None else subject
    return View(
        [{**context, "error": error_json(error)}], lambda: print_error(error, named, console)
    )


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


def local_error(error: OSError) -> ImagepipeError:
    """A file that could not be read or written, reported like a server refusal."""
    if isinstance(error, FileNotFoundError):
        code, reason = grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND"
    elif isinstance(error, PermissionError):
        code, reason = grpc.StatusCode.PERMISSION_DENIED, "FILE_NOT_READABLE"
    else:
        code, reason = grpc.StatusCode.UNKNOWN, "FILE_READ_ERROR"
    return ImagepipeError(code, error.strerror or str(error), reason=reason)


# -- cells --------------------------------------------------------------------------


def byte_size(count: int) -> str:
    """``900 B``, ``8.8 KiB``, ``3.3 MiB``, ``4.7 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"  # unreachable; keeps type checkers content


def pixel_size(width: int, height: int) -> str:
    return f"{width}×{height}" if width or height else "-"


def status_cell(status: str) -> str:
    style = {"ready": "green", "failed": "red", "deleted": "dim"}.get(status, "yellow")
    return f"[{style}]{status}[/]"


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


def _properties() -> Table:
    """A borderless two-column table: bold names, then values."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    return table


# -- assets -------------------------------------------------------------------------


def asset_tables(asset: common_pb2.Asset) -> tuple[Table, Table]:
    """The asset's properties, and its renditions."""
    described = asset_json(asset)
    props = _properties()
    rows = [
        ("asset id", asset.asset_id),
        ("status", status_cell(described["status"])),
        ("file name", escape(asset.filename) or "-"),
        ("type", f"{described['format']} ({escape(asset.content_type)})"),
        ("size", f"{pixel_size(asset.width, asset.height)}, {byte_size(asset.size_bytes)}"),
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
            pixel_size(r.width, r.height),
            byte_size(r.size_bytes),
            _quality(r),
            ssim,
            psnr,
        )
    return props, renditions


def _exposure(seconds: float) -> str:
    # Photographers read exposures under a second as fractions: 1/125 s.
    return f"1/{round(1 / seconds)} s" if seconds < 1 else f"{seconds:g} s"


# How each metadata field reads to a person: its name, and its value as text.
_METADATA_CELLS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "capture_time": ("captured", str),
    "capture_time_offset": ("offset", str),
    "camera_make": ("camera make", str),
    "camera_model": ("camera model", str),
    "lens": ("lens", str),
    "exposure_time_seconds": ("exposure", _exposure),
    "f_number": ("aperture", lambda v: f"f/{v:g}"),
    "iso": ("ISO", str),
    "focal_length_mm": ("focal length", lambda v: f"{v:g} mm"),
    "orientation": ("orientation", str),
    "color_profile": ("colour profile", str),
    "title": ("title", str),
    "description": ("description", str),
    "creator": ("creator", str),
    "copyright": ("copyright", str),
    "keywords": ("keywords", ", ".join),
    "gps": (
        "GPS",
        lambda p: f"{p['latitude']:.6f}, {p['longitude']:.6f} ({p['altitude_meters']:.0f} m)",
    ),
}


def metadata_table(metadata: common_pb2.AssetMetadata) -> Table | None:
    """What the original says, or None when it says nothing."""
    found = metadata_json(metadata)
    if not found:
        return None
    table = Table(title="metadata", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for name, value in found.items():
        label, text = _METADATA_CELLS[name]
        table.add_row(label, escape(text(value)))
    return table


def draw_asset(asset: common_pb2.Asset) -> None:
    props, renditions = asset_tables(asset)
    out.print(props)
    metadata = metadata_table(asset.metadata)
    if metadata is not None:
        out.print(metadata)
    if asset.renditions:
        out.print(renditions)


def draw_assets(assets: Sequence[common_pb2.Asset]) -> None:
    table = Table(title=f"{len(assets)} asset(s)")
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
    out.print(table)


def draw_similar(rows: Sequence[JsonObject]) -> None:
    table = Table(title=f"{len(rows)} near duplicate(s)")
    for column in ("asset id", "perceptual hash", "distance"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["asset_id"]), str(row["perceptual_hash"]), str(row["distance"]))
    out.print(table)


def upload_table() -> Table:
    """The summary of an upload batch, one row per file (see upload_row)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # Ids are copied from here: never truncate them; long paths fold instead.
    table.add_column("file", overflow="fold", min_width=12)
    table.add_column("asset id", no_wrap=True, min_width=36)
    for column in ("status", "size"):
        table.add_column(column, no_wrap=True)
    table.add_column("renditions", justify="right", no_wrap=True)
    return table


def upload_row(table: Table, row: JsonObject) -> None:
    """One uploaded file (an upload_json object) in the batch's summary."""
    table.add_row(
        escape(row["file"]),
        row["asset_id"],
        status_cell(row["status"]) + (" (dup)" if row["deduplicated"] else ""),
        pixel_size(row["width"], row["height"]),
        str(len(row["renditions"])),
    )


# -- renditions, quality, presets ---------------------------------------------------


def draw_written(row: JsonObject, written_bytes: int) -> None:
    """A rendition saved to a file (a written_json object)."""
    out.print(
        f"wrote {escape(row['file'])}: {row['format']} "
        f"{pixel_size(row['width'], row['height'])}, {byte_size(written_bytes)}"
    )


def draw_link(row: JsonObject, rendition: common_pb2.Rendition) -> None:
    """A rendition's metadata (a link_json object), then its URL on a line of its own."""
    table = _properties()
    table.add_row("preset", escape(row["preset"]))
    table.add_row("format", row["format"])
    table.add_row("size", f"{pixel_size(row['width'], row['height'])}, {byte_size(row['bytes'])}")
    table.add_row("quality", _quality(rendition))
    if rendition.HasField("scores"):
        ssim, psnr = _rendition_scores(rendition)
        table.add_row("SSIM", ssim)
        table.add_row("PSNR dB", psnr)
    table.add_row("url expires", row["url_expire_time"] or "-")
    out.print(table)
    # Unwrapped, so it can be copied whole.
    out.print(row["url"], soft_wrap=True, markup=False)


def draw_compare(asset_id: str, rows: Sequence[JsonObject]) -> None:
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
            pixel_size(row["width"], row["height"]),
            byte_size(row["bytes"]),
            byte_size(row["original_bytes"]),
            f"{row['quality']}{target}",
            psnr if isinstance(psnr, str) else f"{psnr:.2f}",
            f"{row['ssim']:.4f}",
            str(row["hash_distance"]),
            "at render" if row["measured_at_render"] else "now",
            style=None if row["good"] else "yellow",
        )
    out.print(table)


def draw_presets(rows: Sequence[JsonObject], title: str | None = None) -> None:
    table = Table(title=title)
    table.add_column("preset")
    table.add_column("box")
    table.add_column("fit")
    table.add_column("formats")
    table.add_column("quality", justify="right")
    table.add_column("chroma")
    table.add_column("version")
    for row in rows:
        quality = f"SSIM ≥ {row['min_ssim']:g}" if row["min_ssim"] > 0 else str(row["quality"])
        fit = row["fit"] if row["fit"] == "inside" else f"cover ({row['gravity']})"
        table.add_row(
            escape(row["name"]),
            pixel_size(row["max_width"], row["max_height"]),
            fit,
            ", ".join(row["formats"]),
            quality,
            row["chroma_subsampling"],
            row["version"],
        )
    out.print(table)


def draw_backfill(row: JsonObject) -> None:
    table = _properties()
    for name in ("backfill_id", "scope", "preset", "state", "total", "done", "failed"):
        value = row[name] if name != "preset" else row[name] or "every preset"
        table.add_row(name.replace("_", " "), escape(str(value)))
    table.add_row("created", row["created"] or "")
    table.add_row("finished", row["finished"] or "")
    out.print(table)


# -- tenants, storage, jobs ---------------------------------------------------------


def draw_tenant(row: JsonObject) -> None:
    table = _properties()
    table.add_row("tenant id", row["tenant_id"])
    table.add_row("name", escape(row["name"]))
    table.add_row("api key", row["api_key"])
    out.print(table)
    err.print("[yellow]store the key now: it is not shown again[/yellow]")


def draw_metrics(row: JsonObject) -> None:
    table = _properties()
    for key, value in row.items():
        shown = byte_size(value) if key.endswith("_bytes") and isinstance(value, int) else value
        table.add_row(key.replace("_", " "), escape(str(shown)))
    out.print(table)


def draw_purge(row: JsonObject) -> None:
    """The objects a purge deletes (or would), then the total (a purge_json object)."""
    table = Table(title=("would delete" if row["dry_run"] else "deleted"))
    for column in ("kind", "object", "bytes"):
        table.add_column(column)
    for item in row["items"]:
        table.add_row(item["kind"], escape(item["key"]), str(item["bytes"]))
    out.print(table)
    verb = "would free" if row["dry_run"] else "freed"
    out.print(f"{row['objects']} objects, {verb} {byte_size(row['bytes'])}")
    if row["dry_run"]:
        err.print("dry run: nothing deleted; add --apply to delete")


def draw_poison_jobs(rows: Sequence[JsonObject]) -> None:
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


# -- delivery -----------------------------------------------------------------------


def draw_delivery_link(row: JsonObject) -> None:
    """The URL alone on stdout (so `$(imagepipe url …)` is the URL), notes on stderr."""
    out.print(row["url"], soft_wrap=True, markup=False, highlight=False)
    if row["expire_time"]:
        err.print(f"[dim]expires {row['expire_time']}[/dim]")
    if not row["signed"]:
        err.print(
            "[yellow]unsigned URL: delivery serves it only while the tenant allows unsigned "
            "delivery (imagepipe settings set unsigned-delivery true); set "
            "IMAGEPIPE_SIGNING_KEY_ID and IMAGEPIPE_SIGNING_SECRET to sign[/yellow]"
        )


def draw_signing_keys(rows: Sequence[JsonObject]) -> None:
    table = Table(title=f"{len(rows)} signing key(s)")
    for column in ("key id", "label", "created", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["key_id"],
            escape(row["label"]) or "-",
            row["created"] or "-",
            f"[dim]{row['revoked']}[/dim]" if row["revoked"] else "[green]active[/green]",
        )
    out.print(table)


def draw_created_signing_key(row: JsonObject) -> None:
    table = _properties()
    table.add_row("key id", row["key_id"])
    table.add_row("label", escape(row["label"]) or "-")
    table.add_row("secret", row["secret"])
    out.print(table)
    err.print(
        "[yellow]store the secret now: it is not shown again. Sign with it by setting "
        f"IMAGEPIPE_SIGNING_KEY_ID={row['key_id']} and IMAGEPIPE_SIGNING_SECRET=<the secret>"
        "[/yellow]"
    )


def draw_tenant_settings(row: JsonObject) -> None:
    table = _properties()
    for key, value in row.items():
        shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
        table.add_row(key.replace("_", "-"), shown)
    out.print(table)
