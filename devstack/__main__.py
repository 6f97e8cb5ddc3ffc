"""`python -m devstack run|stop|status`: the local stack behind `make run` and `make stop`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from devstack import ServerMissing
from devstack.demo import ensure_demo_key, run_demo, write_demo_gallery
from devstack.local import LocalStack
from devstack.local import destroy as destroy_stack

ROOT = Path(__file__).resolve().parent.parent
app = typer.Typer(add_completion=False, help="Run imagepipe locally.")
# At least 172 columns: the summary table stays readable when piped or in CI logs.
console = Console(width=max(Console().width, 172))


@app.command()
def run() -> None:
    """Start (or reuse) the stack, push the sample photos through, print the result."""
    stack = LocalStack(ROOT)
    try:
        how = stack.up()
    except ServerMissing as error:
        console.print(f"[red]cannot start: {error}")
        raise typer.Exit(1) from None
    settings = stack.settings()
    console.print(
        f"stack {how}: S3 on {settings.s3_endpoint}, ingest :{settings.ingest_port}, "
        f"catalog :{settings.catalog_port}, renderer :{settings.renderer_port}, "
        f"quality :{settings.quality_port}, delivery {settings.delivery_public_url} "
        "(logs in var/log/)"
    )
    key = ensure_demo_key(settings, stack.demo_file)
    result = run_demo(settings, key, ROOT / "tests" / "corpus", console)
    gallery = write_demo_gallery(settings, key, result.asset_ids, stack.var / "gallery.html")
    console.print(
        f"\n[bold]Gallery:[/bold] open {gallery} in a browser "
        f"(file://{gallery}): each photo through delivery URLs, placeholders first."
    )
    asset_id = next((u["asset_id"] for u in result.uploads if "asset_id" in u), "<asset id>")
    catalog = f"localhost:{settings.catalog_port}"
    console.print(
        f"""
The demo tenant's key is in [bold]var/demo.env[/bold]. Things to try next:

  set -a; . var/demo.env; set +a
  .venv/bin/imagepipe get {asset_id}
  .venv/bin/grpcurl -plaintext -H "authorization: Bearer $IMAGEPIPE_API_KEY" \\
      -d '{{"asset_id": "{asset_id}"}}' {catalog} imagepipe.v1.CatalogService/GetAsset
  .venv/bin/imagepipe rendition {asset_id} card    # a presigned URL: curl -o card.jpg '<url>'
  curl -s {settings.delivery_public_url}/readyz     # delivery: renditions at signed URLs

The stack keeps running; `make stop` stops it."""
    )
    if not result.ok:
        console.print("[red]some uploads did not end ready with good quality scores (see above)")
        raise typer.Exit(1)


@app.command()
def stop() -> None:
    """Stop the processes `run` started (by pid) and what they left in their sessions."""
    stopped = LocalStack(ROOT).stop()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def destroy() -> None:
    """Stop the stack and drop its database and RabbitMQ queues (for `make clean`)."""
    dropped = destroy_stack(LocalStack(ROOT))
    console.print(f"dropped: {', '.join(dropped)}" if dropped else "nothing to drop")


@app.command()
def status() -> None:
    """Which of the stack's processes are running."""
    stack = LocalStack(ROOT)
    running = stack.running()
    for component in stack.components:
        mark = "[green]running" if component.name in running else "[dim]stopped"
        console.print(f"{component.name:9} {mark}")


if __name__ == "__main__":
    app()
