"""``imagepipe upload``: files and folders in; the batch itself is imagepipe.cli.batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imagepipe.cli.batch import expand_paths, upload_files
from imagepipe.cli.running import JsonOption, parse_labels, run
from imagepipe.client import AsyncClient

__all__ = ["upload"]


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
    labels = parse_labels(label)
    files = expand_paths(paths)

    async def command(client: AsyncClient) -> int:
        return await upload_files(
            client,
            files,
            labels=labels,
            wait_timeout=wait_timeout if wait else None,
            as_json=as_json,
        )

    run(command, as_json=as_json)
