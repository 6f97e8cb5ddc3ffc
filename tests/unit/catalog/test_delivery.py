"""Delivery URLs from the catalog: which version a URL carries, which key signs it (or
none, where the tenant allows it), why there is none; and what the delivery service
learns about a tenant's keys and an asset's renditions."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from imagepipe.delivery import canonical_string, parse_path, parse_query, preset_version, verify
from services.catalog.model import Asset, AssetStatus, NewRendition, TenantSettings
from services.catalog.usecases.delivery import (
    MAX_URL_TTL_SECONDS,
    DeliveryUrl,
    UrlRequest,
    UrlSigning,
    delivery_access,
    delivery_url,
    resolve_delivery,
    version_of,
)
from services.catalog.usecases.signing_keys import (
    create_signing_key,
    revoke_signing_key,
    signing_secret,
)
from services.catalog.usecases.tenants import create_tenant, update_tenant_settings
from services.shared.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.unit.catalog.fakes import FakeCatalog, new_asset, new_rendition, registered

PEPPER = "pepper-for-tests"
SIGNING = UrlSigning("https://img.example.com/", PEPPER)
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}


def _made(asset: Asset, preset: str, image_format: str, data: bytes) -> NewRendition:
    """A rendition as the renderer records it: its key names its bytes' SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    key = (
        f"renditions/{asset.tenant_id}/{asset.id}/{preset}.{digest[:16]}.{EXTENSIONS[image_format]}"
    )
    return new_rendition(
        asset.tenant_id, asset.id, preset, image_format, object_key=key, content_sha256=digest
    )


async def _rendered(
    catalog: FakeCatalog, tenant_id: uuid.UUID, made: Sequence[tuple[str, str, bytes]]
) -> Asset:
    asset, job = await registered(catalog, new_asset(tenant_id))
    started = await catalog.jobs.start_attempt(job.id, "renderer", dt.timedelta(minutes=2))
    renditions = [_made(asset, preset, fmt, data) for preset, fmt, data in made]
    assert await catalog.jobs.complete_job(job.id, started.attempt, renditions, None, None)
    return asset


CARD = [
    ("card", "jpeg", b"j"),
    ("card", "webp", b"w"),
    ("card", "avif", b"a"),
    ("thumb", "jpeg", b"t"),
]


def _v(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


async def _tenant(catalog: FakeCatalog, name: str = "acme") -> uuid.UUID:
    return (await create_tenant(catalog.tenants, name=name, pepper=PEPPER)).tenant.id


async def _key(catalog: FakeCatalog, tenant_id: uuid.UUID) -> str:
    issued = await create_signing_key(catalog.tenants, tenant_id=tenant_id, label="", pepper=PEPPER)
    return issued.signing_key.key_id


async def _url(
    catalog: FakeCatalog,
    tenant_id: uuid.UUID,
    asset_id: uuid.UUID,
    *,
    preset: str = "card",
    image_format: str | None = "webp",
    ttl_seconds: int = 0,
    key_id: str = "",
) -> DeliveryUrl:
    return await delivery_url(
        catalog.assets,
        catalog.tenants,
        tenant_id=tenant_id,
        request=UrlRequest(asset_id, preset, image_format, ttl_seconds, key_id),
        signing=SIGNING,
        now=NOW,
    )


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _verifies(made: DeliveryUrl, secret: str) -> bool:
    parts = urlsplit(made.url)
    query = parse_query(_query(made.url))
    assert query is not None and query.signature is not None
    canonical = canonical_string(
        parts.path, version=query.version, expires=query.expires, key_id=query.key_id
    )
    return verify(secret, canonical, query.signature)


# The URL and its version ---------------------------------------------------------------


async def test_a_format_url_carries_that_renditions_version_and_verifies() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    key_id = await _key(catalog, tenant_id)
    asset = await _rendered(catalog, tenant_id, CARD)

    made = await _url(catalog, tenant_id, asset.id)

    assert made.url.startswith(f"https://img.example.com/v1/{tenant_id}/{asset.id}/card.webp?")
    assert (made.version, made.key_id, made.expires_at) == (_v(b"w"), key_id, None)
    assert _query(made.url)["v"] == _v(b"w") and "e" not in _query(made.url)
    path = parse_path(urlsplit(made.url).path)
    assert path is not None and (path.preset, path.format) == ("card", "webp")
    assert _verifies(made, signing_secret(key_id, PEPPER))
    assert not _verifies(made, signing_secret("0" * 16, PEPPER))


async def test_a_negotiated_url_carries_the_version_of_every_format_of_the_preset() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    await _key(catalog, tenant_id)
    asset = await _rendered(catalog, tenant_id, CARD)
    # Only the WebP differs: the negotiated version still changes.
    changed = await _rendered(
        catalog,
        tenant_id,
        [("card", "jpeg", b"j"), ("card", "webp", b"w2"), ("card", "avif", b"a")],
    )

    made = await _url(catalog, tenant_id, asset.id, image_format=None)
    other = await _url(catalog, tenant_id, changed.id, image_format=None)

    assert urlsplit(made.url).path == f"/v1/{tenant_id}/{asset.id}/card"
    expected = preset_version([("jpeg", _v(b"j")), ("webp", _v(b"w")), ("avif", _v(b"a"))])
    assert made.version == expected == _query(made.url)["v"]
    assert other.version != made.version


async def test_a_ttl_makes_the_url_expire_then() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    key_id = await _key(catalog, tenant_id)
    asset = await _rendered(catalog, tenant_id, CARD)

    made = await _url(catalog, tenant_id, asset.id, ttl_seconds=3600)

    assert made.expires_at == NOW + dt.timedelta(hours=1)
    assert _query(made.url)["e"] == str(int(NOW.timestamp()) + 3600)
    assert _verifies(made, signing_secret(key_id, PEPPER))
    longest = await _url(catalog, tenant_id, asset.id, ttl_seconds=MAX_URL_TTL_SECONDS)
    assert longest.expires_at == NOW + dt.timedelta(days=365)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ttl_seconds": 365 * 86400 + 1}, "INVALID_TTL"),
        ({"image_format": "png"}, "INVALID_FORMAT"),
    ],
)
async def test_a_ttl_past_a_year_or_an_undelivered_format_is_refused(
    change: dict[str, object], reason: str
) -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    await _key(catalog, tenant_id)
    asset = await _rendered(catalog, tenant_id, CARD)
    with pytest.raises(InvalidArgument) as refused:
        await _url(catalog, tenant_id, asset.id, **change)  # type: ignore[arg-type]
    assert refused.value.reason == reason


