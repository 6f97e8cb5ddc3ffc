"""Tenant settings: ``settings show`` and ``settings set NAME VALUE``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Annotated

import typer

from imagepipe.cli.output import View, draw_tenant_settings
from imagepipe.cli.running import JsonOption, run_view
from imagepipe.cli.shapes import tenant_settings_json
from imagepipe.client import AsyncClient
from imagepipe.v1 import common_pb2

__all__ = ["Setting", "parse_switch", "settings_set", "settings_show"]

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class Setting(StrEnum):
    """The settings a tenant changes, as typed on the command line."""

    unsigned_delivery = "unsigned-delivery"
    keep_gps = "keep-gps"


_Update = Callable[[AsyncClient, bool], Awaitable[common_pb2.TenantSettings]]
# One line per setting: how the command changes it.
_UPDATES: Mapping[Setting, _Update] = {
    Setting.unsigned_delivery: lambda c, on: c.update_tenant_settings(unsigned_delivery=on),
    Setting.keep_gps: lambda c, on: c.update_tenant_settings(keep_gps=on),
}


def parse_switch(value: str) -> bool:
    """``true``/``false`` (or yes/no, on/off, 1/0)."""
    word = value.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise typer.BadParameter(f"{value!r} is neither true nor false", param_hint="VALUE")


def settings_show(as_json: JsonOption = False) -> None:
    """Show the tenant's settings."""

    async def view(client: AsyncClient) -> View:
        row = tenant_settings_json(await client.get_tenant_settings())
        return View([row], lambda: draw_tenant_settings(row))

    run_view(view, as_json=as_json)


def settings_set(
    name: Annotated[Setting, typer.Argument(help="The setting to change.", metavar="NAME")],
    value: Annotated[str, typer.Argument(help="true or false.", metavar="VALUE")],
    as_json: JsonOption = False,
) -> None:
    """Change a setting. unsigned-delivery true: delivery also serves unsigned URLs.
    keep-gps true: later uploads keep their GPS position in their metadata."""
    switch = parse_switch(value)

    async def view(client: AsyncClient) -> View:
        row = tenant_settings_json(await _UPDATES[name](client, switch))
        return View([row], lambda: draw_tenant_settings(row))

    run_view(view, as_json=as_json)
