"""Resolving a presented API key to its tenant: only a known, unrevoked key with its
own secret passes, and every refusal looks the same, unknown key ids included (their
secret is still compared, so timing does not tell which key ids exist)."""

from __future__ import annotations

import hmac

import pytest

from services.catalog.usecases.tenants import (
    KeyAuthenticator,
    create_tenant,
    issue_api_key,
    revoke_api_key,
)
from services.shared.auth import Principal, PrincipalKind, generate_api_key, parse_api_key
from services.shared.errors import Unauthenticated
from tests.unit.catalog.fakes import FakeCatalog

PEPPER = "pepper-for-tests"


async def _refusal(authenticator: KeyAuthenticator, api_key: str) -> tuple[str, str]:
    with pytest.raises(Unauthenticated) as refused:
        await authenticator.authenticate(api_key)
    return refused.value.reason, refused.value.message


async def test_a_tenants_key_resolves_to_that_tenant() -> None:
    catalog = FakeCatalog()
    created = await create_tenant(catalog.tenants, name="acme", pepper=PEPPER)
    await create_tenant(catalog.tenants, name="other", pepper=PEPPER)
    authenticator = KeyAuthenticator(catalog.tenants, PEPPER)

    principal = await authenticator.authenticate(created.secret_key)

    assert principal == Principal(
        PrincipalKind.TENANT, str(created.tenant.id), created.api_key.key_id
    )


async def test_unknown_wrong_and_revoked_keys_are_refused_alike() -> None:
    catalog = FakeCatalog()
    created = await create_tenant(catalog.tenants, name="acme", pepper=PEPPER)
    second = await issue_api_key(
        catalog.tenants, tenant_id=created.tenant.id, label="ci", pepper=PEPPER
    )
    authenticator = KeyAuthenticator(catalog.tenants, PEPPER)
    key = parse_api_key(created.secret_key)
    unknown = generate_api_key().full
    wrong_secret = f"ip_{key.key_id}_{generate_api_key().secret}"

    refusals = {await _refusal(authenticator, k) for k in (unknown, wrong_secret)}
    await revoke_api_key(catalog.tenants, key_id=key.key_id)
    refusals.add(await _refusal(authenticator, created.secret_key))

    assert refusals == {("INVALID_API_KEY", "unknown or revoked API key")}
    # The tenant's other key still works.
    principal = await authenticator.authenticate(second.secret_key)
    assert principal.tenant_id == str(created.tenant.id)


async def test_a_key_checked_under_another_pepper_is_refused() -> None:
    catalog = FakeCatalog()
    created = await create_tenant(catalog.tenants, name="acme", pepper=PEPPER)
    other = KeyAuthenticator(catalog.tenants, "another-pepper")
    assert await _refusal(other, created.secret_key) == (
        "INVALID_API_KEY",
        "unknown or revoked API key",
    )


async def test_a_malformed_key_is_refused_before_any_lookup() -> None:
    catalog = FakeCatalog()
    authenticator = KeyAuthenticator(catalog.tenants, PEPPER)
    reason, _ = await _refusal(authenticator, "not-a-key")
    assert reason == "MALFORMED_KEY"
    assert catalog.db.queries["get_api_key"] == 0


async def test_an_unknown_key_id_still_compares_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = FakeCatalog()
    created = await create_tenant(catalog.tenants, name="acme", pepper=PEPPER)
    compared: list[tuple[bytes, bytes]] = []
    constant_time = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    # The use case calls hmac.compare_digest through the module at each call.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    authenticator = KeyAuthenticator(catalog.tenants, PEPPER)

    await authenticator.authenticate(created.secret_key)
    await _refusal(authenticator, generate_api_key().full)

    known, unknown = compared
    # The same work for a key id that exists and one that does not: a comparison of
    # two digests of the same length, the unknown one against nothing it could match.
    assert len(unknown[0]) == len(unknown[1]) == len(known[0]) == len(known[1])
    assert unknown[1] == bytes(len(unknown[0]))
