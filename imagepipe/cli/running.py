"""How a command runs: a client from the environment, errors reported, the exit status.

Every command builds an async function of the client and hands it to :func:`run`
(it returns the exit status) or :func:`run_view` (it returns a View to show). An
ImagepipeError or a local file error that escapes is reported like any other error,
and the exit status is 1; 0 only when everything succeeded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

import typer

from imagepipe.cli.output import View, error_view, local_error, show
from imagepipe.client import AsyncClient, ImagepipeError, parse_formats
from imagepipe.v1 import common_pb2

__all__ = ["JsonOption", "each_id", "parse_accept", "parse_labels", "run", "run_view"]

JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object per line on stdout, no tables.")
]

_Result = TypeVar("_Result")


def run(command: Callable[[AsyncClient], Awaitable[int]], *, as_json: bool) -> None:
    """Run one command against a client from the environment; exit with its status."""

    async def body() -> int:
        async with AsyncClient.from_env() as client:
            return await command(client)

    try:
        status = asyncio.run(body())
    except ImagepipeError as error:
        show(error_view(error), as_json=as_json)
        status = 1
    except OSError as error:  # a local file (e.g. rendition -o) could not be written
        show(error_view(local_error(error)), as_json=as_json)
        status = 1
    raise typer.Exit(status)


def run_view(view_of: Callable[[AsyncClient], Awaitable[View]], *, as_json: bool) -> None:
    """Run a command that answers once: show its View, exit 0."""

    async def command(client: AsyncClient) -> int:
        show(await view_of(client), as_json=as_json)
        return 0

    run(command, as_json=as_json)


async def each_id(
    ids: Sequence[str],
    call: Callable[[str], Awaitable[_Result]],
    view_of: Callable[[str, _Result], View],
    *,
    as_json: bool,
    id_field: str,
) -> int:
    """Call the server once per id, in order, showing each answer as it comes; an
    error is reported and the rest still run. Exit status 1 if any failed."""
    failed = 0
    for item in ids:
        try:
            result = await call(item)
        except ImagepipeError as error:
            failed += 1
            show(error_view(error, {id_field: item}), as_json=as_json)
            continue
        show(view_of(item, result), as_json=as_json)
    return 1 if failed else 0


def parse_labels(values: Sequence[str] | None) -> dict[str, str]:
    """``--label KEY=VALUE`` options as a dict."""
    labels: dict[str, str] = {}
    for value in values or ():
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = text
    return labels


def parse_accept(value: str) -> list[common_pb2.ImageFormat.ValueType]:
    """``--accept webp,jpeg`` as formats in preference order."""
    try:
        return parse_formats([value]) if value else []
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--accept") from None
