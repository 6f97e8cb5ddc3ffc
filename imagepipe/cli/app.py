"""The Typer application: every command, in the order ``--help`` lists them, and main."""

from __future__ import annotations

import typer

from imagepipe.cli.commands import assets, jobs, renditions, tenants, upload

__all__ = ["app", "main"]

app = typer.Typer(
    name="imagepipe",
    help="Upload images to imagepipe and inspect assets, renditions and their quality.\n\n"
    "Keys and addresses come from IMAGEPIPE_API_KEY, IMAGEPIPE_ADMIN_KEY and "
    "IMAGEPIPE_{INGEST,CATALOG,RENDERER,QUALITY}_ADDR.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tenant_app = typer.Typer(help="Manage tenants (needs IMAGEPIPE_ADMIN_KEY).", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
poison_app = typer.Typer(help="Jobs given up on: list and replay them.", no_args_is_help=True)
app.add_typer(poison_app, name="poison")

app.command()(upload.upload)
app.command()(assets.get)
app.command()(renditions.rendition)
app.command()(renditions.compare)
app.command()(renditions.presets)
tenant_app.command("create")(tenants.tenant_create)
app.command("list")(assets.list_command)
app.command()(assets.delete)
app.command()(assets.similar)
app.command()(assets.watch)
app.command()(tenants.metrics)
app.command()(tenants.purge)
poison_app.command("list")(jobs.poison_list)
poison_app.command("retry")(jobs.poison_retry)


def main() -> None:
    app()