async def test_what_cannot_be_linked_to_says_why() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    await _key(catalog, tenant_id)
    asset = await _rendered(catalog, tenant_id, CARD)
    pending, _ = await registered(catalog, new_asset(tenant_id))
    deleted = await _rendered(catalog, tenant_id, CARD[:1])
    await catalog.assets.delete_asset(tenant_id, deleted.id)
    theirs = await _rendered(catalog, await _tenant(catalog, "other"), CARD)

    cases = [
        (asset.id, "card", "png", InvalidArgument, "INVALID_FORMAT"),
        (uuid.uuid4(), "card", None, NotFound, "ASSET_NOT_FOUND"),
        (deleted.id, "card", None, NotFound, "ASSET_NOT_FOUND"),
        (theirs.id, "card", None, NotFound, "ASSET_NOT_FOUND"),
        (pending.id, "card", None, FailedPrecondition, "ASSET_NOT_READY"),
        (asset.id, "poster", None, NotFound, "RENDITION_NOT_FOUND"),
        (asset.id, "thumb", "avif", NotFound, "FORMAT_NOT_AVAILABLE"),
    ]
    for asset_id, preset, image_format, error, reason in cases:
        with pytest.raises(error) as refused:
            await _url(catalog, tenant_id, asset_id, preset=preset, image_format=image_format)
        assert refused.value.reason == reason, (preset, image_format)


# The signing key -----------------------------------------------------------------------


async def test_the_newest_active_key_signs_unless_one_is_named() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    older, newer = await _key(catalog, tenant_id), await _key(catalog, tenant_id)
    asset = await _rendered(catalog, tenant_id, CARD)

    assert (await _url(catalog, tenant_id, asset.id)).key_id == newer
    named = await _url(catalog, tenant_id, asset.id, key_id=older)
    assert named.key_id == older == _query(named.url)["k"]
    assert _verifies(named, signing_secret(older, PEPPER))

    await revoke_signing_key(catalog.tenants, tenant_id=tenant_id, key_id=newer)
    assert (await _url(catalog, tenant_id, asset.id)).key_id == older


@pytest.mark.parametrize("whose", ["revoked", "unknown", "other tenant", "malformed"])
async def test_a_named_key_must_be_an_active_key_of_the_caller(whose: str) -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    revoked = await _key(catalog, tenant_id)
    await _key(catalog, tenant_id)
    await revoke_signing_key(catalog.tenants, tenant_id=tenant_id, key_id=revoked)
    theirs = await _key(catalog, await _tenant(catalog, "other"))
    asset = await _rendered(catalog, tenant_id, CARD)
    key_id = {
        "revoked": revoked,
        "unknown": "0123456789abcdef",
        "other tenant": theirs,
        "malformed": "ABC",
    }[whose]
    with pytest.raises(NotFound) as refused:
        await _url(catalog, tenant_id, asset.id, key_id=key_id)
    assert refused.value.reason == "SIGNING_KEY_NOT_FOUND"


