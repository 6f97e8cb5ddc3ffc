"""Tenant presets and re-renders: ``presets list|set|delete``, ``focus``, ``rerender``
and ``backfill get``."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from imagepipe.cli.output import View, draw_asset, draw_backfill, draw_presets, err, out, show
from imagepipe.cli.running import JsonOption, run, run_view
from imagepipe.cli.shapes import backfill_json, preset_json
from imagepipe.client import AsyncClient, parse_formats
from imagepipe.v1 import catalog_pb2, common_pb2, renderer_pb2

__all__ = [
    "Chroma",
    "Fit",
    "Gravity",
    "Scope",
    "backfill_get",
    "focus",
    "preset_message",
    "presets_delete",
    "presets_list",
    "presets_set",
    "rerender",
]

# How often `rerender` asks how its backfill is doing.
POLL_SECONDS = 1.0


class Fit(StrEnum):
    inside = "inside"
    cover = "cover"


class Gravity(StrEnum):
    centre = "centre"
    entropy = "entropy"
    attention = "attention"
    focal = "focal"


class Chroma(StrEnum):
    c420 = "4:2:0"
    c444 = "4:4:4"


class Scope(StrEnum):
    all = "all"
    missing = "missing"
    outdated = "outdated"


_FIT = {Fit.inside: common_pb2.FIT_INSIDE, Fit.cover: common_pb2.FIT_COVER}
_GRAVITY = {
    Gravity.centre: common_pb2.GRAVITY_CENTRE,
    Gravity.entropy: common_pb2.GRAVITY_ENTROPY,
    Gravity.attention: common_pb2.GRAVITY_ATTENTION,
    Gravity.focal: common_pb2.GRAVITY_FOCAL,
}
_CHROMA = {
    Chroma.c420: common_pb2.CHROMA_SUBSAMPLING_420,
    Chroma.c444: common_pb2.CHROMA_SUBSAMPLING_444,
}


def presets_list(as_json: JsonOption = False) -> None:
    """List the tenant's presets (the service defaults while it has none of its own)."""

    async def view(client: AsyncClient) -> View:
        found = await client.list_tenant_presets()
        rows = [preset_json(p) | {"defaults": found.defaults} for p in found.presets]
        title = "the service defaults (no presets of its own yet)" if found.defaults else None
        return View(rows, lambda: draw_presets(rows, title))

    run_view(view, as_json=as_json)


def preset_message(
    name: str,
    options: dict[str, object],
) -> tuple[renderer_pb2.Preset, list[str]]:
    """The Preset message `presets set` sends and the fields it names (the update
    mask when the preset exists): only the options given."""
    preset = renderer_pb2.Preset(name=name)
    fields: list[str] = []
    setters = {
        "max_width": lambda v: setattr(preset, "max_width", v),
        "max_height": lambda v: setattr(preset, "max_height", v),
        "fit": lambda v: setattr(preset, "fit", _FIT[v]),
        "gravity": lambda v: setattr(preset, "gravity", _GRAVITY[v]),
        "formats": lambda v: preset.formats.extend(_formats(v)),
        "quality": lambda v: setattr(preset, "quality", v),
        "min_ssim": lambda v: setattr(preset, "min_ssim", v),
        "chroma_subsampling": lambda v: setattr(preset, "chroma_subsampling", _CHROMA[v]),
    }
    for field, value in options.items():
        if value is not None:
            setters[field](value)
            fields.append(field)
    return preset, fields


def _formats(value: object) -> list[common_pb2.ImageFormat.ValueType]:
    try:
        return parse_formats([str(value)])
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--formats") from None


