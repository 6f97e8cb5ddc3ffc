"""R9.1-R9.3 end to end, on a stack of its own whose presets ask for them: zoom for an
SSIM target of 0.95, card also as WebP and AVIF. Placeholders come with any preset."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from PIL import Image

from devstack import ServerMissing, Stack, StackConfig, scrape_metric
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    quality_pb2,
    quality_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from services.renderer.resample import downscale
from services.shared.imaging.metrics import score
from services.shared.imaging.normalize import fit_within, load_srgb
from tests.helpers import (
    Services,
    Tenant,
    error_info,
    secrets_in_logs,
    stack_secrets,
    upload,
    wait_for_status,
)

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus"
PHOTO = "photo_olympus_ep3_12mp.jpg"
PRESETS = (
    '[{"name":"zoom","max_width":1200,"max_height":1200,"min_ssim":0.95},'
    '{"name":"card","max_width":400,"max_height":400,"formats":["jpeg","webp","avif"],'
    '"chroma_subsampling":"4:4:4"},'
    '{"name":"thumb","max_width":100,"max_height":100,"chroma_subsampling":"4:4:4"}]'
)
JPEG, WEBP, AVIF = (
    common_pb2.IMAGE_FORMAT_JPEG,
    common_pb2.IMAGE_FORMAT_WEBP,
    common_pb2.IMAGE_FORMAT_AVIF,
)
PILLOW_NAME: dict[int, str] = {JPEG: "JPEG", WEBP: "WEBP", AVIF: "AVIF"}


@pytest.fixture(scope="module")
def modern() -> Iterator[tuple[Stack, Services, Tenant]]:
    """Its own stack (the session's runs the default presets), one tenant, one photo."""
    work_dir = Path(tempfile.mkdtemp(prefix="imagepipe-beyond-"))
    running = Stack(StackConfig.from_env(work_dir, extra_env={"IMAGEPIPE_PRESETS": PRESETS}))
    try:
        with running.running():
            services = Services.open(running)
            created = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog).CreateTenant(
                tenant_admin_pb2.CreateTenantRequest(name="beyond"),
                metadata=services.admin_metadata,
                timeout=10,
            )
            tenant = Tenant(created.tenant.tenant_id, created.secret_key)
            try:
                yield running, services, tenant
            finally:
                services.close()
            leaks = secrets_in_logs(
                running.log_dir, {**stack_secrets(running), "tenant key": tenant.key}
            )
            assert not leaks, f"secrets in service logs: {leaks}"
    except ServerMissing as error:
        pytest.fail(str(error), pytrace=False)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def asset(modern: tuple[Stack, Services, Tenant]) -> common_pb2.Asset:
    _, services, tenant = modern
    uploaded = upload(services, tenant, (CORPUS / PHOTO).read_bytes(), PHOTO)
    ready = wait_for_status(services, tenant, uploaded.asset.asset_id, timeout=60)
    assert ready.status == common_pb2.ASSET_STATUS_READY
    return ready


def _get(
    services: Services, tenant: Tenant, asset_id: str, preset: str, accept: list[int]
) -> catalog_pb2.GetRenditionResponse:
    response: catalog_pb2.GetRenditionResponse = catalog_pb2_grpc.CatalogServiceStub(
        services.catalog
    ).GetRendition(
        catalog_pb2.GetRenditionRequest(
            asset_id=asset_id,
            preset=preset,
            accept_formats=accept,  # type: ignore[arg-type]
        ),
        metadata=tenant.metadata,
        timeout=10,
    )
    return response


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: bytes = response.read()
    return data


def test_every_format_is_stored_and_listed(
    modern: tuple[Stack, Services, Tenant], asset: common_pb2.Asset
) -> None:
    stack, _, tenant = modern
    assert sorted((r.preset, r.format) for r in asset.renditions) == sorted(
        [("zoom", JPEG), ("card", JPEG), ("card", WEBP), ("card", AVIF), ("thumb", JPEG)]
    )
    prefix = f"renditions/{tenant.tenant_id}/{asset.asset_id}/"
    keys = sorted(
        o.object_name or ""
        for o in stack.s3.client().list_objects(stack.bucket, prefix=prefix, recursive=True)
    )
    names = ("card.avif", "card.jpg", "card.webp", "thumb.jpg", "zoom.jpg")
    # <preset>.<16 hex digits of the bytes' SHA-256>.<ext>
    assert sorted(re.sub(r"\.[0-9a-f]{16}\.", ".", key) for key in keys) == [
        prefix + name for name in names
    ]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ([AVIF, WEBP, JPEG], AVIF),
        ([WEBP, AVIF, JPEG], WEBP),
        ([JPEG], JPEG),
        ([JPEG, AVIF], JPEG),
        ([], JPEG),  # no preference: JPEG, which every client decodes
    ],
)
def test_get_rendition_returns_the_first_accepted_format_that_exists(
    modern: tuple[Stack, Services, Tenant],
    asset: common_pb2.Asset,
    accept: list[int],
    expected: int,
) -> None:
    _, services, tenant = modern
    got = _get(services, tenant, asset.asset_id, "card", accept)
    assert got.rendition.format == expected
    data = _download(got.url)
    assert len(data) == got.rendition.size_bytes
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == PILLOW_NAME[expected]
        assert image.size == (got.rendition.width, got.rendition.height)
        assert image.size == fit_within(asset.width, asset.height, 400, 400)
        image.load()


