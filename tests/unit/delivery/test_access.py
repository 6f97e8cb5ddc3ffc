"""Who may fetch a delivery URL: signatures, keys, unsigned tenants, expiry (403s, 400s)."""

from __future__ import annotations

import json

import pytest

from tests.unit.delivery.fakes import NOW, Harness, sign

JPEG = b"\xff\xd8jpeg bytes\xff\xd9"


def _reason(body: bytes | object) -> str:
    assert isinstance(body, bytes)
    error = json.loads(body)["error"]
    assert set(error) == {"status", "reason", "message"} and error["message"]
    return str(error["reason"])


@pytest.fixture
def harness() -> Harness:
    return Harness()


async def test_a_signed_url_of_an_active_key_is_served(harness: Harness) -> None:
    tenant, key, secret = harness.tenant()
    asset = harness.publish(tenant, {"card": {"jpeg": JPEG}})
    reply = await harness.request(sign(asset.path("card", "jpeg"), key, secret))
    assert reply.status == 200
    assert reply.body == JPEG


@pytest.mark.parametrize("case", ["unknown key", "revoked key", "other tenant's key", "no tenant"])
async def test_a_key_that_is_not_an_active_key_of_the_tenant_is_unknown(
    harness: Harness, case: str
) -> None:
    tenant, key, secret = harness.tenant()
    asset = harness.publish(tenant, {"card": {"jpeg": JPEG}})
    path = asset.path("card", "jpeg")
    if case == "unknown key":
        key = "0123456789abcdef"
    elif case == "revoked key":
        harness.catalog.tenants[tenant].keys.clear()
    elif case == "other tenant's key":
        _, key, secret = harness.tenant()
    else:
        del harness.catalog.tenants[tenant]
    reply = await harness.request(sign(path, key, secret), if_none_match="*")
    assert reply.status == 403
    assert _reason(reply.body) == "SIGNING_KEY_UNKNOWN"
    assert reply.headers["Cache-Control"] == "no-store"


async def test_a_signature_over_anything_else_is_invalid(harness: Harness) -> None:
    tenant, key, secret = harness.tenant()
    asset = harness.publish(tenant, {"card": {"jpeg": JPEG, "webp": b"RIFFwebp"}})
    version = asset.rendition("card", "jpeg").version
    # Signed for the JPEG, presented for the WebP; signed without v, presented with it.
    jpeg = sign(asset.path("card", "jpeg"), key, secret)
    other_path = jpeg.replace(".jpg?", ".webp?")
    other_params = sign(asset.path("card", "jpeg"), key, secret) + f"&v={version}"
    wrong_secret = sign(asset.path("card", "jpeg"), key, "x" * 43)
    for url in (other_path, other_params, wrong_secret):
        reply = await harness.request(url)
        assert reply.status == 403, url
        assert _reason(reply.body) == "SIGNATURE_INVALID"
        assert reply.headers["Cache-Control"] == "no-store"


async def test_an_expired_url_is_refused_after_its_signature_is_checked(harness: Harness) -> None:
    tenant, key, secret = harness.tenant()
    asset = harness.publish(tenant, {"card": {"jpeg": JPEG}})
    path = asset.path("card", "jpeg")
    still = await harness.request(sign(path, key, secret, expires=int(NOW)))
    assert still.status == 200, "e is the last second the URL works"
    expired = sign(path, key, secret, expires=int(NOW) - 1)
    reply = await harness.request(expired)
    assert reply.status == 403 and _reason(reply.body) == "URL_EXPIRED"
    forged = expired.replace(f"e={int(NOW) - 1}", f"e={int(NOW) + 3600}")
    reply = await harness.request(forged)
    assert _reason(reply.body) == "SIGNATURE_INVALID", "a changed expiry breaks the signature"


async def test_unsigned_urls_are_served_only_for_tenants_that_allow_them(
    harness: Harness,
) -> None:
    closed, _, _ = harness.tenant(unsigned=False)
    opened, _, _ = harness.tenant(unsigned=True)
    for tenant, status in ((closed, 403), (opened, 200)):
        asset = harness.publish(tenant, {"card": {"jpeg": JPEG}})
        reply = await harness.request(asset.path("card", "jpeg"))
        assert reply.status == status
        if status == 403:
            assert _reason(reply.body) == "SIGNATURE_REQUIRED"
    unknown = "00000000-0000-4000-8000-000000000000"
    reply = await harness.request(f"/v1/{unknown}/{unknown}/card")
    assert reply.status == 403 and _reason(reply.body) == "SIGNATURE_REQUIRED"
    assert "Vary" not in reply.headers, "a 403 does not depend on Accept"


async def test_an_unsigned_url_still_expires(harness: Harness) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": JPEG}})
    reply = await harness.request(asset.path("card", "jpeg") + f"?e={int(NOW) - 10}")
    assert reply.status == 403 and _reason(reply.body) == "URL_EXPIRED"


async def test_a_signed_url_of_an_unsigned_tenant_is_still_checked(harness: Harness) -> None:
    tenant, key, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": JPEG}})
    reply = await harness.request(sign(asset.path("card", "jpeg"), key, "y" * 43))
    assert reply.status == 403 and _reason(reply.body) == "SIGNATURE_INVALID"


@pytest.mark.parametrize(
    "query",
    [
        "v=xyz",
        "e=soon",
        "k=00ff",
        "s=short",
        "k=00ff00ff00ff00ff",  # a key without a signature
        "s=" + "A" * 43,  # a signature without its key
    ],
)
async def test_malformed_parameters_are_a_bad_request(harness: Harness, query: str) -> None:
    tenant, _, _ = harness.tenant(unsigned=True)
    asset = harness.publish(tenant, {"card": {"jpeg": JPEG}})
    reply = await harness.request(asset.path("card") + "?" + query)
    assert reply.status == 400
    assert _reason(reply.body) == "BAD_PARAMETER"
    assert reply.headers["Cache-Control"] == "no-store"
    assert "Vary" not in reply.headers


async def test_access_answers_are_cached_per_tenant_and_key_for_the_ttl(harness: Harness) -> None:
    tenant, key, secret = harness.tenant()
    asset = harness.publish(tenant, {"card": {"jpeg": JPEG}})
    url = sign(asset.path("card", "jpeg"), key, secret)
    assert (await harness.request(url)).status == 200
    harness.catalog.tenants[tenant].keys.clear()  # revoked
    harness.clock.now += 29
    assert (await harness.request(url)).status == 200, "within the TTL the answer is kept"
    harness.clock.now += 2
    assert (await harness.request(url)).status == 403, "past the TTL the revocation shows"
    assert harness.catalog.calls["access"] == 2
