"""AsyncClient against a real grpc.aio server with fake servicers (no imagepipe stack)."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import grpc
import pytest

from imagepipe.client import (
    CHUNK_SIZE,
    RETRYABLE_READS,
    AsyncClient,
    ImagepipeError,
    format_name,
    parse_formats,
    service_config,
    status_name,
)
from imagepipe.v1 import (
    catalog_pb2,
    common_pb2,
    quality_pb2,
    renderer_pb2,
    tenant_admin_pb2,
)
from tests.unit.client.fakes import ADMIN_KEY, HTML, TENANT_KEY, FakeServer

MIB = 1024 * 1024


def _image(size: int) -> bytes:
    """Not a real image; the fake ingest only refuses what looks like markup."""
    return (b"\xff\xd8\xff" + os.urandom(64))[:size].ljust(size, b"\x00")


async def test_every_call_sends_the_bearer_key_and_a_request_id(
    client: AsyncClient, fake: FakeServer
) -> None:
    await client.list_presets()
    await client.list_presets(request_id="req-given")
    (first_method, first), (_, second) = fake.recorder.metadata
    assert first_method == "ListPresets"
    assert first["authorization"] == f"Bearer {TENANT_KEY}"
    assert len(first["x-request-id"]) >= 16
    assert second["x-request-id"] == "req-given"
    assert first["x-request-id"] != second["x-request-id"]


async def test_admin_calls_send_the_admin_key(client: AsyncClient, fake: FakeServer) -> None:
    created = await client.create_tenant("acme")
    assert created.tenant.name == "acme"
    assert created.secret_key == TENANT_KEY
    assert TENANT_KEY not in repr(created)
    assert fake.recorder.metadata[-1][1]["authorization"] == f"Bearer {ADMIN_KEY}"


async def test_a_missing_key_fails_before_any_call(fake: FakeServer) -> None:
    env = {k: v for k, v in fake.env().items() if k != "IMAGEPIPE_API_KEY"}
    async with AsyncClient.from_env(env) as client:
        with pytest.raises(ImagepipeError) as missing:
            await client.get_asset("a-1")
        with pytest.raises(ImagepipeError) as missing_upload:
            await client.upload(io.BytesIO(b"x"), filename="x.jpg")
    assert missing.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert missing.value.reason == "API_KEY_MISSING"
    assert "IMAGEPIPE_API_KEY" in missing.value.message
    assert missing_upload.value.reason == "API_KEY_MISSING"
    assert fake.recorder.calls == {}


def test_from_env_defaults_and_overrides() -> None:
    client = AsyncClient.from_env({"IMAGEPIPE_API_KEY": "k"})
    assert client.addresses == {
        "ingest": "127.0.0.1:50051",
        "catalog": "127.0.0.1:50052",
        "renderer": "127.0.0.1:50053",
        "quality": "127.0.0.1:50054",
    }
    assert client.timeout == 30.0
    other = AsyncClient.from_env({"IMAGEPIPE_QUALITY_ADDR": "q:1"}, timeout=5.0)
    assert other.addresses["quality"] == "q:1"
    assert other.timeout == 5.0
    # Uploads get more time the bigger they are.
    assert other.upload_timeout(50 * MIB) > other.upload_timeout(MIB) > other.timeout


async def test_upload_sends_the_header_first_then_1_mib_chunks(
    client: AsyncClient, fake: FakeServer, tmp_path: Path
) -> None:
    data = _image(2 * MIB + 12345)
    path = tmp_path / "holiday.jpg"
    path.write_bytes(data)
    progress: list[int] = []

    result = await client.upload(path, labels={"album": "summer"}, on_progress=progress.append)

    (stream,) = fake.ingest.streams
    assert stream[0].WhichOneof("part") == "header"
    assert stream[0].header.filename == "holiday.jpg"
    assert stream[0].header.content_type == "image/jpeg"
    assert dict(stream[0].header.labels) == {"album": "summer"}
    assert all(m.WhichOneof("part") == "chunk" for m in stream[1:])
    assert [len(m.chunk) for m in stream[1:]] == [CHUNK_SIZE, CHUNK_SIZE, 12345]
    assert b"".join(m.chunk for m in stream[1:]) == data
    assert progress[0] == 0 and progress[-1] == len(data)
    assert result.asset.size_bytes == len(data)
    assert not result.deduplicated
    assert result.request_id == fake.recorder.metadata[-1][1]["x-request-id"]

    again = await client.upload(io.BytesIO(data), filename="copy.jpg")
    assert again.deduplicated and again.asset_id == result.asset_id


class _Trickle(io.RawIOBase):
    """A non-seekable stream that returns short reads, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), 100_000, len(self._data))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


