"""Signing keys and tenant settings on PostgreSQL, and a URL from GetDeliveryUrl
checked the way the delivery service checks it.

- racing creations cannot pass the ten-active-keys limit (the tenant row serialises
  them); listing, revoking and picking the active key follow the store's contract;
- a tenant's settings change by name, for that tenant only;
- GetDeliveryUrl's URL verifies with imagepipe.delivery.verify and the secret
  CreateSigningKey returned, and with no other; GetDeliveryAccess gives that same
  secret, until the key is revoked.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from imagepipe.delivery import canonical_string, parse_query, verify
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)
from services.catalog.model import TenantSettings
from services.catalog.usecases.signing_keys import MAX_ACTIVE_SIGNING_KEYS
from tests.conftest import ISSUED_TENANT_KEYS
from tests.helpers import Services, Tenant, upload, wait_for_status
from tests.integration.catalog_db import catalog_database, new_tenant


def _key_id() -> str:
    return uuid.uuid4().hex[:16]


async def test_racing_creations_stop_at_the_limit() -> None:
    async with catalog_database("signing_race") as repo:
        tenant_id = await new_tenant(repo)
        made = await asyncio.gather(
            *(
                repo.tenants.create_signing_key(tenant_id, _key_id(), "", MAX_ACTIVE_SIGNING_KEYS)
                for _ in range(3 * MAX_ACTIVE_SIGNING_KEYS)
            )
        )
        created = [k for k in made if k is not None]
        assert len(created) == MAX_ACTIVE_SIGNING_KEYS
        assert len(await repo.tenants.list_signing_keys(tenant_id)) == MAX_ACTIVE_SIGNING_KEYS
        # A revoked key frees a place; another tenant has places of its own.
        await repo.tenants.revoke_signing_key(tenant_id, created[0].key_id)
        assert await repo.tenants.create_signing_key(tenant_id, _key_id(), "", 10) is not None
        assert await repo.tenants.create_signing_key(tenant_id, _key_id(), "", 10) is None
        other = await new_tenant(repo, "other")
        assert await repo.tenants.create_signing_key(other, _key_id(), "", 10) is not None


async def test_keys_are_listed_revoked_and_picked_per_tenant() -> None:
    async with catalog_database("signing_keys") as repo:
        tenant_id, other = await new_tenant(repo), await new_tenant(repo, "other")
        ids = [_key_id() for _ in range(3)]
        for n, key_id in enumerate(ids):
            assert await repo.tenants.create_signing_key(tenant_id, key_id, f"k{n}", 10)
        theirs = _key_id()
        assert await repo.tenants.create_signing_key(other, theirs, "", 10)
        keys = repo.tenants

        assert [k.key_id for k in await keys.list_signing_keys(tenant_id)] == ids
        assert [k.label for k in await keys.list_signing_keys(tenant_id)] == ["k0", "k1", "k2"]
        newest = await keys.active_signing_key(tenant_id, None)
        assert newest is not None and newest.key_id == ids[2]
        named = await keys.active_signing_key(tenant_id, ids[0])
        assert named is not None and named.key_id == ids[0]
        assert await keys.active_signing_key(tenant_id, theirs) is None

        assert await keys.revoke_signing_key(tenant_id, theirs) is None
        first = await keys.revoke_signing_key(tenant_id, ids[2])
        again = await keys.revoke_signing_key(tenant_id, ids[2])
        assert first is not None and again is not None
        assert first.revoked_at is not None and again.revoked_at == first.revoked_at
        assert await keys.active_signing_key(tenant_id, ids[2]) is None
        newest = await keys.active_signing_key(tenant_id, None)
        assert newest is not None and newest.key_id == ids[1]
        assert [k.revoked_at is None for k in await keys.list_signing_keys(tenant_id)] == [
            True,
            True,
            False,
        ]


async def test_the_database_keeps_only_well_formed_keys_and_hashes() -> None:
    async with catalog_database("signing_checks") as repo:
        tenant_id = await new_tenant(repo)
        async with repo.pool.acquire() as connection:
            for key_id, label in (("ABCDEF0123456789", ""), (_key_id(), "l" * 201)):
                with pytest.raises(asyncpg.CheckViolationError):
                    await connection.execute(
                        "INSERT INTO signing_keys (key_id, tenant_id, label) VALUES ($1, $2, $3)",
                        key_id,
                        tenant_id,
                        label,
                    )
            constraint = await connection.fetchval(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "WHERE c.conrelid = 'renditions'::regclass AND c.contype = 'c' "
                "AND pg_get_constraintdef(c.oid) LIKE '%content_sha256%'"
            )
            assert "[0-9a-f]{64}" in constraint


async def test_settings_change_by_name_for_that_tenant_only() -> None:
    async with catalog_database("tenant_settings") as repo:
        tenant_id, other = await new_tenant(repo), await new_tenant(repo, "other")
        assert await repo.tenants.tenant_settings(tenant_id) == TenantSettings()
        changed = await repo.tenants.update_tenant_settings(tenant_id, {"unsigned_delivery": True})
        assert changed == TenantSettings(unsigned_delivery=True)
        assert await repo.tenants.tenant_settings(tenant_id) == changed
        assert await repo.tenants.tenant_settings(other) == TenantSettings()
        missing = uuid.uuid4()
        assert await repo.tenants.tenant_settings(missing) is None
        assert (
            await repo.tenants.update_tenant_settings(missing, {"unsigned_delivery": True}) is None
        )


def _verifies(url: str, secret: str) -> bool:
    parts = urlsplit(url)
    query = parse_query({k: v[0] for k, v in parse_qs(parts.query).items()})
    assert query is not None and query.signature is not None
    canonical = canonical_string(
        parts.path, version=query.version, expires=query.expires, key_id=query.key_id
    )
    return verify(secret, canonical, query.signature)


def test_a_delivery_url_verifies_with_the_secret_create_signing_key_gave(
    services: Services, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    tenant = make_tenant("signer")
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    uploaded = upload(services, tenant, (corpus / "jpeg_progressive_portrait.jpg").read_bytes())
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id, timeout=60)
    assert asset.status == common_pb2.ASSET_STATUS_READY

    created = catalog.CreateSigningKey(
        catalog_pb2.CreateSigningKeyRequest(label="site"), metadata=tenant.metadata
    )
    ISSUED_TENANT_KEYS[f"signing secret {created.signing_key.key_id}"] = created.secret
    other = catalog.CreateSigningKey(
        catalog_pb2.CreateSigningKeyRequest(label="other"), metadata=tenant.metadata
    )
    ISSUED_TENANT_KEYS[f"signing secret {other.signing_key.key_id}"] = other.secret

    made = catalog.GetDeliveryUrl(
        catalog_pb2.GetDeliveryUrlRequest(
            asset_id=asset.asset_id,
            preset="zoom",
            format=common_pb2.IMAGE_FORMAT_JPEG,
            ttl_seconds=3600,
            key_id=created.signing_key.key_id,
        ),
        metadata=tenant.metadata,
    )
    assert made.url.startswith("http") and made.key_id == created.signing_key.key_id
    assert _verifies(made.url, created.secret)
    assert not _verifies(made.url, other.secret)
    zoom = next(r for r in asset.renditions if r.preset == "zoom")
    assert made.version == zoom.version == zoom.content_hash[:16]

    def secret_for(key_id: str) -> str:
        return internal.GetDeliveryAccess(
            catalog_internal_pb2.GetDeliveryAccessRequest(
                tenant_id=tenant.tenant_id, key_id=key_id
            ),
            metadata=services.internal_metadata,
        ).key_secret

    assert secret_for(created.signing_key.key_id) == created.secret
    catalog.RevokeSigningKey(
        catalog_pb2.RevokeSigningKeyRequest(key_id=created.signing_key.key_id),
        metadata=tenant.metadata,
    )
    assert secret_for(created.signing_key.key_id) == ""
    # Unnamed, the newest active key signs: the one left.
    newest = catalog.GetDeliveryUrl(
        catalog_pb2.GetDeliveryUrlRequest(asset_id=asset.asset_id, preset="zoom"),
        metadata=tenant.metadata,
    )
    assert newest.key_id == other.signing_key.key_id and _verifies(newest.url, other.secret)
