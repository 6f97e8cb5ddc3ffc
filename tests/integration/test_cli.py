"""The `imagepipe` CLI as a user runs it, against the real stack."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack import Stack
from imagepipe.v1 import catalog_internal_pb2, catalog_internal_pb2_grpc, catalog_pb2
from tests.helpers import Services, Tenant, register_directly

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
PHOTOS = (
    "photo_craft-beer_6000x4000.jpg",
    "photo_iphone6_gps.jpg",
    "photo_moto_g9_empty_gps.jpg",
    "photo_olympus_ep3_12mp.jpg",
)
PRESET_BOXES = {"thumb": 100, "card": 400, "zoom": 1200}
STATUSES = {"pending", "processing", "ready", "failed", "deleted"}


@dataclass(frozen=True)
class Run:
    status: int
    lines: list[dict[str, Any]]
    stderr: str


def _cli(stack: Stack, tenant: Tenant, *args: str, timeout: float = 100) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    env["IMAGEPIPE_API_KEY"] = tenant.key
    for service in ("ingest", "catalog", "renderer", "quality"):
        env[f"IMAGEPIPE_{service.upper()}_ADDR"] = stack.address(service)
    done = subprocess.run(
        [sys.executable, "-m", "imagepipe.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        lines = [json.loads(line) for line in done.stdout.splitlines()]
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not JSON lines:\n{done.stdout}\nstderr:\n{done.stderr}")
    return Run(done.returncode, lines, done.stderr)


def _photos(corpus: Path) -> list[str]:
    return [str(corpus / name) for name in PHOTOS]


def _check_upload_line(line: dict[str, Any], file: str) -> None:
    assert "error" not in line, line
    assert line["file"] == file
    assert len(line["asset_id"]) == 36
    assert line["deduplicated"] is False
    assert line["status"] in STATUSES
    assert len(line["content_hash"]) == 64
    assert line["width"] > 0 and line["height"] > 0
    assert isinstance(line["renditions"], list)


def test_upload_json_prints_one_line_per_photo(
    stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    tenant = make_tenant("cli")
    photos = _photos(corpus)

    run = _cli(stack, tenant, "upload", "--json", "--label", "source=cli", *photos)

    assert run.status == 0, run.stderr
    assert len(run.lines) == len(photos)
    for line, file in zip(run.lines, photos, strict=True):
        _check_upload_line(line, file)
        assert line["labels"] == {"source": "cli"}
    assert len({line["asset_id"] for line in run.lines}) == len(photos)

    again = _cli(stack, tenant, "upload", "--json", photos[0])
    assert again.status == 0
    assert again.lines[0]["deduplicated"] is True
    assert again.lines[0]["asset_id"] == run.lines[0]["asset_id"]

    got = _cli(stack, tenant, "get", "--json", run.lines[1]["asset_id"])
    assert got.status == 0
    (asset,) = got.lines
    assert asset["asset_id"] == run.lines[1]["asset_id"]
    assert asset["content_hash"] == run.lines[1]["content_hash"]
    assert asset["status"] in STATUSES


def test_a_refused_file_fails_the_run_but_not_the_others(
    stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    tenant = make_tenant("cli")
    photos = _photos(corpus)
    refused = str(corpus / "invalid_html_404.jpg")
    files = [photos[0], refused, *photos[1:]]

    run = _cli(stack, tenant, "upload", "--json", *files)

    assert run.status != 0
    assert [line["file"] for line in run.lines] == files
    error = run.lines[1]["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["reason"]
    assert error["message"]
    for line in [run.lines[0], *run.lines[2:]]:
        _check_upload_line(line, line["file"])


def test_unknown_asset_is_reported_with_its_code(
    stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    run = _cli(stack, make_tenant("cli"), "get", "--json", "00000000-0000-4000-8000-000000000000")
    assert run.status != 0
    assert run.lines[0]["error"]["code"] == "NOT_FOUND"


def test_upload_wait_yields_ready_assets_with_three_renditions(
    stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    tenant = make_tenant("cli")
    photos = _photos(corpus)

    run = _cli(
        stack, tenant, "upload", "--wait", "--wait-timeout", "90", "--json", *photos, timeout=110
    )

    assert run.status == 0, (run.lines, run.stderr)
    assert len(run.lines) == len(photos)
    for line, file in zip(run.lines, photos, strict=True):
        _check_upload_line(line, file)
        assert line["status"] == "ready"
        renditions = {r["preset"]: r for r in line["renditions"]}
        assert len(line["renditions"]) == 3
        assert set(renditions) == set(PRESET_BOXES)
        for preset, box in PRESET_BOXES.items():
            r = renditions[preset]
            assert r["format"] == "jpeg"
            assert r["bytes"] > 0
            # Fits the box, touches it on the long side (the photos are larger), and
            # keeps the aspect ratio to within rounding.
            assert max(r["width"], r["height"]) == box, (preset, r, line)
            assert abs(r["width"] * line["height"] - r["height"] * line["width"]) <= max(
                line["width"], line["height"]
            ), (preset, r, line)


def test_poison_list_and_retry(stack: Stack, services: Services, tenant: Tenant) -> None:
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    digest = hashlib.sha256(b"cli-poison" + tenant.tenant_id.encode()).hexdigest()
    doomed = register_directly(
        services, tenant, content_hash=digest, width=2, height=2, size_bytes=10
    )
    internal.RecordPoisonJob(
        catalog_internal_pb2.RecordPoisonJobRequest(
            request=doomed.render_request,
            error="original unreadable",
            reason=catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
        ),
        metadata=services.internal_metadata,
    )
    listed = _cli(stack, tenant, "poison", "list", "--json")
    assert listed.status == 0, listed.stderr
    (poison,) = listed.lines
    assert (poison["job_id"], poison["reason"], poison["replayed"]) == (
        doomed.job.job_id,
        "retries_exhausted",
        None,
    )
    retried = _cli(stack, tenant, "poison", "retry", poison["poison_job_id"], "--json")
    assert retried.status == 0, retried.stderr
    assert retried.lines[0]["job_id"] == doomed.job.job_id
    assert _cli(stack, tenant, "poison", "list", "--json").lines == []
    (replayed,) = _cli(stack, tenant, "poison", "list", "--all", "--json").lines
    assert replayed["replayed"] is not None
    unknown = _cli(
        stack, tenant, "poison", "retry", "00000000-0000-0000-0000-000000000000", "--json"
    )
    assert unknown.status != 0 and unknown.lines[0]["error"]["code"] == "NOT_FOUND"


def test_catalog_commands(stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path) -> None:
    tenant = make_tenant("cli-ops")
    uploaded = _cli(
        stack,
        tenant,
        "upload",
        "--wait",
        "--json",
        str(corpus / "bmp_hopper_24bit.bmp"),
        str(corpus / "png_rgba_dice.png"),
    )
    assert uploaded.status == 0, uploaded.stderr
    keep, drop = (line["asset_id"] for line in uploaded.lines)

    listed = _cli(stack, tenant, "list", "--json")
    assert {line["asset_id"] for line in listed.lines} == {keep, drop}
    assert all(line["status"] == "ready" for line in listed.lines)

    watched = _cli(stack, tenant, "watch", keep, "--json")
    assert watched.status == 0 and [line["status"] for line in watched.lines] == ["ready"]

    similar = _cli(stack, tenant, "similar", keep, "--json", "--max-distance", "11")
    assert all(line["distance"] <= 11 for line in similar.lines)
    assert keep not in {line["asset_id"] for line in similar.lines}

    deleted = _cli(stack, tenant, "delete", drop, "--json")
    assert deleted.status == 0 and deleted.lines[0]["status"] == "deleted"

    (metrics,) = _cli(stack, tenant, "metrics", "--json").lines
    assert metrics["assets"] == 1 and metrics["assets_by_status"] == {"ready": 1, "deleted": 1}
    assert metrics["renditions"] == 3 and metrics["deduplication_saved_bytes"] == 0

    (planned,) = _cli(stack, tenant, "purge", "--older-than", "0", "--json").lines
    assert planned["dry_run"] is True and planned["objects"] == 4  # 3 renditions + the original
    (done,) = _cli(stack, tenant, "purge", "--apply", "--older-than", "0", "--json").lines
    assert done["dry_run"] is False and done["bytes"] == planned["bytes"] > 0
    assert done["asset_rows_removed"] == 1
