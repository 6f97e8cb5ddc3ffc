"""What a served URL sends: headers, validators (304), ranges (206, 416), HEAD, and
where the bytes come from (the object cache, or the store piece by piece)."""

from __future__ import annotations

import json

import pytest

from services.delivery.reply import ObjectStream
from tests.unit.delivery.fakes import Harness, body_of

SMALL = bytes(range(256)) * 8  # 2 KiB: kept in the object cache
LARGE = bytes(range(251)) * 200  # 50 200 bytes: streamed in 4 KiB pieces


@pytest.fixture
def harness() -> Harness:
    return Harness(max_object_bytes=16 * 1024, chunk_bytes=4096)


async def test_a_rendition_goes_out_with_exact_headers(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"webp": SMALL}})
    reply = await harness.request(asset.path("card", "webp"))
    rendition = asset.rendition("card", "webp")
    assert reply.status == 200
    assert reply.body == SMALL
    assert reply.headers == {
        "ETag": f'"{rendition.content_hash}"',
        "Cache-Control": "public, max-age=60",
        "Content-Type": "image/webp",
        "Content-Length": str(len(SMALL)),
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Access-Control-Allow-Origin": "*",
        "Timing-Allow-Origin": "*",
        "Server": "imagepipe",
    }
    assert reply.route == "format"


async def test_the_etag_falls_back_to_the_version(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}})
    (stored,) = harness.catalog.assets[(tenant, asset.asset_id)].renditions["card"]
    harness.catalog.assets[(tenant, asset.asset_id)].renditions["card"] = [
        type(stored)(**{**stored.__dict__, "content_hash": ""})
    ]
    reply = await harness.request(asset.path("card", "jpeg"))
    assert reply.headers["ETag"] == f'"{stored.version}"'


@pytest.mark.parametrize(
    ("if_none_match", "matches"),
    [
        ("{etag}", True),
        ('"other", {etag}', True),
        ("W/{etag}", True),
        ("*", True),
        ('"other"', False),
        ("garbage", False),
    ],
)
async def test_if_none_match_gives_304_with_the_validators(
    harness: Harness, if_none_match: str, matches: bool
) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL, "webp": SMALL[::-1]}})
    etag = f'"{asset.rendition("card", "webp").content_hash}"'
    reply = await harness.request(
        asset.path("card"), accept="image/webp", if_none_match=if_none_match.format(etag=etag)
    )
    if not matches:
        assert reply.status == 200
        return
    assert reply.status == 304
    assert reply.body is None
    assert reply.headers["ETag"] == etag
    assert reply.headers["Cache-Control"] == "public, max-age=60"
    assert reply.headers["Vary"] == "Accept"
    assert "Content-Length" not in reply.headers


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(SMALL) - 1),
        ("bytes=-10", len(SMALL) - 10, len(SMALL) - 1),
        ("bytes=2000-999999", 2000, len(SMALL) - 1),
        ("bytes=-999999", 0, len(SMALL) - 1),
    ],
)
async def test_one_byte_range_is_a_206(harness: Harness, header: str, start: int, end: int) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}})
    reply = await harness.request(asset.path("card", "jpeg"), range=header)
    assert reply.status == 206
    assert reply.body == SMALL[start : end + 1]
    assert reply.headers["Content-Range"] == f"bytes {start}-{end}/{len(SMALL)}"
    assert reply.headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize(
    "header", ["bytes=0-1,5-9", "bytes=5-1", "pages=1-2", "bytes=x-", "bytes=-"]
)
async def test_several_or_unparsable_ranges_get_the_whole_body(
    harness: Harness, header: str
) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}})
    reply = await harness.request(asset.path("card", "jpeg"), range=header)
    assert reply.status == 200 and reply.body == SMALL


@pytest.mark.parametrize("header", [f"bytes={len(SMALL)}-", "bytes=-0", "bytes=99999-100000"])
async def test_an_unsatisfiable_range_is_a_416(harness: Harness, header: str) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}})
    reply = await harness.request(asset.path("card"), range=header)
    assert reply.status == 416
    assert reply.headers["Content-Range"] == f"bytes */{len(SMALL)}"
    assert isinstance(reply.body, bytes)
    assert json.loads(reply.body)["error"]["reason"] == "RANGE_NOT_SATISFIABLE"
    assert reply.headers["Vary"] == "Accept"


