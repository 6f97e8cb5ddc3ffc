"""Keys are built and read in services/shared/storage.py only: the parser must read
what the builder writes, and nothing else."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from services.shared.storage import (
    asset_of_rendition_key,
    original_key,
    rendition_key,
    tenant_prefixes,
)


def test_the_asset_of_a_rendition_key_is_the_asset_it_was_built_for() -> None:
    tenant, asset = str(uuid.uuid4()), str(uuid.uuid4())
    assert (
        asset_of_rendition_key(
            rendition_key(tenant, asset, "thumb", "webp", hashlib.sha256(b"x").hexdigest())
        )
        == asset
    )


@pytest.mark.parametrize(
    "key",
    [
        original_key(str(uuid.uuid4()), "ab" * 32),
        f"renditions/{uuid.uuid4()}/not-an-id/thumb.0123456789abcdef.webp",
        f"renditions/{uuid.uuid4()}/{uuid.uuid4()}/extra/thumb.webp",
        f"originals/{uuid.uuid4()}/{uuid.uuid4()}/thumb.webp",
    ],
)
def test_any_other_key_has_no_asset(key: str) -> None:
    assert asset_of_rendition_key(key) is None


def test_every_key_of_a_tenant_is_under_one_of_its_prefixes() -> None:
    tenant, asset = str(uuid.uuid4()), str(uuid.uuid4())
    originals, renditions = tenant_prefixes(tenant)
    assert original_key(tenant, "ab" * 32).startswith(originals)
    assert rendition_key(
        tenant, asset, "thumb", "webp", hashlib.sha256(b"x").hexdigest()
    ).startswith(renditions)
    assert not original_key(str(uuid.uuid4()), "ab" * 32).startswith(originals)
