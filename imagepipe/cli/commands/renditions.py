"""Rendition and quality commands: rendition, compare, presets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from imagepipe.cli.output import View, draw_compare, draw_link, draw_written
from imagepipe.cli.running import JsonOption, parse_accept, run_view
from imagepipe.cli.shapes import compare_json, link_json, written_json
from imagepipe.client import AsyncClient

__all__ = ["compare", "rendition"]


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
    formats = parse_accept(accept)

    async def view(client: AsyncClient) -> View:
        if output is not None:
            content = await client.read_rendition_content(asset_id, preset, formats)
            await asyncio.to_thread(output.write_bytes, content.data)
            written = written_json(asset_id, content.rendition, str(output))
            return View([written], lambda: draw_written(written, len(content.data)))
        link = await client.get_rendition(asset_id, preset, formats)
        row = link_json(asset_id, link)
        return View([row], lambda: draw_link(row, link.rendition))

    run_view(view, as_json=as_json)


def compare(
    asset_id: Annotated[str, typer.Argument(help="The asset's id.")],
    as_json: JsonOption = False,
) -> None:
    """Score every rendition against the original: PSNR, SSIM, hash distance."""

    async def view(client: AsyncClient) -> View:
        rows = compare_json(await client.compare(asset_id))
        return View(rows, lambda: draw_compare(asset_id, rows))

    run_view(view, as_json=as_json)
