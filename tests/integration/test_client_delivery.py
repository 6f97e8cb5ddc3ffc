"""Delivery URLs the client signs, against the real stack: they verify with the signing
key's secret and are the very URLs the catalog's GetDeliveryUrl returns for the same key,
preset, format and expiry, so either side may mint the links a page uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from devstack import Stack
from imagepipe.client import (
    AsyncClient,
    DeliveryLink,
    FailedPrecondition,
    NotFound,
    format_name,
    status_name,
)
from imagepipe.delivery import canonical_string, parse_query, preset_version, verify
from imagepipe.v1 import common_pb2
from tests.conftest import ISSUED_TENANT_KEYS
from tests.helpers import Tenant

pytestmark = pytest.mark.stack

PHOTO = "photo_moto_g9_empty_gps.jpg"


def _client(stack: Stack, tenant: Tenant, **options: Any) -> AsyncClient:
    return AsyncClient(
        tenant.key,
        ingest_addr=stack.address("ingest"),
        catalog_addr=stack.address("catalog"),
        renderer_addr=stack.address("renderer"),
        quality_addr=stack.address("quality"),
        **options,
    )


async def _ready(client: AsyncClient, corpus: Path) -> common_pb2.Asset:
    uploaded = await client.upload(corpus / PHOTO)
    asset = await client.wait_ready(uploaded.asset_id, timeout=90)
    assert status_name(asset.status) == "ready", asset
    return asset


def _base(link: DeliveryLink) -> str:
    """The server's IMAGEPIPE_DELIVERY_PUBLIC_URL: what comes before the path."""
    base, sep, _ = link.url.partition("/v1/")
    assert sep, link.url
    return base


def _verifies(url: str, base: str, secret: str) -> bool:
    """Delivery's check: the signature over the path (below the base) and v, e, k."""
    split = urlsplit(url)
    parsed = parse_query(dict(parse_qsl(split.query)))
    assert parsed is not None and parsed.signature is not None, url
    canonical = canonical_string(
        split.path.removeprefix(urlsplit(base).path),
        version=parsed.version,
        expires=parsed.expires,
        key_id=parsed.key_id,
    )
    return verify(secret, canonical, parsed.signature)


async def test_a_url_signed_here_verifies_and_is_the_one_the_server_signs(
    stack: Stack, tenant: Tenant, corpus: Path
) -> None:
    async with _client(stack, tenant) as client:
        asset = await _ready(client, corpus)
        created = await client.create_signing_key("www")
        ISSUED_TENANT_KEYS[f"signing secret {created.key_id}"] = created.secret
        cards = {format_name(r.format): r.version for r in asset.renditions if r.preset == "card"}

        for image_format in ("jpeg", None):
            served = await client.get_delivery_url(
                asset.asset_id, "card", image_format, ttl_seconds=3600, key_id=created.key_id
            )
            assert served.key_id == created.key_id and served.expire_time is not None
            base = _base(served)
            async with _client(
                stack,
                tenant,
                delivery_url=base,
                signing_key_id=created.key_id,
                signing_secret=created.secret,
            ) as signer:
                # The same expiry the server chose (it counts its TTL from its own clock).
                local = await signer.delivery_link(
                    asset.asset_id, "card", image_format, served.expire_time
                )
                url = await signer.delivery_url(
                    asset.asset_id, "card", image_format, served.expire_time
                )
            assert url == local.url
            assert local == served
            assert _verifies(local.url, base, created.secret)
            assert not _verifies(local.url, base, created.secret[::-1])
            expected = cards["jpeg"] if image_format else preset_version(cards.items())
            assert local.version == expected

        # No expiry: the URL carries no `e`, on both sides.
        served = await client.get_delivery_url(
            asset.asset_id, "thumb", "jpeg", key_id=created.key_id
        )
        async with _client(
            stack,
            tenant,
            delivery_url=_base(served),
            signing_key_id=created.key_id,
            signing_secret=created.secret,
        ) as signer:
            assert await signer.delivery_link(asset.asset_id, "thumb", "jpeg") == served
        assert "e" not in dict(parse_qsl(urlsplit(served.url).query))


async def test_both_sides_refuse_what_is_not_there(
    stack: Stack, tenant: Tenant, corpus: Path
) -> None:
    async with _client(stack, tenant) as client:
        asset = await _ready(client, corpus)
        created = await client.create_signing_key()
        ISSUED_TENANT_KEYS[f"signing secret {created.key_id}"] = created.secret
        async with _client(
            stack, tenant, signing_key_id=created.key_id, signing_secret=created.secret
        ) as signer:
            for preset, image_format, reason in (
                ("card", "avif", "FORMAT_NOT_AVAILABLE"),  # the default presets make JPEG
                ("poster", None, "RENDITION_NOT_FOUND"),
            ):
                with pytest.raises(NotFound) as local:
                    await signer.delivery_url(asset.asset_id, preset, image_format)
                with pytest.raises(NotFound) as served:
                    await client.get_delivery_url(asset.asset_id, preset, image_format)
                assert local.value.reason == served.value.reason == reason

        await client.revoke_signing_key(created.key_id)
        with pytest.raises(NotFound) as revoked:
            await client.get_delivery_url(asset.asset_id, "card", key_id=created.key_id)
        assert revoked.value.reason == "SIGNING_KEY_NOT_FOUND"
        (listed,) = await client.list_signing_keys()
        assert listed.key_id == created.key_id and listed.HasField("revoke_time")


async def test_unsigned_urls_once_the_tenant_allows_them(
    stack: Stack, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    tenant = make_tenant("unsigned")
    async with _client(stack, tenant) as client:
        asset = await _ready(client, corpus)
        assert (await client.get_tenant_settings()).unsigned_delivery is False
        with pytest.raises(FailedPrecondition) as no_key:
            await client.get_delivery_url(asset.asset_id, "card")
        assert no_key.value.reason == "NO_SIGNING_KEY"

        changed = await client.update_tenant_settings(unsigned_delivery=True)
        assert changed.unsigned_delivery is True
        assert (await client.get_tenant_settings()).unsigned_delivery is True

        served = await client.get_delivery_url(asset.asset_id, "card")
        assert served.key_id == "" and not served.signed
        async with _client(stack, tenant, delivery_url=_base(served)) as unsigned:
            assert await unsigned.delivery_link(asset.asset_id, "card") == served
        assert set(dict(parse_qsl(urlsplit(served.url).query))) == {"v"}
