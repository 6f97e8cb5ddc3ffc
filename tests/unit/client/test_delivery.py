"""Delivery URLs signed by the client, and the signing-key and settings calls, on the fake."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import grpc
import pytest

from imagepipe.client import (
    AsyncClient,
    DeliveryLink,
    FailedPrecondition,
    ImagepipeError,
    InvalidArgument,
    NotFound,
)
from imagepipe.client._delivery import choose_version, expiry_timestamp
from imagepipe.client._settings import ClientSettings
from imagepipe.delivery import canonical_string, parse_path, parse_query, preset_version, verify
from imagepipe.v1 import common_pb2
from tests.unit.client.fakes import (
    DELIVERY_BASE,
    MODERN_CARDS,
    RENDITIONS,
    TENANT_ID,
    FakeServer,
)

KEY_ID = "00ff00ff00ff00ff"
SECRET = "s" * 43


def _parts(url: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(url)
    return split.path, dict(parse_qsl(split.query))


def _verifies(url: str, secret: str, base: str = DELIVERY_BASE) -> bool:
    """What delivery checks: the signature over the path and v, e, k."""
    assert url.startswith(base + "/v1/")
    path, query = _parts(url.removeprefix(base))
    parsed = parse_query(query)
    assert parsed is not None and parsed.key_id is not None and parsed.signature is not None
    canonical = canonical_string(
        path, version=parsed.version, expires=parsed.expires, key_id=parsed.key_id
    )
    return verify(secret, canonical, parsed.signature)


@pytest.fixture
async def signer(fake: FakeServer) -> AsyncIterator[AsyncClient]:
    """A client with a signing key, pointed at the fake's delivery base URL."""
    env = {
        **fake.env(),
        "IMAGEPIPE_DELIVERY_URL": DELIVERY_BASE,
        "IMAGEPIPE_SIGNING_KEY_ID": KEY_ID,
        "IMAGEPIPE_SIGNING_SECRET": SECRET,
    }
    async with AsyncClient.from_env(env, timeout=10.0) as opened:
        yield opened


async def _ready_asset(client: AsyncClient, fake: FakeServer) -> str:
    fake.catalog.reads_until_ready = 0
    uploaded = await client.upload(io.BytesIO(b"\xff\xd8\xff photo"), filename="p.jpg")
    return uploaded.asset_id


async def test_a_format_url_carries_the_renditions_version_and_verifies(
    signer: AsyncClient, fake: FakeServer
) -> None:
    asset_id = await _ready_asset(signer, fake)

    link = await signer.delivery_link(asset_id, "card", "jpeg")

    path, query = _parts(link.url.removeprefix(DELIVERY_BASE))
    assert parse_path(path) == parse_path(f"/v1/{TENANT_ID}/{asset_id}/card.jpg")
    assert query["v"] == RENDITIONS[0].version == link.version
    assert query["k"] == KEY_ID == link.key_id and link.signed
    assert "e" not in query and link.expire_time is None
    assert _verifies(link.url, SECRET)
    assert not _verifies(link.url, "t" * 43)
    assert await signer.delivery_url(asset_id, "card", "jpg") == link.url
    # One GetAsset per URL: signing needs no other call.
    assert fake.recorder.calls["GetAsset"] == 2


async def test_a_negotiated_url_carries_the_version_of_every_format(
    signer: AsyncClient, fake: FakeServer
) -> None:
    fake.catalog.renditions = RENDITIONS + MODERN_CARDS
    asset_id = await _ready_asset(signer, fake)

    negotiated = await signer.delivery_link(asset_id, "card")
    webp = await signer.delivery_link(asset_id, "card", common_pb2.IMAGE_FORMAT_WEBP)

    cards = [r for r in fake.catalog.renditions if r.preset == "card"]
    expected = preset_version(
        [("jpeg", cards[0].version), ("webp", cards[1].version), ("avif", cards[2].version)]
    )
    assert negotiated.version == expected
    assert urlsplit(negotiated.url).path.endswith(f"/{asset_id}/card")
    assert webp.version == MODERN_CARDS[0].version
    assert urlsplit(webp.url).path.endswith("/card.webp")
    assert _verifies(negotiated.url, SECRET) and _verifies(webp.url, SECRET)