# Typer reads each command-line option from a parameter of its own.
def presets_set(  # noqa: PLR0913, PLR0917
    name: Annotated[str, typer.Argument(help="Preset name, e.g. card.")],
    width: Annotated[int | None, typer.Option("--width", help="Box width (1-8192).")] = None,
    height: Annotated[int | None, typer.Option("--height", help="Box height (1-8192).")] = None,
    fit: Annotated[Fit | None, typer.Option(help="inside (default) or cover.")] = None,
    gravity: Annotated[
        Gravity | None, typer.Option(help="What a cover crop keeps (default centre).")
    ] = None,
    formats: Annotated[
        str | None, typer.Option(help="Comma-separated, e.g. jpeg,webp (default jpeg).")
    ] = None,
    quality: Annotated[int | None, typer.Option(help="Fixed quality 1-100 (default 85).")] = None,
    min_ssim: Annotated[
        float | None, typer.Option("--min-ssim", help="Smallest quality reaching this SSIM.")
    ] = None,
    chroma: Annotated[Chroma | None, typer.Option(help="4:2:0 (default) or 4:4:4.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a preset, or change the options given of an existing one (new version;
    `imagepipe rerender --scope outdated` re-renders what it made)."""
    preset, fields = preset_message(
        name,
        {
            "max_width": width,
            "max_height": height,
            "fit": fit,
            "gravity": gravity,
            "formats": formats,
            "quality": quality,
            "min_ssim": min_ssim,
            "chroma_subsampling": chroma,
        },
    )

    async def view(client: AsyncClient) -> View:
        stored, created = await client.set_preset(preset, fields)
        row = preset_json(stored) | {"created": created}
        return View([row], lambda: draw_presets([row], "created" if created else "updated"))

    run_view(view, as_json=as_json)


def presets_delete(
    name: Annotated[str, typer.Argument(help="The preset to delete.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a preset: its renditions are no longer served; Purge reclaims them."""

    async def view(client: AsyncClient) -> View:
        await client.delete_preset(name)
        row = {"name": name, "deleted": True}
        return View([row], lambda: out.print(f"deleted preset {name}"))

    run_view(view, as_json=as_json)


def focus(
    asset_id: Annotated[str, typer.Argument(help="The asset's id.")],
    x: Annotated[float | None, typer.Argument(help="From the left edge, 0 to 1.")] = None,
    y: Annotated[float | None, typer.Argument(help="From the top edge, 0 to 1.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the focal point.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Set an asset's focal point (or --clear it); its cover presets are re-rendered."""
    given = x is not None or y is not None
    if clear == given or (not clear and (x is None or y is None)):
        raise typer.BadParameter("give X and Y, or --clear (not both)", param_hint="X Y")
    point = (x, y) if x is not None and y is not None else None

    async def view(client: AsyncClient) -> View:
        response = await client.set_focal_point(asset_id, point)
        asset = response.asset
        row = {
            "asset_id": asset.asset_id,
            "focal_point": (
                {"x": asset.focal_point.x, "y": asset.focal_point.y}
                if asset.HasField("focal_point")
                else None
            ),
            "job_id": response.job_id or None,
        }
        rerendering = f"re-rendering (job {response.job_id})" if response.job_id else "no re-render"

        def draw() -> None:
            draw_asset(asset)
            out.print(rerendering)

        return View([row], draw)

    run_view(view, as_json=as_json)


def rerender(
    preset: Annotated[str, typer.Option(help="Select by this preset (default: every one).")] = "",
    scope: Annotated[Scope, typer.Option(help="Which assets (ignored with --asset).")] = Scope.all,
    asset: Annotated[
        list[str] | None, typer.Option("--asset", help="Re-render these assets (repeatable).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the backfill until it finishes.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Re-render the tenant's ready assets (a backfill) and follow its progress."""
    asset_ids = list(asset or [])
    chosen = "asset_ids" if asset_ids else scope.value

    async def command(client: AsyncClient) -> int:
        backfill = await client.start_backfill(chosen, preset=preset, asset_ids=asset_ids)
        if wait:
            backfill = await _follow(client, backfill, as_json=as_json)
        row = backfill_json(backfill)
        show(View([row], lambda: draw_backfill(row)), as_json=as_json)
        return 1 if backfill.failed else 0

    run(command, as_json=as_json)


async def _follow(
    client: AsyncClient, backfill: catalog_pb2.Backfill, *, as_json: bool
) -> catalog_pb2.Backfill:
    """Poll GetBackfill until it is finished, with a progress bar on stderr."""
    with Progress(
        TextColumn("re-rendering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=err,
        disable=as_json and not err.is_terminal,
    ) as progress:
        task = progress.add_task("backfill", total=backfill.total, failed=0)
        while backfill.state != catalog_pb2.BACKFILL_STATE_FINISHED:
            await asyncio.sleep(POLL_SECONDS)
            backfill = await client.get_backfill(backfill.backfill_id)
            progress.update(task, completed=backfill.done + backfill.failed, failed=backfill.failed)
        progress.update(task, completed=backfill.total)
    return backfill


def backfill_get(
    backfill_id: Annotated[str, typer.Argument(help="The backfill's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show a backfill's progress."""

    async def view(client: AsyncClient) -> View:
        row = backfill_json(await client.get_backfill(backfill_id))
        return View([row], lambda: draw_backfill(row))

    run_view(view, as_json=as_json)
