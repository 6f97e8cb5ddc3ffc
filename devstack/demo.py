"""What `make run` shows: sample photos pushed through the CLI, then a summary table."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from devstack import scrape_metric
from devstack.gallery import collect_gallery, write_gallery
from imagepipe.client import AsyncClient, ImagepipeError
from imagepipe.v1 import (
    quality_pb2,
    renderer_pb2,
    renderer_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from services.shared.settings import Settings

__all__ = ["DemoResult", "ensure_demo_key", "run_demo", "write_demo_gallery"]

DEMO_TENANT = "demo"
PRESET_ORDER = ("thumb", "card", "zoom")
PSNR_GOOD = 30.0
DONE_LABEL = 'outcome="done"'
SSIM_GOOD = 0.9


@dataclass
class DemoResult:
    ok: bool
    uploads: list[dict[str, Any]]

    @property
    def asset_ids(self) -> list[str]:
        """The assets uploaded, each once (a deduplicated upload names an earlier one)."""
        return list(dict.fromkeys(u["asset_id"] for u in self.uploads if "asset_id" in u))


def write_demo_gallery(settings: Settings, key: str, asset_ids: list[str], path: Path) -> Path:
    """var/gallery.html: the demo uploads through delivery URLs the catalog signs."""
    with (
        grpc.insecure_channel(f"127.0.0.1:{settings.catalog_port}") as catalog,
        grpc.insecure_channel(f"127.0.0.1:{settings.quality_port}") as quality,
    ):
        entries = collect_gallery(catalog, quality, key, asset_ids)
    return write_gallery(path, entries, title="imagepipe: the demo uploads")


def client_env(settings: Settings, api_key: str) -> dict[str, str]:
    host = "127.0.0.1"
    return {
        "IMAGEPIPE_API_KEY": api_key,
        "IMAGEPIPE_INGEST_ADDR": f"{host}:{settings.ingest_port}",
        "IMAGEPIPE_CATALOG_ADDR": f"{host}:{settings.catalog_port}",
        "IMAGEPIPE_RENDERER_ADDR": f"{host}:{settings.renderer_port}",
        "IMAGEPIPE_QUALITY_ADDR": f"{host}:{settings.quality_port}",
    }


def _key_works(settings: Settings, key: str) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{settings.renderer_port}") as channel:
        try:
            renderer_pb2_grpc.RendererServiceStub(channel).ListPresets(
                renderer_pb2.ListPresetsRequest(),
                metadata=(("authorization", f"Bearer {key}"),),
                timeout=10,
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return False
            raise
    return True


def ensure_demo_key(settings: Settings, demo_file: Path) -> str:
    """The demo tenant's key from var/demo.env, created (or re-issued) when needed."""
    stored = (
        dict(line.split("=", 1) for line in demo_file.read_text().splitlines() if "=" in line)
        if demo_file.exists()
        else {}
    )
    key = stored.get("IMAGEPIPE_API_KEY", "")
    if key and _key_works(settings, key):
        return key
    admin = (("authorization", f"Bearer {settings.admin_key.get_secret_value()}"),)
    with grpc.insecure_channel(f"127.0.0.1:{settings.catalog_port}") as channel:
        stub = tenant_admin_pb2_grpc.TenantAdminServiceStub(channel)
        try:
            key = stub.CreateTenant(
                tenant_admin_pb2.CreateTenantRequest(name=DEMO_TENANT), metadata=admin, timeout=10
            ).secret_key
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            # The tenant survived but its key file did not: issue a new key.
            tenants = stub.ListTenants(
                tenant_admin_pb2.ListTenantsRequest(page_size=500), metadata=admin, timeout=10
            ).tenants
            tenant_id = next(t.tenant_id for t in tenants if t.name == DEMO_TENANT)
            key = stub.CreateApiKey(
                tenant_admin_pb2.CreateApiKeyRequest(tenant_id=tenant_id, label="make run"),
                metadata=admin,
                timeout=10,
            ).secret_key
    demo_file.write_text(f"IMAGEPIPE_API_KEY={key}\n")
    demo_file.chmod(0o600)
    return key