async def test_without_an_active_key_only_an_unsigned_tenant_gets_a_url() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    asset = await _rendered(catalog, tenant_id, CARD)
    with pytest.raises(FailedPrecondition) as refused:
        await _url(catalog, tenant_id, asset.id)
    assert refused.value.reason == "NO_SIGNING_KEY"
    assert "CreateSigningKey" in refused.value.message

    await update_tenant_settings(
        catalog.tenants,
        tenant_id=tenant_id,
        values=TenantSettings(unsigned_delivery=True),
        paths=["unsigned_delivery"],
    )
    made = await _url(catalog, tenant_id, asset.id, ttl_seconds=60)
    assert made.key_id == ""
    assert set(_query(made.url)) == {"v", "e"}

    # A key, once there, signs even for a tenant that allows unsigned URLs.
    key_id = await _key(catalog, tenant_id)
    assert (await _url(catalog, tenant_id, asset.id)).key_id == key_id


# What the delivery service asks ---------------------------------------------------------


async def test_access_gives_the_secret_of_an_active_key_of_that_tenant_only() -> None:
    catalog = FakeCatalog()
    tenant_id, other = await _tenant(catalog), await _tenant(catalog, "other")
    active, revoked, theirs = (
        await _key(catalog, tenant_id),
        await _key(catalog, tenant_id),
        await _key(catalog, other),
    )
    await revoke_signing_key(catalog.tenants, tenant_id=tenant_id, key_id=revoked)

    async def secret(key_id: str) -> str:
        access = await delivery_access(
            catalog.tenants, tenant_id=tenant_id, key_id=key_id, pepper=PEPPER
        )
        assert access.tenant_found and not access.unsigned_delivery
        return access.key_secret

    assert await secret(active) == signing_secret(active, PEPPER)
    for key_id in (revoked, theirs, "0123456789abcdef", ""):
        assert await secret(key_id) == "", key_id
    before = catalog.db.queries["active_signing_key"]
    assert await secret("not a key id") == ""
    assert catalog.db.queries["active_signing_key"] == before, "not looked up"


async def test_access_says_whether_the_tenant_exists_and_allows_unsigned_urls() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    await update_tenant_settings(
        catalog.tenants,
        tenant_id=tenant_id,
        values=TenantSettings(unsigned_delivery=True),
        paths=["unsigned_delivery"],
    )
    found = await delivery_access(catalog.tenants, tenant_id=tenant_id, key_id="", pepper=PEPPER)
    assert (found.tenant_found, found.unsigned_delivery, found.key_secret) == (True, True, "")
    missing = await delivery_access(
        catalog.tenants, tenant_id=uuid.uuid4(), key_id="", pepper=PEPPER
    )
    assert (missing.tenant_found, missing.unsigned_delivery) == (False, False)


async def test_resolve_gives_the_accepted_formats_in_order_and_the_whole_presets_version() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    asset = await _rendered(catalog, tenant_id, CARD)

    every = await resolve_delivery(
        catalog.assets, tenant_id=tenant_id, asset_id=asset.id, preset="card", accept=[]
    )
    some = await resolve_delivery(
        catalog.assets,
        tenant_id=tenant_id,
        asset_id=asset.id,
        preset="card",
        accept=["avif", "png", "jpeg", "avif"],
    )

    assert every.status == some.status == AssetStatus.READY
    assert sorted(r.format for r in every.renditions) == ["avif", "jpeg", "webp"]
    assert [r.format for r in some.renditions] == ["avif", "jpeg"]
    expected = preset_version([("jpeg", _v(b"j")), ("webp", _v(b"w")), ("avif", _v(b"a"))])
    assert every.preset_version == some.preset_version == expected
    (avif, _) = some.renditions
    assert avif.content_sha256 == hashlib.sha256(b"a").hexdigest()
    assert version_of(avif) == _v(b"a")


async def test_resolve_tells_an_unknown_asset_from_a_deleted_or_unfinished_one() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    deleted = await _rendered(catalog, tenant_id, CARD)
    await catalog.assets.delete_asset(tenant_id, deleted.id)
    pending, _ = await registered(catalog, new_asset(tenant_id))
    theirs = await _rendered(catalog, await _tenant(catalog, "other"), CARD)

    async def resolve(asset_id: uuid.UUID) -> tuple[AssetStatus | None, int, str]:
        found = await resolve_delivery(
            catalog.assets, tenant_id=tenant_id, asset_id=asset_id, preset="card", accept=[]
        )
        return found.status, len(found.renditions), found.preset_version

    assert await resolve(uuid.uuid4()) == (None, 0, "")
    assert await resolve(theirs.id) == (None, 0, "")
    assert await resolve(deleted.id) == (AssetStatus.DELETED, 0, "")
    assert await resolve(pending.id) == (AssetStatus.PENDING, 0, "")


async def test_a_key_that_carries_no_version_gives_none() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    asset = await _rendered(catalog, tenant_id, CARD)
    found = await resolve_delivery(
        catalog.assets, tenant_id=tenant_id, asset_id=asset.id, preset="card", accept=["jpeg"]
    )
    (jpeg,) = found.renditions
    assert version_of(jpeg) == _v(b"j")
    assert version_of(replace(jpeg, object_key="renditions/x/card.jpg")) == ""
