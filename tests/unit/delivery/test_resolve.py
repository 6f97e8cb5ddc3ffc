"""What a URL resolves to: 404s, negotiation and Vary, versions and redirects, lookups
cached for the TTL with one call per key at a time."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from imagepipe.delivery import canonical_string, verify
from services.delivery.model import AssetStatus
from tests.unit.delivery.fakes import NOW, Harness, body_of, sign

FORMATS = {"jpeg": b"\xff\xd8jpeg\xff\xd9", "webp": b"RIFFwebp", "avif": b"....ftypavif"}


def _reason(body: object) -> str:
    assert isinstance(body, bytes)
    return str(json.loads(body)["error"]["reason"])


@pytest.fixture
def harness() -> Harness:
    return Harness(ttl=30.0, max_age=60)


async def test_unknown_and_deleted_assets_are_not_found(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    deleted = harness.publish(tenant, {"card": FORMATS}, status=AssetStatus.DELETED)
    unknown = "00000000-0000-4000-8000-000000000000"
    for url, reason in (
        (f"/v1/{tenant}/{unknown}/card", "ASSET_NOT_FOUND"),
        (deleted.path("card"), "ASSET_DELETED"),
        (deleted.path("card", "jpeg"), "ASSET_DELETED"),
    ):
        reply = await harness.request(url)
        assert (reply.status, _reason(reply.body)) == (404, reason), url
        assert reply.headers["Cache-Control"] == "public, max-age=5"


async def test_a_404_is_cached_no_longer_than_the_lookups() -> None:
    harness = Harness(ttl=2.0)
    tenant, _, _ = harness.tenant(unsigned=True)
    reply = await harness.request(f"/v1/{tenant}/{tenant}/card.jpg")
    assert reply.headers["Cache-Control"] == "public, max-age=2"


async def test_an_asset_still_rendering_says_when_to_come_back(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    for status in (AssetStatus.PENDING, AssetStatus.PROCESSING):
        waiting = harness.publish(tenant, {}, status=status)
        reply = await harness.request(waiting.path("card"))
        assert (reply.status, _reason(reply.body)) == (404, "NOT_READY")
        assert reply.headers["Retry-After"] == "5"
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["Vary"] == "Accept"


async def test_a_missing_preset_or_format_is_not_found(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    failed = harness.publish(tenant, {}, status=AssetStatus.FAILED)
    ready = harness.publish(tenant, {"zoom": {"jpeg": FORMATS["jpeg"]}})
    for url, reason in (
        (failed.path("card"), "RENDITION_NOT_FOUND"),
        (ready.path("card"), "RENDITION_NOT_FOUND"),
        (ready.path("zoom", "webp"), "FORMAT_NOT_AVAILABLE"),
    ):
        reply = await harness.request(url)
        assert (reply.status, _reason(reply.body)) == (404, reason), url
    reply = await harness.request(ready.path("zoom", "webp"))
    assert "Vary" not in reply.headers, "a format URL never depends on Accept"


@pytest.mark.parametrize(
    ("accept", "served"),
    [
        (None, "avif"),
        ("*/*", "avif"),
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif"),
        ("image/webp,image/png,image/*;q=0.8,*/*;q=0.5", "webp"),
        ("image/jpeg", "jpeg"),
        ("image/avif;q=0.5, image/webp;q=0.9, image/jpeg;q=0.7", "webp"),
        ("image/*;q=0.9, image/avif;q=0", "webp"),
        ("image/avif;q=0, image/webp;q=0, image/*", "jpeg"),
        ("text/html", "jpeg"),  # nothing acceptable: the most compatible
        ("image/avif;q=bogus, image/webp", "webp"),
        ("IMAGE/AVIF;Q=1", "avif"),
    ],
)
async def test_negotiation_follows_accept_with_q_values(
    harness: Harness, accept: str | None, served: str
) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": FORMATS})
    headers = {} if accept is None else {"accept": accept}
    reply = await harness.request(asset.path("card"), **headers)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == f"image/{served}"
    assert reply.body == FORMATS[served]
    assert reply.headers["Vary"] == "Accept"


async def test_with_nothing_acceptable_and_no_jpeg_the_first_available_is_served(
    harness: Harness,
) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"avif": FORMATS["avif"], "webp": FORMATS["webp"]}})
    reply = await harness.request(asset.path("card"), accept="image/png")
    assert reply.headers["Content-Type"] == "image/webp"


async def test_a_current_version_is_immutable(harness: Harness) -> None:
    tenant, key, secret = harness.tenant()
    asset = harness.publish(tenant, {"card": FORMATS})
    preset_version = (await harness.lookups.resolve(tenant, asset.asset_id, "card")).preset_version
    webp = asset.rendition("card", "webp").version
    for url in (
        sign(asset.path("card"), key, secret, version=preset_version),
        sign(asset.path("card", "webp"), key, secret, version=webp),
    ):
        reply = await harness.request(url)
        assert reply.status == 200, url
        assert reply.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    expiring = sign(asset.path("card", "webp"), key, secret, version=webp, expires=int(NOW) + 90)
    reply = await harness.request(expiring)
    assert reply.headers["Cache-Control"] == "public, max-age=90, immutable"


async def test_an_unversioned_url_is_cached_for_max_age_capped_by_its_expiry(
    harness: Harness,
) -> None:
    tenant, key, secret = harness.tenant()
    asset = harness.publish(tenant, {"card": FORMATS})
    path = asset.path("card", "jpeg")
    reply = await harness.request(sign(path, key, secret))
    assert reply.headers["Cache-Control"] == "public, max-age=60"
    reply = await harness.request(sign(path, key, secret, expires=int(NOW) + 20))
    assert reply.headers["Cache-Control"] == "public, max-age=20"


@pytest.mark.parametrize("image_format", [None, "webp"])
async def test_an_old_version_redirects_to_the_current_one_resigned(
    harness: Harness, image_format: str | None
) -> None:
    tenant, key, secret = harness.tenant()
    asset = harness.publish(tenant, {"card": FORMATS})
    expires = int(NOW) + 3600
    old = sign(asset.path("card", image_format), key, secret, version="0" * 16, expires=expires)
    reply = await harness.request(old)
    assert reply.status == 302
    location = urlsplit(reply.headers["Location"])
    assert location.scheme == "" and location.netloc == ""
    assert location.path == asset.path("card", image_format)
    query = dict(parse_qsl(location.query))
    resolution = await harness.lookups.resolve(tenant, asset.asset_id, "card")
    current = (
        resolution.preset_version
        if image_format is None
        else asset.rendition("card", image_format).version
    )
    assert (query["v"], query["e"], query["k"]) == (current, str(expires), key)
    canonical = canonical_string(location.path, version=current, expires=expires, key_id=key)
    assert verify(secret, canonical, query["s"])
    assert reply.headers["Cache-Control"] == "public, max-age=60"
    assert ("Vary" in reply.headers) is (image_format is None)
    followed = await harness.request(reply.headers["Location"])
    assert followed.status == 200
    assert followed.headers["Cache-Control"] == "public, max-age=3600, immutable"


async def test_an_unsigned_old_version_redirects_unsigned(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": FORMATS})
    reply = await harness.request(asset.path("card", "jpeg") + "?v=" + "0" * 16)
    assert reply.status == 302
    version = asset.rendition("card", "jpeg").version
    assert reply.headers["Location"] == asset.path("card", "jpeg") + f"?v={version}"


async def test_a_resolution_is_cached_for_the_ttl_so_a_delete_shows_after_it(
    harness: Harness,
) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": FORMATS})
    assert (await harness.request(asset.path("card", "jpeg"))).status == 200
    harness.catalog.assets[(tenant, asset.asset_id)].status = AssetStatus.DELETED
    harness.clock.now += 29
    assert (await harness.request(asset.path("card", "webp"))).status == 200
    harness.clock.now += 2
    reply = await harness.request(asset.path("card", "jpeg"))
    assert (reply.status, _reason(reply.body)) == (404, "ASSET_DELETED")
    assert harness.catalog.calls["resolve"] == 2, "one entry serves every format of a preset"


async def test_an_asset_being_rendered_is_looked_up_again_within_a_second(
    harness: Harness,
) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    waiting = harness.publish(tenant, {}, status=AssetStatus.PROCESSING)
    assert (await harness.request(waiting.path("card"))).status == 404
    rendered = harness.publish(tenant, {"card": FORMATS})
    harness.catalog.assets[(tenant, waiting.asset_id)] = harness.catalog.assets[
        (tenant, rendered.asset_id)
    ]
    harness.clock.now += 1.01
    assert (await harness.request(waiting.path("card"))).status == 200


async def test_concurrent_misses_for_one_key_make_one_call(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": FORMATS})
    harness.catalog.gate = gate = asyncio.Event()
    requests = [asyncio.create_task(harness.request(asset.path("card"))) for _ in range(20)]
    await asyncio.sleep(0.01)
    gate.set()
    replies = await asyncio.gather(*requests)
    assert {reply.status for reply in replies} == {200}
    assert harness.catalog.calls == {"access": 1, "resolve": 1}


async def test_a_failed_lookup_is_not_cached_and_is_a_503(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": FORMATS})
    harness.catalog.available = False
    reply = await harness.request(asset.path("card"))
    assert reply.status == 503
    assert _reason(reply.body) == "DEPENDENCY_UNAVAILABLE"
    assert reply.headers["Retry-After"] == "1"
    assert reply.headers["Cache-Control"] == "no-store"
    harness.catalog.available = True
    assert (await harness.request(asset.path("card"))).status == 200


async def test_a_url_of_bytes_newer_than_the_cached_answer_is_served_not_sent_back(
    harness: Harness,
) -> None:
    """A re-render within the lookup TTL: the new version's URL is looked up again (never
    redirected to the old bytes), and the old version's URL then redirects to it."""
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": b"\xff\xd8old\xff\xd9"}})
    old = asset.rendition("card", "jpeg").version
    assert (await harness.request(asset.path("card", "jpeg") + f"?v={old}")).status == 200
    rerendered = harness.publish(tenant, {"card": {"jpeg": b"\xff\xd8new\xff\xd9"}})
    new = rerendered.rendition("card", "jpeg").version
    harness.catalog.assets[(tenant, asset.asset_id)].renditions = harness.catalog.assets[
        (tenant, rerendered.asset_id)
    ].renditions
    calls = harness.catalog.calls["resolve"]

    reply = await harness.request(asset.path("card", "jpeg") + f"?v={new}")
    assert reply.status == 200 and await body_of(reply) == b"\xff\xd8new\xff\xd9"
    assert reply.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert harness.catalog.calls["resolve"] == calls + 1
    moved = await harness.request(asset.path("card", "jpeg") + f"?v={old}")
    assert moved.status == 302 and f"v={new}" in moved.headers["Location"]
    # Versions nobody minted ask the catalog again at most once a second.
    for version in ("1" * 16, "2" * 16, "3" * 16):
        await harness.request(asset.path("card", "jpeg") + f"?v={version}")
    assert harness.catalog.calls["resolve"] == calls + 1
    harness.clock.now += 1.5
    await harness.request(asset.path("card", "jpeg") + "?v=" + "4" * 16)
    assert harness.catalog.calls["resolve"] == calls + 2
