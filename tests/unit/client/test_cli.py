"""The `imagepipe` CLI: its JSON shapes, and the real command against the fake server.

The command runs as a subprocess (`python -m imagepipe.cli`) because it starts its own
event loop, while this test's loop keeps serving the fake.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import grpc
import pytest
import typer

from imagepipe.cli.batch import expand_paths
from imagepipe.cli.commands.delivery import parse_lifetime
from imagepipe.cli.commands.settings import parse_switch
from imagepipe.cli.shapes import (
    asset_json,
    compare_json,
    created_signing_key_json,
    delivery_link_json,
    error_json,
    psnr_value,
    rendition_json,
    signing_key_json,
    tenant_settings_json,
    upload_json,
)
from imagepipe.client import (
    AsyncClient,
    CreatedSigningKey,
    DeliveryLink,
    ImagepipeError,
    UploadResult,
)
from imagepipe.delivery import canonical_string, parse_query, verify
from imagepipe.v1 import common_pb2, quality_pb2
from tests.unit.client.fakes import (
    DELIVERY_BASE,
    HTML,
    PLACEHOLDER,
    RENDITIONS,
    TENANT_ID,
    FakeServer,
)

REPO = Path(__file__).resolve().parents[3]
UPLOAD_KEYS = {
    "file",
    "asset_id",
    "deduplicated",
    "status",
    "content_hash",
    "width",
    "height",
    "renditions",
}
RENDITION_KEYS = {"preset", "width", "height", "bytes", "format"}


async def _cli(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run the CLI; returns the exit status, stdout parsed line by line, and stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "imagepipe.cli",
        *args,
        env={**clean, **env, "COLUMNS": "200"},
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    lines = [json.loads(line) for line in stdout.decode().splitlines()] if "--json" in args else []
    assert process.returncode is not None
    return process.returncode, lines, stdout.decode() + stderr.decode()


def _asset(status: common_pb2.AssetStatus.ValueType) -> common_pb2.Asset:
    return common_pb2.Asset(
        asset_id="a-1",
        status=status,
        content_hash="ab" * 32,
        width=640,
        height=480,
        renditions=RENDITIONS,
    )


def test_upload_json_shape() -> None:
    result = UploadResult(
        asset=_asset(common_pb2.ASSET_STATUS_PENDING),
        deduplicated=True,
        near_duplicates=(common_pb2.SimilarAsset(asset_id="a-0", distance=3),),
        request_id="r-1",
    )
    row = upload_json("photos/a.jpg", result)
    assert row.keys() >= UPLOAD_KEYS
    assert row["file"] == "photos/a.jpg"
    assert row["deduplicated"] is True
    assert row["status"] == "pending"
    assert row["near_duplicates"] == [{"asset_id": "a-0", "distance": 3}]
    assert row["renditions"][0] == {
        "preset": "card",
        "width": 400,
        "height": 300,
        "bytes": 9000,
        "format": "jpeg",
        "quality": 0,
        "version": RENDITIONS[0].version,
    }
    # After --wait the waited-for asset wins over the upload's snapshot.
    waited = upload_json("a.jpg", result, _asset(common_pb2.ASSET_STATUS_READY))
    assert waited["status"] == "ready"
    json.dumps(row)  # serialisable as is

    described = asset_json(_asset(common_pb2.ASSET_STATUS_FAILED))
    assert described["status"] == "failed"
    assert "file" not in described and "deduplicated" not in described


def test_error_and_compare_json() -> None:
    error = ImagepipeError(
        grpc.StatusCode.INVALID_ARGUMENT, "bad", reason="IMAGE_TRUNCATED", request_id="r"
    )
    assert error_json(error) == {
        "code": "INVALID_ARGUMENT",
        "reason": "IMAGE_TRUNCATED",
        "message": "bad",
        "request_id": "r",
    }
    assert psnr_value(common_pb2.QualityScores(psnr_infinite=True)) == "inf"
    assert psnr_value(common_pb2.QualityScores(psnr_db=41.23456)) == 41.235
    rows = compare_json(
        quality_pb2.CompareResponse(
            asset_id="a-1",
            renditions=[
                quality_pb2.RenditionQuality(
                    preset="thumb",
                    width=100,
                    height=75,
                    size_bytes=900,
                    original_size_bytes=120_000,
                    scores=common_pb2.QualityScores(psnr_infinite=True, ssim=1.0),
                    min_ssim=0.95,
                    measured_at_render=True,
                )
            ],
        )
    )
    assert rows == [
        {
            "asset_id": "a-1",
            "preset": "thumb",
            "format": "unspecified",
            "width": 100,
            "height": 75,
            "bytes": 900,
            "original_bytes": 120_000,
            "quality": 0,
            "psnr_db": "inf",
            "ssim": 1.0,
            "hash_distance": 0,
            "good": False,
            "min_ssim": 0.95,
            "measured_at_render": True,
        }
    ]


def test_placeholder_and_render_time_scores_in_json() -> None:
    asset = _asset(common_pb2.ASSET_STATUS_READY)
    asset.placeholder.CopyFrom(
        common_pb2.Placeholder(thumbhash="1QcSHQRnh493V4dIh4eXh1h4kJUI", dominant_color="#56525a")
    )
    targeted = common_pb2.Rendition(
        preset="zoom",
        width=1200,
        height=800,
        size_bytes=70_000,
        format=common_pb2.IMAGE_FORMAT_JPEG,
        quality=31,
        min_ssim=0.95,
        scores=common_pb2.QualityScores(psnr_db=33.12345, ssim=0.950321, hash_distance=1),
    )
    asset.renditions.append(targeted)
    described = asset_json(asset)
    assert described["thumbhash"] == "1QcSHQRnh493V4dIh4eXh1h4kJUI"
    assert described["dominant_color"] == "#56525a"
    assert described["renditions"][-1] == {
        "preset": "zoom",
        "width": 1200,
        "height": 800,
        "bytes": 70_000,
        "format": "jpeg",
        "quality": 31,
        "min_ssim": 0.95,
        "psnr_db": 33.123,
        "ssim": 0.95032,
    }
    # Before rendering there is no placeholder yet: empty strings, not missing keys.
    pending = asset_json(_asset(common_pb2.ASSET_STATUS_PENDING))
    assert (pending["thumbhash"], pending["dominant_color"]) == ("", "")


def test_folders_expand_to_their_files_sorted(tmp_path: Path) -> None:
    for name in ("b/2.jpg", "b/1.jpg", "a.jpg", "b/c/0.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    single = tmp_path / "a.jpg"
    assert expand_paths([tmp_path / "b", single]) == [
        tmp_path / "b/1.jpg",
        tmp_path / "b/2.jpg",
        tmp_path / "b/c/0.jpg",
        single,
    ]


async def test_upload_json_lines_and_exit_status(fake: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "one.jpg").write_bytes(b"\xff\xd8\xff one")
    (tmp_path / "good" / "two.jpg").write_bytes(b"\xff\xd8\xff two")
    (tmp_path / "page.jpg").write_bytes(HTML)

    status, lines, _ = await _cli(
        fake.env(),
        "upload",
        "--json",
        "--label",
        "batch=7",
        str(tmp_path / "good"),
        str(tmp_path / "page.jpg"),
        str(tmp_path / "missing.jpg"),
    )

    assert status != 0
    assert [line["file"] for line in lines] == [
        str(tmp_path / "good" / "one.jpg"),
        str(tmp_path / "good" / "two.jpg"),
        str(tmp_path / "page.jpg"),
        str(tmp_path / "missing.jpg"),
    ]
    for line in lines[:2]:
        assert line.keys() >= UPLOAD_KEYS
        assert line["status"] == "pending"
        assert line["labels"] == {"batch": "7"}
    refused = lines[2]["error"]
    assert refused["code"] == "INVALID_ARGUMENT"
    assert refused["reason"] == "IMAGE_UNSUPPORTED_FORMAT"
    assert refused["message"]
    assert lines[3]["error"]["code"] == "NOT_FOUND"


async def test_upload_wait_and_the_other_commands(fake: FakeServer, tmp_path: Path) -> None:
    photo = tmp_path / "one.jpg"
    photo.write_bytes(b"\xff\xd8\xff one")

    status, (line,), _ = await _cli(fake.env(), "upload", "--wait", "--json", str(photo))
    assert status == 0
    assert line["status"] == "ready"
    assert [r["preset"] for r in line["renditions"]] == ["card", "thumb"]
    assert all(r.keys() >= RENDITION_KEYS for r in line["renditions"])

    status, (got,), _ = await _cli(fake.env(), "get", "--json", line["asset_id"])
    assert status == 0 and got["asset_id"] == line["asset_id"]
    assert (got["thumbhash"], got["dominant_color"]) == (
        PLACEHOLDER.thumbhash,
        PLACEHOLDER.dominant_color,
    )
    status, _, text = await _cli(fake.env(), "get", line["asset_id"])
    assert status == 0
    assert f"thumbhash        {PLACEHOLDER.thumbhash}" in text
    assert f"dominant colour  {PLACEHOLDER.dominant_color}" in text

    status, scores, _ = await _cli(fake.env(), "compare", "--json", "a-1")
    assert status == 0
    assert [s["psnr_db"] for s in scores] == [38.25, "inf"]

    target = tmp_path / "card.jpg"
    status, (written,), _ = await _cli(
        fake.env(), "rendition", "a-1", "card", "-o", str(target), "--json"
    )
    assert status == 0 and written["file"] == str(target)
    assert target.read_bytes() == fake.catalog.rendition_bytes

    status, (link,), _ = await _cli(
        fake.env(), "rendition", "a-1", "card", "--accept", "webp,jpeg", "--json"
    )
    assert status == 0 and link["url"].startswith("http://") and link["url_expire_time"]

    status, (tenant,), _ = await _cli(fake.env(), "tenant", "create", "acme", "--json")
    assert status == 0 and tenant["name"] == "acme" and tenant["api_key"].startswith("ip_")


async def test_human_output_has_tables_and_red_errors(fake: FakeServer, tmp_path: Path) -> None:
    status, _, text = await _cli(fake.env(), "presets", "list")
    assert status == 0
    assert "zoom" in text and "1200×1200" in text and "defaults" in text

    status, _, text = await _cli(fake.env(), "compare", "a-1")
    assert status == 0 and "inf" in text and "38.25" in text

    status, _, text = await _cli(fake.env(), "get", "no-such-asset")
    assert status == 1
    assert "NOT_FOUND" in text and "no such asset" in text


async def test_missing_keys_fail_clearly(fake: FakeServer, tmp_path: Path) -> None:
    env = {k: v for k, v in fake.env().items() if not k.endswith("_KEY")}
    status, (line,), _ = await _cli(env, "upload", "--json", str(tmp_path))
    assert status == 1
    assert line["error"]["reason"] == "API_KEY_MISSING"
    status, _, text = await _cli(env, "tenant", "create", "acme")
    assert status == 1 and "IMAGEPIPE_ADMIN_KEY" in text
    assert fake.recorder.calls == {}


async def test_upload_json_stays_on_stdout_when_the_bar_shows(
    fake: FakeServer, tmp_path: Path
) -> None:
    # stderr on a terminal (as under `make run`, which pipes only stdout): the progress bar
    # shows there, and the JSON lines must still reach stdout, not follow the bar.
    (tmp_path / "one.jpg").write_bytes(b"\xff\xd8\xff one")
    status, lines, _ = await _cli(
        {**fake.env(), "FORCE_COLOR": "1"}, "upload", "--json", str(tmp_path / "one.jpg")
    )
    assert status == 0
    assert [line["file"] for line in lines] == [str(tmp_path / "one.jpg")]


async def test_an_unknown_status_filter_is_a_usage_error(fake: FakeServer) -> None:
    status, _, output = await _cli(fake.env(), "list", "--status", "bogus")
    assert status == 2
    assert "unknown asset status 'bogus'" in output
    assert "Traceback" not in output


# -- delivery URLs, signing keys, settings -----------------------------------------


def test_delivery_shapes() -> None:
    link = DeliveryLink(
        url="https://img.example.test/v1/t/a/card.jpg?v=0a1b2c3d4e5f6071&e=4102444800&k=k&s=s",
        version="0a1b2c3d4e5f6071",
        expire_time=datetime(2100, 1, 1, tzinfo=UTC),
        key_id="00ff00ff00ff00ff",
    )
    assert delivery_link_json("a-1", "card", "jpeg", link, signer="client") == {
        "asset_id": "a-1",
        "preset": "card",
        "format": "jpeg",
        "url": link.url,
        "version": "0a1b2c3d4e5f6071",
        "expire_time": "2100-01-01T00:00:00Z",
        "key_id": "00ff00ff00ff00ff",
        "signed": True,
        "signed_by": "client",
    }
    unsigned = DeliveryLink(url="u", version="v", expire_time=None, key_id="")
    row = delivery_link_json("a-1", "card", None, unsigned, signer="server")
    assert (row["format"], row["expire_time"], row["key_id"], row["signed"]) == (
        None,
        None,
        None,
        False,
    )
    assert row["signed_by"] is None

    key = common_pb2.SigningKey(key_id="00ff00ff00ff00ff", label="www")
    key.create_time.FromSeconds(4102444800)
    assert signing_key_json(key) == {
        "key_id": "00ff00ff00ff00ff",
        "label": "www",
        "created": "2100-01-01T00:00:00Z",
        "revoked": None,
    }
    created = created_signing_key_json(CreatedSigningKey(signing_key=key, secret="s" * 43))
    assert created["secret"] == "s" * 43 and created["key_id"] == key.key_id
    assert tenant_settings_json(common_pb2.TenantSettings(unsigned_delivery=True)) == {
        "unsigned_delivery": True,
        "keep_gps": False,
    }
    # Renditions show their version once the server sends one.
    assert rendition_json(RENDITIONS[0])["version"] == RENDITIONS[0].version
    assert "version" not in rendition_json(common_pb2.Rendition(preset="card"))


def test_lifetimes_and_switches_parse_or_are_usage_errors() -> None:
    assert parse_lifetime(None) is None
    assert [parse_lifetime(v) for v in ("90", "90s", "30m", "1h", "7d", " 2H ")] == [
        90,
        90,
        1800,
        3600,
        7 * 86400,
        7200,
    ]
    for bad in ("0", "1w", "-5", "soon", ""):
        with pytest.raises(typer.BadParameter):
            parse_lifetime(bad)
    assert [parse_switch(v) for v in ("true", "On", "yes", "1", "false", "off", "no", "0")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    with pytest.raises(typer.BadParameter):
        parse_switch("maybe")


async def _ready_asset_id(fake: FakeServer) -> str:
    fake.catalog.reads_until_ready = 0
    async with AsyncClient.from_env(fake.env()) as client:
        uploaded = await client.upload(io.BytesIO(b"\xff\xd8\xff photo"), filename="p.jpg")
    return uploaded.asset_id


def _signature_verifies(url: str, secret: str) -> bool:
    split = urlsplit(url)
    parsed = parse_query(dict(parse_qsl(split.query)))
    assert parsed is not None and parsed.signature is not None
    path = split.path.removeprefix(urlsplit(DELIVERY_BASE).path)
    canonical = canonical_string(
        path, version=parsed.version, expires=parsed.expires, key_id=parsed.key_id
    )
    return verify(secret, canonical, parsed.signature)


async def test_signing_keys_then_urls_signed_here_and_by_the_server(fake: FakeServer) -> None:
    asset_id = await _ready_asset_id(fake)

    status, (created,), _ = await _cli(
        fake.env(), "signing-keys", "create", "--label", "www", "--json"
    )
    assert status == 0 and created["label"] == "www" and len(created["secret"]) >= 43
    status, _, text = await _cli(fake.env(), "signing-keys", "create")
    assert status == 0 and "store the secret now" in text

    env = {
        **fake.env(),
        "IMAGEPIPE_DELIVERY_URL": DELIVERY_BASE,
        "IMAGEPIPE_SIGNING_KEY_ID": created["key_id"],
        "IMAGEPIPE_SIGNING_SECRET": created["secret"],
    }
    args = ("url", asset_id, "card", "--format", "jpeg", "--expires", "1h", "--json")
    status, (local,), _ = await _cli(env, *args)
    assert status == 0 and local["signed_by"] == "client"
    assert local["url"].startswith(f"{DELIVERY_BASE}/v1/{TENANT_ID}/{asset_id}/card.jpg?v=")
    assert _signature_verifies(local["url"], created["secret"])
    status, (served,), _ = await _cli(env, *args, "--server")
    assert status == 0 and served["signed_by"] == "server"
    assert (served["version"], served["key_id"]) == (local["version"], created["key_id"])
    assert _signature_verifies(served["url"], created["secret"])

    # For people: the URL alone on stdout, so `$(imagepipe url …)` is the URL.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "imagepipe.cli",
        "url",
        asset_id,
        "thumb",
        env={**os.environ, **env},
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    (line,) = stdout.decode().splitlines()
    assert line.startswith(f"{DELIVERY_BASE}/v1/") and "?v=" in line and "&s=" in line
    assert created["secret"] not in stderr.decode()

    status, keys, _ = await _cli(fake.env(), "signing-keys", "list", "--json")
    assert status == 0 and len(keys) == 2 and keys[0]["key_id"] == created["key_id"]
    assert all("secret" not in k for k in keys)
    status, (revoked,), _ = await _cli(
        fake.env(), "signing-keys", "revoke", created["key_id"], "--json"
    )
    assert status == 0 and revoked["revoked"]
    status, (unknown,), _ = await _cli(
        fake.env(), "signing-keys", "revoke", "0000000000000000", "--json"
    )
    assert status == 1 and unknown["error"]["reason"] == "SIGNING_KEY_NOT_FOUND"


async def test_unsigned_urls_and_tenant_settings(fake: FakeServer) -> None:
    asset_id = await _ready_asset_id(fake)

    status, _, text = await _cli(fake.env(), "url", asset_id, "card")
    assert status == 0 and "unsigned URL" in text and "unsigned-delivery true" in text
    status, (row,), _ = await _cli(fake.env(), "url", asset_id, "card", "--json")
    assert row["signed"] is False and "&s=" not in row["url"] and row["format"] is None

    status, (shown,), _ = await _cli(fake.env(), "settings", "show", "--json")
    assert status == 0 and shown == {"unsigned_delivery": False, "keep_gps": False}
    status, (changed,), _ = await _cli(
        fake.env(), "settings", "set", "unsigned-delivery", "true", "--json"
    )
    assert status == 0 and changed == {"unsigned_delivery": True, "keep_gps": False}
    status, (kept,), _ = await _cli(fake.env(), "settings", "set", "keep-gps", "on", "--json")
    assert status == 0 and kept == {"unsigned_delivery": True, "keep_gps": True}
    assert fake.catalog.signing.masks[-1] == ["keep_gps"]
    status, _, text = await _cli(fake.env(), "settings", "show")
    assert status == 0 and "unsigned-delivery  true" in text
    # The server signs nothing without a key once unsigned delivery is on.
    status, (served,), _ = await _cli(fake.env(), "url", asset_id, "thumb", "--server", "--json")
    assert status == 0 and served["signed"] is False


async def test_delivery_usage_errors_and_refusals(fake: FakeServer) -> None:
    asset_id = await _ready_asset_id(fake)
    for args, complaint in (
        (("url", asset_id, "card", "--expires", "soon"), "not a lifetime"),
        (("url", asset_id, "card", "--format", "png"), "png"),
        (("settings", "set", "unsigned-delivery", "maybe"), "neither true nor false"),
        (("settings", "set", "gps", "true"), "gps"),
    ):
        status, _, output = await _cli(fake.env(), *args)
        assert status == 2, args
        assert complaint in output and "Traceback" not in output
    status, (missing,), _ = await _cli(
        fake.env(), "url", asset_id, "card", "--format", "avif", "--json"
    )
    assert status == 1 and missing["error"]["reason"] == "FORMAT_NOT_AVAILABLE"
    half = {**fake.env(), "IMAGEPIPE_SIGNING_KEY_ID": "00ff00ff00ff00ff"}
    status, _, output = await _cli(half, "url", asset_id, "card")
    assert status == 1 and "IMAGEPIPE_SIGNING_SECRET" in output


def _photo_metadata() -> common_pb2.AssetMetadata:
    metadata = common_pb2.AssetMetadata(
        capture_time_offset="+02:00",
        camera_make="Apple",
        camera_model="iPhone 6",
        exposure_time_seconds=0.025,
        f_number=2.2,
        iso=32,
        title="[bold]Plaza[/bold]",
        keywords=["plaza", "madrid"],
        gps=common_pb2.GpsPosition(latitude=40.446972, longitude=-3.724753, altitude_meters=640),
    )
    metadata.capture_time.FromDatetime(datetime(2015, 4, 10, 18, 12, 23, tzinfo=UTC))
    return metadata


def test_asset_json_shows_only_the_metadata_the_original_gives() -> None:
    asset = common_pb2.Asset(asset_id="a-1", metadata=_photo_metadata())
    assert asset_json(asset)["metadata"] == {
        "capture_time": "2015-04-10T18:12:23Z",
        "capture_time_offset": "+02:00",
        "camera_make": "Apple",
        "camera_model": "iPhone 6",
        "exposure_time_seconds": 0.025,
        "f_number": 2.2,
        "iso": 32,
        "title": "[bold]Plaza[/bold]",
        "keywords": ["plaza", "madrid"],
        "gps": {"latitude": 40.446972, "longitude": -3.724753, "altitude_meters": 640.0},
    }
    assert asset_json(common_pb2.Asset(asset_id="a-2"))["metadata"] == {}


async def _dated_assets(fake: FakeServer) -> list[str]:
    """Three uploads captured on 1, 2 and 3 May 2024, labelled by shop, and one undated."""
    ids = []
    async with AsyncClient.from_env(fake.env()) as client:
        for day, shop in ((1, "eu"), (2, "eu"), (3, "us"), (0, "eu")):
            uploaded = await client.upload(
                io.BytesIO(b"\xff\xd8\xff photo %d" % day), filename="p.jpg", labels={"shop": shop}
            )
            ids.append(uploaded.asset_id)
            if day:
                stored = next(a for a in fake.catalog.store.values() if a.asset_id == ids[-1])
                stored.metadata.capture_time.FromDatetime(datetime(2024, 5, day, 9, tzinfo=UTC))
    return ids


async def test_list_filters_by_label_and_capture_time(fake: FakeServer) -> None:
    first, second, third, undated = await _dated_assets(fake)

    status, rows, _ = await _cli(fake.env(), "list", "--label", "shop=eu", "--json")
    assert status == 0 and {r["asset_id"] for r in rows} == {first, second, undated}
    status, rows, _ = await _cli(
        fake.env(),
        "list",
        "--captured-from",
        "2024-05-02",
        "--captured-to",
        "2024-05-03T09:00:00+00:00",
        "--json",
    )
    assert status == 0 and [r["asset_id"] for r in rows] == [second]
    status, rows, _ = await _cli(
        fake.env(), "list", "--label", "shop=eu", "--captured-from", "2024-05-02", "--json"
    )
    assert status == 0 and [r["asset_id"] for r in rows] == [second]
    sent = fake.catalog.list_requests[-1]
    assert dict(sent.labels) == {"shop": "eu"} and not sent.HasField("capture_time_to")
    assert sent.capture_time_from.ToDatetime(tzinfo=UTC) == datetime(2024, 5, 2, tzinfo=UTC)
    assert third not in {r["asset_id"] for r in rows}


async def test_list_filter_usage_errors(fake: FakeServer) -> None:
    for args, complaint in (
        (("list", "--label", "shop"), "key=value"),
        (("list", "--label", "=eu"), "key=value"),
        (("list", "--captured-from", "yesterday"), "ISO 8601"),
    ):
        status, _, output = await _cli(fake.env(), *args)
        assert status == 2, args
        assert complaint in output and "Traceback" not in output
    assert not fake.catalog.list_requests


async def test_get_shows_the_metadata_to_people(fake: FakeServer) -> None:
    asset_id = await _ready_asset_id(fake)
    stored = next(a for a in fake.catalog.store.values() if a.asset_id == asset_id)
    stored.metadata.CopyFrom(_photo_metadata())
    status, _, text = await _cli(fake.env(), "get", asset_id)
    assert status == 0
    for shown in ("iPhone 6", "1/40 s", "f/2.2", "plaza, madrid", "40.446972, -3.724753 (640 m)"):
        assert shown in text, shown
    # Text from the file is shown as written, never read as markup.
    assert "[bold]Plaza[/bold]" in text
    status, (row,), _ = await _cli(fake.env(), "get", asset_id, "--json")
    assert row["metadata"]["camera_model"] == "iPhone 6"
