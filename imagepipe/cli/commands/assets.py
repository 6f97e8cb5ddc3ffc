"""Asset commands: get, list, delete, similar, watch."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import partial
from typing import Annotated

import typer

from imagepipe.cli.output import View, draw_asset, draw_assets, draw_similar, out, show
from imagepipe.cli.running import JsonOption, each_id, run, run_view
from imagepipe.cli.shapes import asset_json, similar_json
from imagepipe.client import AsyncClient, parse_status, status_name
from imagepipe.v1 import common_pb2

__all__ = ["delete", "get", "list_command", "similar", "watch"]


def get(
    asset_id: Annotated[str, typer.Argument(help="The asset's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show an asset and its renditions."""

    async def view(client: AsyncClient) -> View:
        asset = await client.get_asset(asset_id)
        return View([asset_json(asset)], lambda: draw_asset(asset))

    run_view(view, as_json=as_json)


def _known_status(value: str | None) -> str | None:
    """Refuse an unknown status as a usage error (exit 2), before any call."""
    if value is not None:
        try:
            parse_status(value)
        except ValueError as error:
            raise typer.BadParameter(
                f"{error}; one of pending, processing, ready, failed"
            ) from None
    return value


def _label_pairs(values: list[str] | None) -> list[str] | None:
    """Refuse a --label that is not key=value as a usage error (exit 2)."""
    for value in values or ():
        key, equals, _ = value.partition("=")
        if not key or not equals:
            raise typer.BadParameter(f"{value!r} is not key=value", param_hint="--label")
    return values


def _moment(value: str | None) -> datetime | None:
    """An ISO 8601 date (midnight UTC) or date and time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date (2024-05-01) or time (2024-05-01T12:00+02:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def list_command(
    status: Annotated[
        str | None,
        typer.Option(
            help="Only assets in this status (pending, ready, failed …).", callback=_known_status
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            help="Only assets with this label, as key=value (repeat: every one must match).",
            callback=_label_pairs,
        ),
    ] = None,
    captured_from: Annotated[
        str | None,
        typer.Option(help="Only assets captured at or after this ISO date or time (UTC)."),
    ] = None,
    captured_to: Annotated[
        str | None,
        typer.Option(help="Only assets captured before this ISO date or time (UTC)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List live assets, newest first."""
    labels = dict(pair.partition("=")[::2] for pair in label or ())
    start, end = _moment(captured_from), _moment(captured_to)

    async def view(client: AsyncClient) -> View:
        found: list[common_pb2.Asset] = []
        listed = client.list_assets(
            status,
            labels=labels,
            captured_from=start,
            captured_to=end,
            page_size=min(limit, 500),
        )
        async for asset in listed:
            found.append(asset)
            if len(found) >= limit:
                break
        return View([asset_json(a) for a in found], lambda: draw_assets(found))

    run_view(view, as_json=as_json)


def delete(
    asset_ids: Annotated[list[str], typer.Argument(help="Assets to delete.")],
    as_json: JsonOption = False,
) -> None:
    """Soft-delete assets (their objects are reclaimed by `imagepipe purge --apply`)."""

    def deleted(asset_id: str, asset: common_pb2.Asset) -> View:
        return View([asset_json(asset)], lambda: out.print(f"deleted {asset_id}"))

    async def command(client: AsyncClient) -> int:
        return await each_id(
            asset_ids, client.delete_asset, deleted, as_json=as_json, id_field="asset_id"
        )

    run(command, as_json=as_json)


def similar(
    target: Annotated[str, typer.Argument(help="An asset id, or a 16-hex-digit perceptual hash.")],
    max_distance: Annotated[
        int, typer.Option(help="Largest Hamming distance (0: the server's threshold).")
    ] = 0,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Near duplicates, closest first."""

    async def view(client: AsyncClient) -> View:
        by_hash = len(target) == 16 and all(c in "0123456789abcdefABCDEF" for c in target)
        found = await client.find_similar(
            asset_id="" if by_hash else target,
            perceptual_hash=target.lower() if by_hash else "",
            max_distance=max_distance,
            limit=limit,
        )
        rows = [similar_json(a) for a in found]
        return View(rows, lambda: draw_similar(rows))

    run_view(view, as_json=as_json)


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
            line = partial(out.print, f"{asset.asset_id}  {status_name(asset.status)}")
            show(View([asset_json(asset)], line), as_json=as_json)
        return 0 if last is not None and last.status == common_pb2.ASSET_STATUS_READY else 1

    run(command, as_json=as_json)
