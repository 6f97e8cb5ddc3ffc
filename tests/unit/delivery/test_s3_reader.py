"""S3Reader against a small HTTP server standing in for S3: signed GETs, ranges, the
store's errors mapped as everywhere else, and one retry on a connection the store
closed while it sat in the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.delivery.s3 import S3Reader
from services.shared.errors import Unavailable
from services.shared.settings import Settings
from services.shared.storage import ObjectNotFound, S3ObjectStore, StorageRefused

BODY = bytes(range(256)) * 40  # 10 KiB


class FakeS3:
    """Serves BODY at `ok`, statuses at `status-<n>`; records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None, bool]] = []
        self.drop_next = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        signed = "X-Amz-Signature" in request.query
        self.requests.append((request.path, request.headers.get("Range"), signed))
        if self.drop_next:
            self.drop_next -= 1
            assert request.transport is not None
            request.transport.close()  # as a store closing an idle keep-alive connection
            return web.Response()
        name = request.path.rsplit("/", 1)[-1]
        if name.startswith("status-"):
            return web.Response(status=int(name.removeprefix("status-")))
        spec = request.headers.get("Range")
        if spec is None:
            return web.Response(body=BODY)
        first, _, last = spec.removeprefix("bytes=").partition("-")
        end = len(BODY) - 1 if not last else int(last)
        return web.Response(status=206, body=BODY[int(first) : end + 1])


@pytest.fixture
async def s3() -> AsyncIterator[tuple[FakeS3, S3Reader]]:
    fake = FakeS3()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", fake.handle)
    async with TestServer(app) as server:
        endpoint = urlsplit(str(server.make_url("/"))).netloc
        store = S3ObjectStore(Settings(s3_endpoint=endpoint, s3_bucket="bucket"))
        async with aiohttp.ClientSession() as session:
            yield fake, S3Reader(store, session)
        await store.close()


async def _read(reader: S3Reader, key: str, **kwargs: int) -> bytes:
    return b"".join([chunk async for chunk in reader.iter_chunks(key, 4096, **kwargs)])


async def test_whole_objects_and_ranges_are_read_with_signed_urls(
    s3: tuple[FakeS3, S3Reader],
) -> None:
    fake, reader = s3
    assert await reader.get_bytes("renditions/ok") == BODY
    assert await _read(reader, "renditions/ok") == BODY
    assert await _read(reader, "renditions/ok", offset=100, length=50) == BODY[100:150]
    assert await _read(reader, "renditions/ok", offset=10_000) == BODY[10_000:]
    assert await _read(reader, "renditions/ok", length=0) == b""
    assert [(path, spec) for path, spec, _ in fake.requests] == [
        ("/bucket/renditions/ok", None),
        ("/bucket/renditions/ok", None),
        ("/bucket/renditions/ok", "bytes=100-149"),
        ("/bucket/renditions/ok", "bytes=10000-"),
    ]
    assert all(signed for _, _, signed in fake.requests)


async def test_chunks_are_at_most_the_piece_size(s3: tuple[FakeS3, S3Reader]) -> None:
    _, reader = s3
    chunks = [chunk async for chunk in reader.iter_chunks("renditions/ok", 1000)]
    assert b"".join(chunks) == BODY and max(map(len, chunks)) <= 1000


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, ObjectNotFound), (403, StorageRefused), (500, Unavailable), (503, Unavailable)],
)
async def test_error_statuses_mean_what_they_mean_for_the_shared_store(
    s3: tuple[FakeS3, S3Reader], status: int, error: type[Exception]
) -> None:
    _, reader = s3
    with pytest.raises(error):
        await reader.get_bytes(f"renditions/status-{status}")
    with pytest.raises(error):
        await _read(reader, f"renditions/status-{status}")


async def test_a_closed_pooled_connection_is_retried_and_a_dropping_store_unavailable(
    s3: tuple[FakeS3, S3Reader],
) -> None:
    fake, reader = s3
    assert await reader.get_bytes("renditions/ok") == BODY  # a connection in the pool
    fake.drop_next = 1
    assert await reader.get_bytes("renditions/ok") == BODY
    fake.drop_next = 10
    with pytest.raises(Unavailable) as raised:
        await reader.get_bytes("renditions/ok")
    assert raised.value.reason == "STORAGE_UNAVAILABLE"


async def test_an_unreachable_store_is_unavailable() -> None:
    store = S3ObjectStore(Settings(s3_endpoint="127.0.0.1:9", s3_bucket="bucket"))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(Unavailable):
            await S3Reader(store, session).get_bytes("renditions/ok")
    await store.close()