def _upload_with_cli(files: list[Path], env: dict[str, str]) -> list[dict[str, Any]]:
    """`imagepipe upload --wait --json`: its progress bar shows on the terminal."""
    result = subprocess.run(
        [sys.executable, "-m", "imagepipe.cli", "upload", "--wait", "--json", *map(str, files)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=600,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


async def _presets(env: dict[str, str]) -> list[renderer_pb2.Preset]:
    async with AsyncClient.from_env(env) as client:
        return await client.list_presets()


async def _compare_all(
    asset_ids: list[str], env: dict[str, str]
) -> dict[str, quality_pb2.CompareResponse]:
    scores: dict[str, quality_pb2.CompareResponse] = {}
    async with AsyncClient.from_env(env) as client:
        for asset_id in asset_ids:
            try:
                scores[asset_id] = await client.compare(asset_id)
            except ImagepipeError:
                continue
    return scores


def _preset_cells(
    upload: dict[str, Any], response: quality_pb2.CompareResponse | None
) -> tuple[list[str], bool]:
    """Per preset: size, PSNR and SSIM; and whether all of them are good."""
    sizes = {r["preset"]: f"{r['width']}×{r['height']}" for r in upload.get("renditions", [])}
    scored = {r.preset: r for r in response.renditions} if response else {}
    cells, good = [], True
    for preset in PRESET_ORDER:
        rendition = scored.get(preset)
        if rendition is None or preset not in sizes:
            cells.append("-")
            good = False
            continue
        db = math.inf if rendition.scores.psnr_infinite else rendition.scores.psnr_db
        ssim = rendition.scores.ssim
        good &= db > PSNR_GOOD and ssim > SSIM_GOOD
        shown_db = "inf" if math.isinf(db) else f"{db:.1f}"
        cells.append(f"{sizes[preset]:>9} {shown_db:>4}dB {ssim:.3f}")
    return cells, good


def _results_table(
    uploads: list[dict[str, Any]], scores: dict[str, quality_pb2.CompareResponse]
) -> tuple[Table, bool]:
    """One row per uploaded file; whether every upload is ready with good renditions."""
    table = Table(title="imagepipe: what happened (size, PSNR, SSIM per preset)")
    for column in ("file", "asset id", "dedup", "status", *PRESET_ORDER):
        table.add_column(column, no_wrap=True)
    ok = True
    for upload in uploads:
        name = Path(upload.get("file", "?")).name
        if "error" in upload:
            ok = False
            error = upload["error"]
            table.add_row(
                name, "-", "-", f"[red]{error.get('code', 'refused')}", error.get("message", "")
            )
            continue
        cells, good = _preset_cells(upload, scores.get(upload["asset_id"]))
        ok &= good and upload.get("status") == "ready"
        table.add_row(
            name,
            upload["asset_id"],
            "[yellow]yes" if upload.get("deduplicated") else "no",
            upload.get("status", "?"),
            *cells,
        )
    return table, ok


def _print_metrics(settings: Settings, console: Console) -> None:
    uploads_total = scrape_metric(settings.ingest_metrics_port, "imagepipe_uploads_total")
    renders = scrape_metric(settings.renderer_metrics_port, "imagepipe_render_attempts_total")

    def count(samples: dict[str, float], label: str) -> int:
        return int(sum(v for k, v in samples.items() if label in k))

    console.print(
        "metrics (since the services started): "
        f"uploads stored={count(uploads_total, 'stored')} "
        f"deduplicated={count(uploads_total, 'deduplicated')} "
        f"refused={count(uploads_total, 'refused')}; "
        f"render attempts done={count(renders, DONE_LABEL)} failed={count(renders, 'failed')}"
    )


def run_demo(settings: Settings, key: str, corpus: Path, console: Console) -> DemoResult:
    photos = sorted(corpus.glob("photo_*"))
    files = [*photos, photos[0]]  # the first one twice: the second is deduplicated
    env = {**os.environ, **client_env(settings, key)}
    presets = asyncio.run(_presets(env))
    console.print(
        "\nThe renderer makes: "
        + ", ".join(f"{p.name} (fits {p.max_width}x{p.max_height})" for p in presets)
    )
    console.print(f"Uploading {len(files)} files ({len(photos)} photos, one of them twice):")
    uploads = _upload_with_cli(files, env)
    asset_ids = list(dict.fromkeys(u["asset_id"] for u in uploads if "asset_id" in u))
    scores = asyncio.run(_compare_all(asset_ids, env))

    table, all_good = _results_table(uploads, scores)
    ok = all_good and len(uploads) == len(files)
    console.print(table)
    verdict = (
        "every rendition PSNR > 30 dB and SSIM > 0.9" if ok else "[red]NOT all renditions good"
    )
    stored = sum(1 for u in uploads if "asset_id" in u and not u.get("deduplicated"))
    deduplicated = sum(1 for u in uploads if u.get("deduplicated"))
    console.print(f"{stored} stored, {deduplicated} deduplicated; {verdict}")
    _print_metrics(settings, console)
    return DemoResult(ok=ok, uploads=uploads)
