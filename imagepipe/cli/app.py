"""The Typer application: every command, in the order ``--help`` lists them, and main."""

from __future__ import annotations

import typer

from imagepipe.cli.commands import (
    assets,
    delivery,
    jobs,
    presets,
    renditions,
    settings,
    tenants,
    upload,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="imagepipe",
    help="Upload images to imagepipe, inspect assets, renditions and their quality, and "
    "link to them with delivery URLs.\n\n"
    "Keys and addresses come from IMAGEPIPE_API_KEY, IMAGEPIPE_ADMIN_KEY and "
    "IMAGEPIPE_{INGEST,CATALOG,RENDERER,QUALITY}_ADDR; delivery URLs from "
    "IMAGEPIPE_DELIVERY_URL, IMAGEPIPE_SIGNING_KEY_ID and IMAGEPIPE_SIGNING_SECRET.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tenant_app = typer.Typer(help="Manage tenants (needs IMAGEPIPE_ADMIN_KEY).", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
poison_app = typer.Typer(help="Jobs given up on: list and replay them.", no_args_is_help=True)
app.add_typer(poison_app, name="poison")
signing_app = typer.Typer(
    help="Keys that sign delivery URLs: create, list, revoke.", no_args_is_help=True
)
app.add_typer(signing_app, name="signing-keys")
settings_app = typer.Typer(help="The tenant's settings: show and set.", no_args_is_help=True)
app.add_typer(settings_app, name="settings")
presets_app = typer.Typer(
    help="The tenant's rendition presets: list, set (create or change), delete.",
    no_args_is_help=True,
)
app.add_typer(presets_app, name="presets")
backfill_app = typer.Typer(help="Re-renders started by `rerender`.", no_args_is_help=True)
app.add_typer(backfill_app, name="backfill")

app.command()(upload.upload)
app.command()(assets.get)
app.command()(renditions.rendition)
app.command()(renditions.compare)
app.command()(delivery.url)
tenant_app.command("create")(tenants.tenant_create)
app.command("list")(assets.list_command)
app.command()(assets.delete)
app.command()(assets.similar)
app.command()(assets.watch)
app.command()(tenants.metrics)
app.command()(tenants.purge)
poison_app.command("list")(jobs.poison_list)
poison_app.command("retry")(jobs.poison_retry)
signing_app.command("create")(delivery.signing_key_create)
signing_app.command("list")(delivery.signing_key_list)
signing_app.command("revoke")(delivery.signing_key_revoke)
settings_app.command("show")(settings.settings_show)
settings_app.command("set")(settings.settings_set)
presets_app.command("list")(presets.presets_list)
presets_app.command("set")(presets.presets_set)
presets_app.command("delete")(presets.presets_delete)
app.command()(presets.focus)
app.command()(presets.rerender)
backfill_app.command("get")(presets.backfill_get)


def main() -> None:
    app()
