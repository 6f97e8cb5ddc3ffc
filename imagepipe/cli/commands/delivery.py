"""Delivery commands: ``url`` (a rendition's delivery URL) and ``signing-keys``."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

import typer

from imagepipe.cli.output import (
    View,
    draw_created_signing_key,
    draw_delivery_link,
    draw_signing_keys,
    out,
)
from imagepipe.cli.running import JsonOption, each_id, run, run_view
from imagepipe.cli.shapes import created_signing_key_json, delivery_link_json, signing_key_json
from imagepipe.client import AsyncClient
from imagepipe.v1 import common_pb2

__all__ = [
    "DeliveryFormat",
    "parse_lifetime",
    "signing_key_create",
    "signing_key_list",
    "signing_key_revoke",
    "url",
]

_LIFETIME = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class DeliveryFormat(StrEnum):
    """The formats delivery URLs name (no format: negotiated with the browser)."""

    jpeg = "jpeg"
    webp = "webp"
    avif = "avif"


def parse_lifetime(value: str | None) -> int | None:
    """``--expires``: ``90``, ``90s``, ``30m``, ``1h`` or ``7d`` as seconds; None: never."""
    if value is None:
        return None
    match = _LIFETIME.match(value.lower())
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]] if match else 0
    if seconds <= 0:
        raise typer.BadParameter(
            f"{value!r} is not a lifetime: seconds, or a number with s, m, h or d (e.g. 1h)",
            param_hint="--expires",
        )
    return seconds


def url(
    asset_id: Annotated[str, typer.Argument(help="The asset's id.")],
    preset: Annotated[str, typer.Argument(help="Preset name, e.g. card.")],
    image_format: Annotated[
        DeliveryFormat | None,
        typer.Option("--format", help="A URL of this format (default: negotiated by Accept)."),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="Lifetime: seconds, or e.g. 30m, 1h, 7d (default: no expiry)."),
    ] = None,
    server: Annotated[
        bool,
        typer.Option(
            "--server",
            help="Let the catalog sign (no secret needed): with IMAGEPIPE_SIGNING_KEY_ID "
            "if set, else the tenant's newest active key.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Print a rendition's delivery URL, signed with IMAGEPIPE_SIGNING_KEY_ID/_SECRET.

    Without a signing key the URL is unsigned: delivery serves it only while the
    tenant allows unsigned delivery (`imagepipe settings set unsigned-delivery true`).
    """
    seconds = parse_lifetime(expires)
    chosen = None if image_format is None else image_format.value

    async def view(client: AsyncClient) -> View:
        if server:
            link = await client.get_delivery_url(
                asset_id,
                preset,
                chosen,
                ttl_seconds=seconds or 0,
                key_id=client.signing_key_id or "",
            )
        else:
            lifetime = None if seconds is None else timedelta(seconds=seconds)
            link = await client.delivery_link(asset_id, preset, chosen, lifetime)
        row = delivery_link_json(
            asset_id, preset, chosen, link, signer="server" if server else "client"
        )
        return View([row], lambda: draw_delivery_link(row))

    run_view(view, as_json=as_json)


def signing_key_create(
    label: Annotated[str, typer.Option(help="What the key is for, e.g. the site signing.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create a signing key and print its secret (shown only this once)."""

    async def view(client: AsyncClient) -> View:
        row = created_signing_key_json(await client.create_signing_key(label))
        return View([row], lambda: draw_created_signing_key(row))

    run_view(view, as_json=as_json)


def signing_key_list(as_json: JsonOption = False) -> None:
    """List the tenant's signing keys, oldest first, revoked ones included."""

    async def view(client: AsyncClient) -> View:
        rows = [signing_key_json(key) for key in await client.list_signing_keys()]
        return View(rows, lambda: draw_signing_keys(rows))

    run_view(view, as_json=as_json)


def signing_key_revoke(
    key_ids: Annotated[list[str], typer.Argument(help="Signing key ids to revoke.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke signing keys: their URLs stop working within delivery's lookup TTL."""

    def revoked(key_id: str, key: common_pb2.SigningKey) -> View:
        row = signing_key_json(key)
        return View([row], lambda: out.print(f"revoked {key_id} (at {row['revoked']})"))

    async def command(client: AsyncClient) -> int:
        return await each_id(
            key_ids, client.revoke_signing_key, revoked, as_json=as_json, id_field="key_id"
        )

    run(command, as_json=as_json)
