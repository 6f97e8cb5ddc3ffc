"""`python -m services.catalog [serve|migrate|create-tenant NAME]`."""

from __future__ import annotations

import asyncio

import typer

from services.catalog import wiring
from services.catalog.db import PgTenantStore, create_pool
from services.catalog.db.migrate import apply_migrations, ensure_database
from services.catalog.usecases.tenants import create_tenant
from services.shared.entrypoint import run_service, secret_values
from services.shared.errors import ImagepipeError
from services.shared.logs import configure_logging
from services.shared.settings import load_settings

app = typer.Typer(add_completion=False, help="The imagepipe catalog service.")


@app.callback(invoke_without_command=True)
def main(context: typer.Context) -> None:
    """Serve the catalog (the default when no command is given)."""
    if context.invoked_subcommand is None:
        run_service("catalog", wiring.build)


@app.command()
def serve() -> None:
    """Serve the catalog gRPC API until SIGTERM."""
    run_service("catalog", wiring.build)


@app.command()
def migrate() -> None:
    """Create the database if needed and apply pending migrations."""
    settings = load_settings()
    configure_logging("catalog", settings.log_level, secret_values(settings))
    dsn = settings.database_url.get_secret_value()

    async def run() -> list[int]:
        await ensure_database(dsn)
        return await apply_migrations(dsn)

    applied = asyncio.run(run())
    typer.echo(f"applied migrations: {applied}" if applied else "database is up to date")


@app.command("create-tenant")
def create_tenant_command(name: str) -> None:
    """Create a tenant and print its first API key (shown once)."""
    settings = load_settings()
    configure_logging("catalog", settings.log_level, secret_values(settings))

    async def run() -> str:
        pool = await create_pool(settings.database_url.get_secret_value(), 1)
        try:
            created = await create_tenant(
                PgTenantStore(pool), name=name, pepper=settings.key_pepper.get_secret_value()
            )
            return created.secret_key
        finally:
            await pool.close()

    try:
        typer.echo(asyncio.run(run()))
    except ImagepipeError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