async def test_expiry_from_a_timedelta_or_a_datetime(signer: AsyncClient, fake: FakeServer) -> None:
    asset_id = await _ready_asset(signer, fake)

    before = int(datetime.now(UTC).timestamp())
    hour = await signer.delivery_link(asset_id, "thumb", "jpeg", timedelta(hours=1))
    after = int(datetime.now(UTC).timestamp())
    expires = int(_parts(hour.url)[1]["e"])
    assert before + 3600 <= expires <= after + 3600
    assert hour.expire_time == datetime.fromtimestamp(expires, UTC)
    assert _verifies(hour.url, SECRET)

    moment = datetime(2100, 1, 2, 3, 4, 5, 999_000, tzinfo=UTC)
    fixed = await signer.delivery_link(asset_id, "thumb", "jpeg", moment)
    # Never later than asked: the fraction of a second is dropped.
    assert _parts(fixed.url)[1]["e"] == str(int(moment.timestamp()))
    naive = await signer.delivery_link(asset_id, "thumb", "jpeg", moment.replace(tzinfo=None))
    assert naive.url == fixed.url

    calls = dict(fake.recorder.calls)
    with pytest.raises(InvalidArgument) as past:
        await signer.delivery_url(asset_id, "thumb", "jpeg", timedelta(seconds=-1))
    assert past.value.reason == "EXPIRY_IN_PAST"
    assert fake.recorder.calls == calls