async def test_short_reads_still_make_full_chunks(client: AsyncClient, fake: FakeServer) -> None:
    data = _image(MIB + 10)
    await client.upload(_Trickle(data), filename="pipe.jpg")  # type: ignore[arg-type]
    (stream,) = fake.ingest.streams
    assert [len(m.chunk) for m in stream[1:]] == [CHUNK_SIZE, 10]


async def test_upload_is_replayed_from_the_start_after_unavailable(
    client: AsyncClient, fake: FakeServer
) -> None:
    data = _image(MIB + 1)
    fake.recorder.unavailable["Upload"] = 1
    source = io.BytesIO(b"ignored prefix" + data)
    source.seek(len(b"ignored prefix"))

    result = await client.upload(source, filename="retry.jpg")

    assert fake.recorder.calls["Upload"] == 2
    first, second = fake.ingest.streams
    for stream in (first, second):
        assert stream[0].header.filename == "retry.jpg"
        assert b"".join(m.chunk for m in stream[1:]) == data
    assert result.asset.size_bytes == len(data)
    # The same request id on every attempt, so the server's logs tie them together.
    ids = {md["x-request-id"] for method, md in fake.recorder.metadata if method == "Upload"}
    assert len(ids) == 1


async def test_upload_gives_up_after_its_attempts(fake: FakeServer) -> None:
    fake.recorder.unavailable["Upload"] = 10
    async with AsyncClient.from_env(fake.env(), upload_attempts=2) as client:
        with pytest.raises(ImagepipeError) as failed:
            await client.upload(io.BytesIO(b"\xff\xd8"), filename="x.jpg")
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert fake.recorder.calls["Upload"] == 2


async def test_unary_reads_are_retried_by_grpc_on_unavailable(
    client: AsyncClient, fake: FakeServer
) -> None:
    uploaded = await client.upload(io.BytesIO(_image(1000)), filename="a.jpg")
    fake.recorder.unavailable["GetAsset"] = 1
    fake.recorder.unavailable["ListPresets"] = 2

    asset = await client.get_asset(uploaded.asset_id)
    presets = await client.list_presets()

    assert asset.asset_id == uploaded.asset_id
    assert [p.name for p in presets] == ["zoom", "card", "thumb"]
    assert fake.recorder.calls["GetAsset"] == 2
    assert fake.recorder.calls["ListPresets"] == 3


async def test_writes_are_not_retried(client: AsyncClient, fake: FakeServer) -> None:
    fake.recorder.unavailable["CreateTenant"] = 1
    with pytest.raises(ImagepipeError) as failed:
        await client.create_tenant("acme")
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert failed.value.reason == "UNAVAILABLE"  # no ErrorInfo: the code stands in
    assert fake.recorder.calls["CreateTenant"] == 1


def test_the_retry_policy_names_only_existing_read_methods() -> None:
    files = {
        "imagepipe.v1.CatalogService": catalog_pb2,
        "imagepipe.v1.RendererService": renderer_pb2,
        "imagepipe.v1.QualityService": quality_pb2,
        "imagepipe.v1.TenantAdminService": tenant_admin_pb2,
    }
    for service, methods in RETRYABLE_READS.items():
        descriptor = files[service].DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]]
        for method in methods:
            found = descriptor.methods_by_name[method]
            assert not found.client_streaming and not found.server_streaming
    (config,) = json.loads(service_config())["methodConfig"]
    assert config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert {"service": "imagepipe.v1.CatalogService", "method": "GetAsset"} in config["name"]


