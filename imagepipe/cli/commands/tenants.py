"""Tenant commands: ``tenant create`` (admin), and the tenant's own metrics and purge."""

from __future__ import annotations

from typing import Annotated

import typer

from imagepipe.cli.output import View, draw_metrics, draw_purge, draw_tenant
from imagepipe.cli.running import JsonOption, run_view
from imagepipe.cli.shapes import metrics_json, purge_json, tenant_json
from imagepipe.client import AsyncClient

__all__ = ["metrics", "purge", "tenant_create"]


def tenant_create(
    name: Annotated[str, typer.Argument(help="Unique name: a-z, 0-9, - and _.")],
    as_json: JsonOption = False,
) -> None:
    """Create a tenant and print its first API key (shown only once)."""

    async def view(client: AsyncClient) -> View:
        client.require_admin_key()
        row = tenant_json(await client.create_tenant(name))
        return View([row], lambda: draw_tenant(row))

    run_view(view, as_json=as_json)


def metrics(as_json: JsonOption = False) -> None:
    """What the tenant stores: assets, renditions, bytes, deduplication, jobs."""

    async def view(client: AsyncClient) -> View:
        row = metrics_json(await client.tenant_metrics())
        return View([row], lambda: draw_metrics(row))

    run_view(view, as_json=as_json)


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

    async def view(client: AsyncClient) -> View:
        row = purge_json(await client.purge(apply=apply, older_than_days=older_than))
        return View([row], lambda: draw_purge(row))

    run_view(view, as_json=as_json)
