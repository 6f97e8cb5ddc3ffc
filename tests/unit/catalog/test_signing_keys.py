"""Signing keys of delivery URLs: a secret derived from the key id (never stored), at
most ten active keys a tenant, and a tenant reaches only its own keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid

import pytest

from services.catalog.usecases.signing_keys import (
    MAX_ACTIVE_SIGNING_KEYS,
    create_signing_key,
    list_signing_keys,
    revoke_signing_key,
    signing_secret,
)
from services.catalog.usecases.tenants import create_tenant
from services.shared.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.unit.catalog.fakes import FakeCatalog

PEPPER = "pepper-for-tests"


async def _tenant(catalog: FakeCatalog, name: str = "acme") -> uuid.UUID:
    return (await create_tenant(catalog.tenants, name=name, pepper=PEPPER)).tenant.id


def test_the_secret_is_hmac_sha256_of_the_key_id_under_the_pepper() -> None:
    key_id = "00ff00ff00ff00ff"
    digest = hmac.new(
        PEPPER.encode(), b"imagepipe delivery signing key v1:" + key_id.encode(), hashlib.sha256
    ).digest()
    secret = signing_secret(key_id, PEPPER)
    assert secret == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)


def test_the_secret_is_the_same_every_time_and_differs_per_key_and_pepper() -> None:
    one = signing_secret("0123456789abcdef", PEPPER)
    assert one == signing_secret("0123456789abcdef", PEPPER)
    assert one != signing_secret("0123456789abcdee", PEPPER)
    assert one != signing_secret("0123456789abcdef", PEPPER + "x")


async def test_a_new_key_has_a_random_id_and_its_derived_secret() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    first = await create_signing_key(
        catalog.tenants, tenant_id=tenant_id, label="www", pepper=PEPPER
    )
    second = await create_signing_key(catalog.tenants, tenant_id=tenant_id, label="", pepper=PEPPER)
    key = first.signing_key
    assert re.fullmatch(r"[0-9a-f]{16}", key.key_id)
    assert key.key_id != second.signing_key.key_id
    assert (key.tenant_id, key.label, key.revoked_at) == (tenant_id, "www", None)
    assert first.secret == signing_secret(key.key_id, PEPPER)
    assert first.secret != second.secret


async def test_a_tenant_holds_at_most_ten_active_keys() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    made = [
        await create_signing_key(catalog.tenants, tenant_id=tenant_id, label="", pepper=PEPPER)
        for _ in range(MAX_ACTIVE_SIGNING_KEYS)
    ]
    assert MAX_ACTIVE_SIGNING_KEYS == 10
    with pytest.raises(FailedPrecondition) as refused:
        await create_signing_key(catalog.tenants, tenant_id=tenant_id, label="", pepper=PEPPER)
    assert refused.value.reason == "TOO_MANY_SIGNING_KEYS"
    assert "revoke one first" in refused.value.message
    # Another tenant's keys do not count; a revoked one frees a place.
    other = await _tenant(catalog, "other")
    await create_signing_key(catalog.tenants, tenant_id=other, label="", pepper=PEPPER)
    await revoke_signing_key(
        catalog.tenants, tenant_id=tenant_id, key_id=made[3].signing_key.key_id
    )
    await create_signing_key(catalog.tenants, tenant_id=tenant_id, label="", pepper=PEPPER)
    keys = await list_signing_keys(catalog.tenants, tenant_id=tenant_id)
    assert len(keys) == MAX_ACTIVE_SIGNING_KEYS + 1


async def test_a_label_is_at_most_200_characters() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    await create_signing_key(catalog.tenants, tenant_id=tenant_id, label="l" * 200, pepper=PEPPER)
    with pytest.raises(InvalidArgument) as refused:
        await create_signing_key(
            catalog.tenants, tenant_id=tenant_id, label="l" * 201, pepper=PEPPER
        )
    assert refused.value.reason == "INVALID_LABEL"
    assert catalog.db.queries["create_signing_key"] == 1


async def test_keys_are_listed_oldest_first_with_the_revoked_ones() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    other = await _tenant(catalog, "other")
    await create_signing_key(catalog.tenants, tenant_id=other, label="theirs", pepper=PEPPER)
    ids = [
        (
            await create_signing_key(
                catalog.tenants, tenant_id=tenant_id, label=str(n), pepper=PEPPER
            )
        ).signing_key.key_id
        for n in range(3)
    ]
    await revoke_signing_key(catalog.tenants, tenant_id=tenant_id, key_id=ids[1])
    keys = await list_signing_keys(catalog.tenants, tenant_id=tenant_id)
    assert [k.key_id for k in keys] == ids
    assert [k.revoked_at is not None for k in keys] == [False, True, False]


async def test_revoking_again_keeps_the_first_revoke_time() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    key_id = (
        await create_signing_key(catalog.tenants, tenant_id=tenant_id, label="", pepper=PEPPER)
    ).signing_key.key_id
    first = await revoke_signing_key(catalog.tenants, tenant_id=tenant_id, key_id=key_id)
    again = await revoke_signing_key(catalog.tenants, tenant_id=tenant_id, key_id=key_id)
    assert first.revoked_at is not None and again.revoked_at == first.revoked_at


@pytest.mark.parametrize("whose", ["malformed", "unknown", "other tenant"])
async def test_only_the_tenants_own_keys_can_be_revoked(whose: str) -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    other = await _tenant(catalog, "other")
    theirs = (
        await create_signing_key(catalog.tenants, tenant_id=other, label="", pepper=PEPPER)
    ).signing_key
    key_id = {"malformed": "NOT-A-KEY\x00", "unknown": "0123456789abcdef"}.get(whose, theirs.key_id)
    with pytest.raises(NotFound) as refused:
        await revoke_signing_key(catalog.tenants, tenant_id=tenant_id, key_id=key_id)
    assert refused.value.reason == "SIGNING_KEY_NOT_FOUND"
    (still,) = await list_signing_keys(catalog.tenants, tenant_id=other)
    assert still.revoked_at is None
    if whose == "malformed":
        assert catalog.db.queries["revoke_signing_key"] == 0, "refused before the database"


@pytest.mark.parametrize("pepper", ["", "short-pepper"])
async def test_no_key_is_made_or_derived_under_a_missing_or_short_pepper(pepper: str) -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    with pytest.raises(FailedPrecondition) as refused:
        await create_signing_key(catalog.tenants, tenant_id=tenant_id, label="", pepper=pepper)
    assert refused.value.reason == "SIGNING_NOT_CONFIGURED"
    assert "IMAGEPIPE_KEY_PEPPER" in str(refused.value)
    assert await list_signing_keys(catalog.tenants, tenant_id=tenant_id) == []
    with pytest.raises(FailedPrecondition):
        signing_secret("0123456789abcdef", pepper)