async def test_if_range_other_than_the_etag_ignores_the_range(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}})
    etag = f'"{asset.rendition("card", "jpeg").content_hash}"'
    path = asset.path("card", "jpeg")
    for if_range, status in ((etag, 206), ('"older"', 200), (f"W/{etag}", 200)):
        reply = await harness.request(path, range="bytes=0-9", if_range=if_range)
        assert reply.status == status, if_range
    reply = await harness.request(path, range="bytes=0-9", if_range="Wed, 21 Oct 2015 07:28:00 GMT")
    assert reply.status == 200


async def test_head_has_the_headers_of_get_and_reads_nothing(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}, "zoom": {"jpeg": LARGE}})
    for path in (asset.path("card", "jpeg"), asset.path("zoom"), asset.path("zoom", "webp")):
        harness.store.available = True
        got = await harness.request(path)
        await body_of(got)
        reads, pieces = harness.store.reads, len(harness.store.pieces)
        harness.store.available = False  # any read now fails
        head = await harness.request(path, method="HEAD")
        assert head.status == got.status
        assert head.headers == got.headers
        assert head.body is None
        assert (harness.store.reads, len(harness.store.pieces)) == (reads, pieces)
    ranged = await harness.request(asset.path("zoom"), method="HEAD", range="bytes=0-9")
    assert ranged.status == 206 and ranged.headers["Content-Length"] == "10"


async def test_small_objects_are_read_once_then_served_from_memory(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}})
    for _ in range(3):
        reply = await harness.request(asset.path("card", "jpeg"))
        assert reply.body == SMALL
    assert harness.store.reads == 1
    reply = await harness.request(asset.path("card", "jpeg"), range="bytes=10-19")
    assert reply.body == SMALL[10:20] and harness.store.reads == 1


async def test_large_objects_are_streamed_in_pieces_ranges_included(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"zoom": {"jpeg": LARGE}})
    reply = await harness.request(asset.path("zoom", "jpeg"))
    assert isinstance(reply.body, ObjectStream)
    assert await body_of(reply) == LARGE
    assert max(harness.store.pieces) <= 4096
    assert harness.store.reads == 0, "never read whole"
    harness.store.pieces.clear()
    reply = await harness.request(asset.path("zoom", "jpeg"), range="bytes=5000-14999")
    assert reply.status == 206
    assert await body_of(reply) == LARGE[5000:15000]
    assert sum(harness.store.pieces) == 10_000, "only the range is read"


async def test_without_cache_memory_nothing_is_kept_and_larger_objects_stream() -> None:
    harness = Harness(cache_bytes=0)
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}, "zoom": {"jpeg": LARGE}})
    for _ in range(2):
        # No bigger than one piece: read whole and sent in one write, and not kept.
        small = await harness.request(asset.path("card", "jpeg"))
        assert small.body == SMALL
        large = await harness.request(asset.path("zoom", "jpeg"))
        assert isinstance(large.body, ObjectStream)
        assert await body_of(large) == LARGE
    assert harness.store.reads == 2
    assert max(harness.store.pieces) <= 4096


async def test_an_object_missing_from_the_store_is_a_404(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": SMALL}, "zoom": {"jpeg": LARGE}})
    harness.store.objects.clear()
    for path in (asset.path("card", "jpeg"), asset.path("zoom", "jpeg")):
        reply = await harness.request(path)
        assert reply.status == 404
        assert isinstance(reply.body, bytes)
        assert json.loads(reply.body)["error"]["reason"] == "OBJECT_MISSING"
    assert any("object store does not have" in r.getMessage() for r in caplog.records)


async def test_an_unreachable_store_is_a_503(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"zoom": {"jpeg": LARGE}})
    harness.store.available = False
    reply = await harness.request(asset.path("zoom", "jpeg"))
    assert reply.status == 503 and reply.headers["Retry-After"] == "1"
