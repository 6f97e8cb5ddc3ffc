"""The aiohttp adapter on a real socket: bodies on the wire, request ids, the access
log, metrics, a client that leaves mid-body, and a graceful stop."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from devstack import free_port, release_port
from services.delivery.http import make_app, serve
from services.delivery.readiness import DependencyReadiness
from services.shared.settings import Settings
from tests.unit.delivery.fakes import Harness, Published, sign

Client = TestClient[web.Request, web.Application]
SMALL = bytes(range(256)) * 8
LARGE = bytes(range(251)) * 4000  # about 1 MB, streamed in 4 KiB pieces


@pytest.fixture
def harness() -> Harness:
    return Harness(max_object_bytes=16 * 1024, chunk_bytes=4096)


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[Client]:
    async with TestClient(TestServer(make_app(harness.core))) as test_client:
        yield test_client


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _asset(harness: Harness) -> tuple[Published, str, str]:
    tenant, key, secret = harness.tenant()
    return harness.publish(tenant, {"card": {"jpeg": SMALL}, "zoom": {"jpeg": LARGE}}), key, secret


async def test_bodies_go_out_whole_with_their_length(harness: Harness, client: Client) -> None:
    asset, key, secret = _asset(harness)
    for preset, data in (("card", SMALL), ("zoom", LARGE)):
        async with client.get(sign(asset.path(preset, "jpeg"), key, secret)) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(len(data))
            assert "Transfer-Encoding" not in response.headers
            assert response.headers["Server"] == "imagepipe"  # not the framework's version
            assert await response.read() == data
    async with client.get(
        sign(asset.path("zoom", "jpeg"), key, secret), headers={"Range": "bytes=-100"}
    ) as response:
        assert response.status == 206
        assert await response.read() == LARGE[-100:]


async def test_head_sends_the_length_and_no_body(harness: Harness, client: Client) -> None:
    asset, key, secret = _asset(harness)
    async with client.head(sign(asset.path("zoom", "jpeg"), key, secret)) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(LARGE))
        assert await response.read() == b""
    async with client.get(sign(asset.path("zoom", "jpeg"), key, secret)) as response:
        await response.read()
        assert response.status == 200, "the connection is fine after a HEAD"


async def test_304_and_302_go_out_as_such(harness: Harness, client: Client) -> None:
    asset, key, secret = _asset(harness)
    etag = f'"{asset.rendition("card", "jpeg").content_hash}"'
    url = sign(asset.path("card"), key, secret)
    async with client.get(url, headers={"If-None-Match": etag}) as response:
        assert response.status == 304
        assert response.headers["ETag"] == etag
        assert response.headers["Vary"] == "Accept"
        assert await response.read() == b""
    old = sign(asset.path("card", "jpeg"), key, secret, version="0" * 16)
    async with client.get(old, allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"].startswith(asset.path("card", "jpeg") + "?v=")
    async with client.get(old) as response:
        assert response.status == 200 and await response.read() == SMALL


async def test_a_request_id_is_echoed_or_made_and_every_request_is_logged_once(
    harness: Harness,
    client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    asset, key, secret = _asset(harness)
    url = sign(asset.path("card", "jpeg"), key, secret)
    signature = url.rsplit("s=", 1)[1]
    caplog.set_level(logging.INFO, logger="services.delivery.access")
    async with client.get(url, headers={"X-Request-Id": "trace-123"}) as response:
        assert response.headers["X-Request-Id"] == "trace-123"
    for unfit in ("x" * 129, "with spaces"):
        async with client.get(url, headers={"X-Request-Id": unfit}) as response:
            made = response.headers["X-Request-Id"]
            assert made and made != unfit
    lines = [r for r in caplog.records if r.name == "services.delivery.access"]
    assert len(lines) == 3
    first = lines[0].__dict__
    assert first["method"] == "GET" and first["path"] == asset.path("card", "jpeg")
    assert first["status"] == 200 and first["bytes"] == len(SMALL)
    assert first["route"] == "format" and first["duration_ms"] >= 0
    assert first["query"] == f"k={key}&s=***"
    assert signature not in caplog.text


async def test_metrics_count_requests_bytes_durations_and_cache_use(
    harness: Harness, client: Client
) -> None:
    asset, key, secret = _asset(harness)
    labels = {"route": "negotiated"}
    before = (
        _sample("imagepipe_delivery_requests_total", {**labels, "status": "200"}),
        _sample("imagepipe_delivery_response_bytes_total", labels),
        _sample("imagepipe_delivery_request_seconds_count", labels),
        _sample("imagepipe_delivery_cache_total", {"cache": "object", "result": "hit"}),
        _sample("imagepipe_delivery_requests_total", {"route": "other", "status": "404"}),
    )
    for _ in range(2):
        async with client.get(sign(asset.path("card"), key, secret)) as response:
            await response.read()
    async with client.get("/nothing/here") as response:
        assert response.status == 404
    after = (
        _sample("imagepipe_delivery_requests_total", {**labels, "status": "200"}),
        _sample("imagepipe_delivery_response_bytes_total", labels),
        _sample("imagepipe_delivery_request_seconds_count", labels),
        _sample("imagepipe_delivery_cache_total", {"cache": "object", "result": "hit"}),
        _sample("imagepipe_delivery_requests_total", {"route": "other", "status": "404"}),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 2 * len(SMALL), 2, 1, 1]


async def test_a_client_that_leaves_mid_body_releases_the_stream(
    harness: Harness, client: Client
) -> None:
    asset, key, secret = _asset(harness)
    url = sign(asset.path("zoom", "jpeg"), key, secret)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {url} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    await reader.readexactly(1000)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    writer.close()
    for _ in range(1000):  # a hang guard, not a timing claim
        if harness.store.closed_early:
            break
        await asyncio.sleep(0.01)
    assert harness.store.closed_early == 1
    assert sum(harness.store.pieces) < len(LARGE)


async def test_sigterm_lets_the_request_in_flight_finish(harness: Harness) -> None:
    asset, key, secret = _asset(harness)
    harness.store.hold = gate = asyncio.Event()

    async def answers() -> None:
        return None

    readiness = DependencyReadiness({"catalog": answers})
    port = free_port()
    release_port(port)
    settings = Settings(delivery_port=port, delivery_metrics_port=0, shutdown_grace_seconds=30)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(harness.core, readiness, settings, stop=stop))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(1000):  # until it listens
            try:
                async with session.get(base + "/readyz") as response:
                    assert response.status == 200
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)
        async with session.get(base + sign(asset.path("zoom", "jpeg"), key, secret)) as response:
            assert response.status == 200
            stop.set()
            for _ in range(1000):  # a hang guard: until the stop is under way
                if not readiness.ready:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as other, other.get(base + "/healthz"):
                    pass  # the listener is closed: no new connection
            gate.set()
            assert await response.read() == LARGE
        await asyncio.wait_for(server, 30)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(base + "/healthz"):
                pass
