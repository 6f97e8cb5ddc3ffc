"""A rendition's content hash: CompleteJob takes it only when it names the bytes its
object key names, and every Rendition message carries it with the key's version."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from imagepipe.v1 import catalog_internal_pb2, common_pb2
from services.catalog.api import convert, requests
from services.catalog.usecases.tenants import create_tenant
from services.shared.errors import InvalidArgument
from tests.unit.catalog.fakes import FakeCatalog, new_asset, new_rendition, registered

DIGEST = hashlib.sha256(b"bytes").hexdigest()
KEY = f"renditions/t/a/card.{DIGEST[:16]}.webp"


def _completion(
    content_hash: str, object_key: str = KEY
) -> catalog_internal_pb2.CompleteJobRequest:
    rendition = common_pb2.Rendition(
        preset="card",
        format=common_pb2.IMAGE_FORMAT_WEBP,
        width=4,
        height=3,
        size_bytes=5,
        quality=80,
        content_hash=content_hash,
    )
    record = catalog_internal_pb2.RenditionRecord(rendition=rendition, object_key=object_key)
    return catalog_internal_pb2.CompleteJobRequest(job_id="j", attempt=1, renditions=[record])


def test_a_hash_that_names_the_keys_bytes_is_recorded() -> None:
    request = _completion(DIGEST)
    (made,) = convert.new_renditions(request, requests.checked_completion(request))
    assert made.content_sha256 == DIGEST


def test_without_a_hash_nothing_is_checked_or_recorded() -> None:
    request = _completion("", object_key="k")
    (made,) = convert.new_renditions(request, requests.checked_completion(request))
    assert made.content_sha256 is None


@pytest.mark.parametrize(
    ("content_hash", "object_key", "reason"),
    [
        (DIGEST.upper(), KEY, "INVALID_HASH"),
        (DIGEST[:63], KEY, "INVALID_HASH"),
        (DIGEST + "\n", KEY, "INVALID_HASH"),
        (hashlib.sha256(b"other").hexdigest(), KEY, "CONTENT_HASH_MISMATCH"),
        (DIGEST, "renditions/t/a/card.webp", "CONTENT_HASH_MISMATCH"),
        (DIGEST, "k", "CONTENT_HASH_MISMATCH"),
    ],
)
def test_a_malformed_hash_or_one_the_key_does_not_name_is_refused(
    content_hash: str, object_key: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        requests.checked_completion(_completion(content_hash, object_key))
    assert refused.value.reason == reason
    assert refused.value.metadata == {"field": "renditions[0].content_hash"}


async def test_rendition_messages_carry_the_hash_and_the_keys_version() -> None:
    catalog = FakeCatalog()
    tenant_id = (await create_tenant(catalog.tenants, name="acme", pepper="p")).tenant.id
    asset, job = await registered(catalog, new_asset(tenant_id))
    started = await catalog.jobs.start_attempt(job.id, "r", dt.timedelta(minutes=1))
    made = [
        new_rendition(tenant_id, asset.id, "card", "webp", object_key=KEY, content_sha256=DIGEST),
        new_rendition(tenant_id, asset.id, "thumb", "jpeg"),  # recorded without a hash
    ]
    await catalog.jobs.complete_job(job.id, started.attempt, made, None, None)
    stored = await catalog.assets.list_renditions(tenant_id, [asset.id])
    by_preset = {r.preset: r for r in stored}
    messages = {m.preset: m for m in map(convert.rendition_message, stored)}
    assert (messages["card"].content_hash, messages["card"].version) == (DIGEST, DIGEST[:16])
    assert messages["thumb"].content_hash == ""
    assert messages["thumb"].version == by_preset["thumb"].object_key.split(".")[1]
    record = convert.rendition_record(by_preset["card"])
    assert (record.rendition.version, record.object_key) == (DIGEST[:16], KEY)
    deliverable = convert.deliverable_rendition(by_preset["card"])
    assert (deliverable.content_type, deliverable.version, deliverable.content_hash) == (
        "image/webp",
        DIGEST[:16],
        DIGEST,
    )


@pytest.mark.parametrize("name", ["card", "a", "zoom_2x", "x-1", "a" * 32])
def test_a_preset_name_is_taken(name: str) -> None:
    assert requests.preset_name(name) == name


@pytest.mark.parametrize("name", ["", "Card", "1card", "card.jpg", "a" * 33, "card\n", "../x"])
def test_anything_else_is_not_a_preset_name(name: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        requests.preset_name(name)
    assert refused.value.reason == "INVALID_PRESET"


def test_a_delivery_format_is_unspecified_or_a_known_format() -> None:
    assert requests.delivery_format(common_pb2.IMAGE_FORMAT_UNSPECIFIED) is None
    assert requests.delivery_format(common_pb2.IMAGE_FORMAT_AVIF) == "avif"
    with pytest.raises(InvalidArgument):
        requests.delivery_format(99)