def test_expiry_timestamp_rounds_down_and_refuses_the_past() -> None:
    now = datetime(2030, 6, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    assert expiry_timestamp(None, now) is None
    assert expiry_timestamp(timedelta(seconds=90), now) == int(now.timestamp()) + 90
    with pytest.raises(InvalidArgument):
        expiry_timestamp(timedelta(seconds=0.2), now)
    with pytest.raises(InvalidArgument):
        expiry_timestamp(now - timedelta(days=1), now)


async def test_without_a_key_the_url_is_unsigned(client: AsyncClient, fake: FakeServer) -> None:
    asset_id = await _ready_asset(client, fake)

    link = await client.delivery_link(asset_id, "card", "jpeg", timedelta(minutes=5))

    assert link.url.startswith("http://127.0.0.1:8080/v1/")  # the default base URL
    query = _parts(link.url)[1]
    assert set(query) == {"v", "e"}
    assert link.key_id == "" and not link.signed
    assert client.signing_key_id is None


async def test_errors_name_what_is_missing(signer: AsyncClient, fake: FakeServer) -> None:
    fake.catalog.reads_until_ready = 1
    uploaded = await signer.upload(io.BytesIO(b"\xff\xd8\xff later"), filename="l.jpg")

    with pytest.raises(FailedPrecondition) as pending:
        await signer.delivery_url(uploaded.asset_id, "card")
    assert pending.value.reason == "ASSET_NOT_READY"
    assert pending.value.request_id  # the id of the GetAsset call it came from

    with pytest.raises(NotFound) as no_preset:
        await signer.delivery_url(uploaded.asset_id, "poster")
    assert no_preset.value.reason == "RENDITION_NOT_FOUND"

    with pytest.raises(NotFound) as no_format:
        await signer.delivery_url(uploaded.asset_id, "card", "avif")
    assert no_format.value.reason == "FORMAT_NOT_AVAILABLE"
    assert no_format.value.metadata == {"available": "jpeg"}

    with pytest.raises(InvalidArgument) as png:
        await signer.delivery_url(uploaded.asset_id, "card", "png")
    assert png.value.reason == "INVALID_FORMAT"
    with pytest.raises(InvalidArgument):
        await signer.delivery_url(uploaded.asset_id, "card", "bmp-ish")

    with pytest.raises(NotFound) as unknown:
        await signer.delivery_url("0b9a2c38-3c1f-4b3e-9d6e-5f4a3b2c1d0e", "card")
    assert unknown.value.reason == "ASSET_NOT_FOUND"


def test_version_choice_for_deleted_and_versionless_assets() -> None:
    asset = common_pb2.Asset(
        asset_id="a", status=common_pb2.ASSET_STATUS_READY, renditions=RENDITIONS
    )
    assert choose_version(asset, "thumb", "jpeg") == RENDITIONS[1].version
    assert choose_version(asset, "thumb", None) == preset_version([("jpeg", RENDITIONS[1].version)])
    failed = common_pb2.Asset(asset_id="a", status=common_pb2.ASSET_STATUS_FAILED)
    with pytest.raises(NotFound, match="no 'card' rendition"):
        choose_version(failed, "card", None)
    deleted = common_pb2.Asset(
        asset_id="a", status=common_pb2.ASSET_STATUS_DELETED, renditions=RENDITIONS
    )
    with pytest.raises(NotFound, match="is deleted") as gone:
        choose_version(deleted, "card", "jpeg")
    assert gone.value.reason == "ASSET_NOT_FOUND"
    old = common_pb2.Rendition(preset="card", format=common_pb2.IMAGE_FORMAT_JPEG)
    older_server = common_pb2.Asset(
        asset_id="a", status=common_pb2.ASSET_STATUS_READY, renditions=[old]
    )
    with pytest.raises(FailedPrecondition) as versionless:
        choose_version(older_server, "card", "jpeg")
    assert versionless.value.reason == "VERSION_UNKNOWN"


async def test_half_a_key_or_a_malformed_one_fails_before_any_call(fake: FakeServer) -> None:
    for extra, reason in (
        ({"IMAGEPIPE_SIGNING_KEY_ID": KEY_ID}, "SIGNING_KEY_INCOMPLETE"),
        ({"IMAGEPIPE_SIGNING_SECRET": SECRET}, "SIGNING_KEY_INCOMPLETE"),
        (
            {"IMAGEPIPE_SIGNING_KEY_ID": "not-a-key", "IMAGEPIPE_SIGNING_SECRET": SECRET},
            "SIGNING_KEY_MALFORMED",
        ),
    ):
        async with AsyncClient.from_env({**fake.env(), **extra}) as client:
            with pytest.raises(ImagepipeError) as refused:
                await client.delivery_url("a", "card")
        assert refused.value.reason == reason
        assert "IMAGEPIPE_SIGNING" in refused.value.message or "16 hex" in refused.value.message
    assert fake.recorder.calls == {}


def test_the_secret_stays_out_of_reprs(fake: FakeServer) -> None:
    env = {**fake.env(), "IMAGEPIPE_SIGNING_KEY_ID": KEY_ID, "IMAGEPIPE_SIGNING_SECRET": SECRET}
    client = AsyncClient.from_env(env, delivery_url="https://img.example.test")
    assert client.signing_key_id == KEY_ID
    assert client.delivery_base_url == "https://img.example.test"
    shown = repr(client._signer) + repr(client._calls.__dict__)
    assert SECRET not in shown
    settings = ClientSettings(api_key="ip_key", signing_key_id=KEY_ID, signing_secret=SECRET)
    assert SECRET not in repr(settings) and "ip_key" not in repr(settings)
    assert KEY_ID in repr(settings)


async def test_signing_keys_create_list_revoke(client: AsyncClient, fake: FakeServer) -> None:
    created = await client.create_signing_key("www")
    assert created.key_id == created.signing_key.key_id and len(created.key_id) == 16
    assert created.signing_key.label == "www"
    assert created.secret and created.secret not in repr(created)
    other = await client.create_signing_key()

    listed = await client.list_signing_keys()
    assert [k.key_id for k in listed] == [created.key_id, other.key_id]

    revoked = await client.revoke_signing_key(created.key_id)
    assert revoked.key_id == created.key_id and revoked.HasField("revoke_time")
    with pytest.raises(NotFound) as unknown:
        await client.revoke_signing_key("0000000000000000")
    assert unknown.value.reason == "SIGNING_KEY_NOT_FOUND"
    authorizations = {seen["authorization"] for _, seen in fake.recorder.metadata}
    assert len(authorizations) == 1  # every one a tenant call


async def test_the_server_signs_the_same_url_the_client_does(
    client: AsyncClient, fake: FakeServer
) -> None:
    created = await client.create_signing_key("cdn")
    asset_id = await _ready_asset(client, fake)
    async with AsyncClient.from_env(
        fake.env(),
        delivery_url=DELIVERY_BASE,
        signing_key_id=created.key_id,
        signing_secret=created.secret,
    ) as local:
        for image_format in ("jpeg", None):
            served = await client.get_delivery_url(
                asset_id, "card", image_format, ttl_seconds=600, key_id=created.key_id
            )
            assert isinstance(served, DeliveryLink) and served.expire_time is not None
            assert served.key_id == created.key_id
            mine = await local.delivery_link(asset_id, "card", image_format, served.expire_time)
            assert mine == served
            assert _verifies(served.url, created.secret)


async def test_tenant_settings_send_a_mask_of_what_changes(
    client: AsyncClient, fake: FakeServer
) -> None:
    assert (await client.get_tenant_settings()).unsigned_delivery is False
    updated = await client.update_tenant_settings(unsigned_delivery=True)
    assert updated.unsigned_delivery is True
    assert (await client.get_tenant_settings()).unsigned_delivery is True
    assert (await client.update_tenant_settings(unsigned_delivery=False)).unsigned_delivery is False
    assert fake.catalog.signing.masks == [["unsigned_delivery"], ["unsigned_delivery"]]

    with pytest.raises(InvalidArgument) as nothing:
        await client.update_tenant_settings()
    assert nothing.value.reason == "UPDATE_MASK_REQUIRED"
    assert nothing.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fake.recorder.calls["UpdateTenantSettings"] == 2

    # With unsigned delivery on and no key, the server's URL is unsigned too.
    await client.update_tenant_settings(unsigned_delivery=True)
    asset_id = await _ready_asset(client, fake)
    served = await client.get_delivery_url(asset_id, "thumb", "jpeg")
    assert served.key_id == "" and served.expire_time is None
    assert set(_parts(served.url)[1]) == {"v"}