async def test_error_info_becomes_reason_metadata_and_request_id(
    client: AsyncClient, fake: FakeServer
) -> None:
    with pytest.raises(ImagepipeError) as refused:
        await client.upload(io.BytesIO(HTML), filename="page.jpg", request_id="req-html")
    error = refused.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.code_name == "INVALID_ARGUMENT"
    assert error.reason == "IMAGE_UNSUPPORTED_FORMAT"
    assert error.domain == "imagepipe"
    assert error.metadata["sniffed"] == "text/html"
    assert error.request_id == "req-html"
    assert "looks like HTML" in error.message
    assert "INVALID_ARGUMENT" in str(error) and "IMAGE_UNSUPPORTED_FORMAT" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.reason, copy.request_id) == (error.code, error.reason, "req-html")

    with pytest.raises(ImagepipeError) as missing:
        await client.get_asset("no-such-asset")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    assert missing.value.reason == "ASSET_NOT_FOUND"
    assert missing.value.request_id


async def test_wait_ready_polls_when_watch_is_unimplemented(
    client: AsyncClient, fake: FakeServer
) -> None:
    uploaded = await client.upload(io.BytesIO(_image(1000)), filename="a.jpg")
    fake.catalog.reads_until_ready = 3

    asset = await client.wait_ready(uploaded.asset_id, timeout=10)

    assert asset.status == common_pb2.ASSET_STATUS_READY
    assert [r.preset for r in asset.renditions] == ["card", "thumb"]
    assert fake.recorder.calls["WatchAsset"] == 1
    assert fake.recorder.calls["GetAsset"] == 4


async def test_wait_ready_uses_watch_when_served(client: AsyncClient, fake: FakeServer) -> None:
    uploaded = await client.upload(io.BytesIO(_image(1000)), filename="a.jpg")
    fake.catalog.watch_implemented = True

    asset = await client.wait_ready(uploaded.asset_id, timeout=10)

    assert asset.status == common_pb2.ASSET_STATUS_READY
    assert fake.recorder.calls["WatchAsset"] == 1
    assert "GetAsset" not in fake.recorder.calls


async def test_wait_ready_times_out_with_the_last_status(
    client: AsyncClient, fake: FakeServer
) -> None:
    uploaded = await client.upload(io.BytesIO(_image(1000)), filename="a.jpg")
    fake.catalog.reads_until_ready = 1_000_000

    with pytest.raises(ImagepipeError) as waited:
        await client.wait_ready(uploaded.asset_id, timeout=0.6)

    assert waited.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert waited.value.reason == "WAIT_TIMEOUT"
    assert "pending" in waited.value.message


async def test_wait_ready_reports_other_errors(client: AsyncClient) -> None:
    with pytest.raises(ImagepipeError) as waited:
        await client.wait_ready("no-such-asset", timeout=5)
    assert waited.value.reason == "ASSET_NOT_FOUND"


async def test_list_assets_walks_every_page(client: AsyncClient, fake: FakeServer) -> None:
    for index in range(5):
        await client.upload(io.BytesIO(_image(1000 + index)), filename=f"{index}.jpg")
    listed = [asset.asset_id async for asset in client.list_assets(page_size=2)]
    assert len(set(listed)) == 5
    assert fake.recorder.calls["ListAssets"] == 3


async def test_renditions_compare_and_jobs(client: AsyncClient, fake: FakeServer) -> None:
    link = await client.get_rendition("a-1", "card", accept=["webp", "jpeg"])
    assert link.url.endswith("/a-1/card")
    assert link.expire_time is not None and link.expire_time.year == 2033
    data = await client.read_rendition("a-1", "card")
    assert data == fake.catalog.rendition_bytes
    content = await client.read_rendition_content("a-1", "card")
    assert content.rendition.size_bytes == len(data)
    scores = await client.compare("a-1")
    assert [r.preset for r in scores.renditions] == ["card", "thumb"]
    job = await client.get_job("j-1")
    assert job.state == common_pb2.JOB_STATE_DONE


def test_enum_names() -> None:
    assert status_name(common_pb2.ASSET_STATUS_READY) == "ready"
    assert status_name(common_pb2.ASSET_STATUS_PENDING) == "pending"
    assert format_name(common_pb2.IMAGE_FORMAT_WEBP) == "webp"
    assert parse_formats(["webp,jpg", "AVIF"]) == [
        common_pb2.IMAGE_FORMAT_WEBP,
        common_pb2.IMAGE_FORMAT_JPEG,
        common_pb2.IMAGE_FORMAT_AVIF,
    ]
    with pytest.raises(ValueError, match="unknown image format"):
        parse_formats(["bitmapish"])