def test_a_format_the_preset_does_not_make_is_refused_with_what_there_is(
    modern: tuple[Stack, Services, Tenant], asset: common_pb2.Asset
) -> None:
    _, services, tenant = modern
    with pytest.raises(grpc.RpcError) as caught:
        _get(services, tenant, asset.asset_id, "thumb", [AVIF, WEBP])
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(caught.value)
    assert info.reason == "FORMAT_NOT_AVAILABLE" and info.metadata["available"] == "jpeg"


def test_read_rendition_streams_the_accepted_format(
    modern: tuple[Stack, Services, Tenant], asset: common_pb2.Asset
) -> None:
    _, services, tenant = modern
    stream = catalog_pb2_grpc.CatalogServiceStub(services.catalog).ReadRendition(
        catalog_pb2.ReadRenditionRequest(
            asset_id=asset.asset_id, preset="card", accept_formats=[AVIF, JPEG]
        ),
        metadata=tenant.metadata,
        timeout=10,
    )
    first, *rest = list(stream)
    assert first.rendition.format == AVIF
    data = b"".join(m.chunk for m in rest)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "AVIF"
        assert image.size == (first.rendition.width, first.rendition.height)


def test_bytes_are_counted_per_format(
    modern: tuple[Stack, Services, Tenant], asset: common_pb2.Asset
) -> None:
    stack, services, tenant = modern
    metrics = catalog_pb2_grpc.CatalogServiceStub(services.catalog).GetTenantMetrics(
        catalog_pb2.GetTenantMetricsRequest(), metadata=tenant.metadata, timeout=10
    )
    by_format = {f.format: f.size_bytes for f in metrics.renditions_by_format}
    card = {r.format: r.size_bytes for r in asset.renditions if r.preset == "card"}
    assert by_format[WEBP] == card[WEBP] and by_format[AVIF] == card[AVIF]
    # The renderer's counter (this stack's only asset, written at least once).
    written = scrape_metric(stack.metrics_ports["renderer"], "imagepipe_rendition_bytes_total")
    assert written['{format="avif"}'] >= card[AVIF] > 0
    assert written['{format="webp"}'] >= card[WEBP] > 0


def test_the_quality_target_is_met_stored_and_returned_as_measured(
    modern: tuple[Stack, Services, Tenant], asset: common_pb2.Asset
) -> None:
    _, services, tenant = modern
    zoom = next(r for r in asset.renditions if r.preset == "zoom")
    assert zoom.min_ssim == pytest.approx(0.95)
    assert zoom.HasField("scores") and zoom.scores.ssim >= 0.95
    assert 1 <= zoom.quality < 85, "this photo reaches 0.95 well below the default q85"
    # Fixed-quality presets measure nothing at render time.
    assert all(not r.HasField("scores") and r.min_ssim == 0 for r in asset.renditions if r != zoom)

    # The stored scores are those of the stored bytes against the renderer's reference.
    got = _get(services, tenant, asset.asset_id, "zoom", [JPEG])
    assert got.rendition.scores == zoom.scores and got.rendition.quality == zoom.quality
    stored = Image.open(io.BytesIO(_download(got.url))).convert("RGB")
    reference, full = load_srgb(
        io.BytesIO((CORPUS / PHOTO).read_bytes()), 10**8, boxes=[(1200, 1200)]
    )
    reference = downscale(reference, fit_within(*full, 1200, 1200))
    measured = score(reference, stored)
    assert zoom.scores.ssim == pytest.approx(measured.ssim, abs=1e-9)
    assert zoom.scores.psnr_db == pytest.approx(measured.psnr_db, abs=1e-6)
    assert zoom.scores.hash_distance == measured.hash_distance

    # Compare returns them as stored, and measures only the other renditions.
    compared = quality_pb2_grpc.QualityServiceStub(services.quality).Compare(
        quality_pb2.CompareRequest(asset_id=asset.asset_id), metadata=tenant.metadata, timeout=60
    )
    rows = {(r.preset, r.format): r for r in compared.renditions}
    assert len(rows) == 5
    assert rows["zoom", JPEG].measured_at_render
    assert rows["zoom", JPEG].scores == zoom.scores
    assert rows["zoom", JPEG].min_ssim == pytest.approx(0.95)
    assert rows["zoom", JPEG].quality == zoom.quality
    others = [r for key, r in rows.items() if key != ("zoom", JPEG)]
    assert all(not r.measured_at_render and r.scores.ssim > 0.9 and r.good for r in others)


def test_get_asset_and_the_cli_show_the_placeholder(
    modern: tuple[Stack, Services, Tenant], asset: common_pb2.Asset
) -> None:
    stack, _, tenant = modern
    placeholder = asset.placeholder
    assert 5 <= len(placeholder.thumbhash) <= 36  # base64 of at most 25 bytes
    assert len(placeholder.dominant_color) == 7 and placeholder.dominant_color.startswith("#")

    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    env.update(IMAGEPIPE_API_KEY=tenant.key, COLUMNS="200")
    for service in ("ingest", "catalog", "renderer", "quality"):
        env[f"IMAGEPIPE_{service.upper()}_ADDR"] = stack.address(service)
    shown = subprocess.run(
        [sys.executable, "-m", "imagepipe.cli", "get", asset.asset_id],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"thumbhash        {placeholder.thumbhash}" in shown
    assert f"dominant colour  {placeholder.dominant_color}" in shown
    assert "(SSIM ≥ 0.95)" in shown
