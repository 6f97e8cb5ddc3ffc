"""Tenants: their API keys, signing keys and settings."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import asyncpg

from services.catalog.db import rows
from services.catalog.db.pool import Connection, database_methods, transaction
from services.catalog.model import (
    TENANT_SETTING_NAMES,
    ApiKey,
    SigningKey,
    StoredApiKey,
    Tenant,
    TenantSettings,
)

__all__ = ["PgTenantStore"]

_ACTIVE_SIGNING_KEY = f"""
    SELECT {rows.SIGNING_KEY_COLUMNS} FROM signing_keys
    WHERE tenant_id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR key_id = $2)
    ORDER BY created_at DESC, key_id DESC LIMIT 1
"""


async def _insert_key(
    connection: Connection, tenant_id: uuid.UUID, key_id: str, secret_hash: bytes, label: str
) -> ApiKey:
    row = await connection.fetchrow(
        "INSERT INTO api_keys (key_id, tenant_id, secret_hash, label) VALUES ($1, $2, $3, $4) "
        f"RETURNING {rows.API_KEY_COLUMNS}",
        key_id,
        tenant_id,
        secret_hash,
        label,
    )
    assert row is not None
    return rows.api_key(row)


@database_methods
class PgTenantStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_tenant(
        self, name: str, key_id: str, secret_hash: bytes, label: str
    ) -> tuple[Tenant, ApiKey] | None:
        """Create a tenant with its first key; None when the name is taken."""
        async with transaction(self._pool) as connection:
            row = await connection.fetchrow(
                "INSERT INTO tenants (id, name) VALUES ($1, $2) "
                f"ON CONFLICT (name) DO NOTHING RETURNING {rows.TENANT_COLUMNS}",
                uuid.uuid4(),
                name,
            )
            if row is None:
                return None
            tenant = rows.tenant(row)
            return tenant, await _insert_key(connection, tenant.id, key_id, secret_hash, label)

    async def list_tenants(self, after_name: str, limit: int) -> list[Tenant]:
        found = await self._pool.fetch(
            f"SELECT {rows.TENANT_COLUMNS} FROM tenants WHERE name > $1 ORDER BY name LIMIT $2",
            after_name,
            limit,
        )
        return [rows.tenant(r) for r in found]

    async def tenant_exists(self, tenant_id: uuid.UUID) -> bool:
        return bool(await self._pool.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id))

    async def create_api_key(
        self, tenant_id: uuid.UUID, key_id: str, secret_hash: bytes, label: str
    ) -> ApiKey:
        async with self._pool.acquire() as connection:
            return await _insert_key(connection, tenant_id, key_id, secret_hash, label)

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        found = await self._pool.fetch(
            f"SELECT {rows.API_KEY_COLUMNS} FROM api_keys "
            "WHERE tenant_id = $1 ORDER BY created_at, key_id",
            tenant_id,
        )
        return [rows.api_key(r) for r in found]

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        row = await self._pool.fetchrow(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, clock_timestamp()) "
            f"WHERE key_id = $1 RETURNING {rows.API_KEY_COLUMNS}",
            key_id,
        )
        return None if row is None else rows.api_key(row)

    async def get_api_key(self, key_id: str) -> StoredApiKey | None:
        row = await self._pool.fetchrow(
            "SELECT key_id, tenant_id, secret_hash, revoked_at FROM api_keys WHERE key_id = $1",
            key_id,
        )
        return None if row is None else rows.stored_api_key(row)

    async def create_signing_key(
        self, tenant_id: uuid.UUID, key_id: str, label: str, max_active: int
    ) -> SigningKey | None:
        async with transaction(self._pool) as connection:
            # NO KEY UPDATE: serialises key creations of the tenant without blocking the
            # inserts elsewhere whose foreign keys lock the tenant row for KEY SHARE.
            await connection.execute(
                "SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE", tenant_id
            )
            active = await connection.fetchval(
                "SELECT count(*) FROM signing_keys WHERE tenant_id = $1 AND revoked_at IS NULL",
                tenant_id,
            )
            if active >= max_active:
                return None
            row = await connection.fetchrow(
                "INSERT INTO signing_keys (key_id, tenant_id, label) VALUES ($1, $2, $3) "
                f"RETURNING {rows.SIGNING_KEY_COLUMNS}",
                key_id,
                tenant_id,
                label,
            )
            assert row is not None
            return rows.signing_key(row)

    async def list_signing_keys(self, tenant_id: uuid.UUID) -> list[SigningKey]:
        found = await self._pool.fetch(
            f"SELECT {rows.SIGNING_KEY_COLUMNS} FROM signing_keys "
            "WHERE tenant_id = $1 ORDER BY created_at, key_id",
            tenant_id,
        )
        return [rows.signing_key(r) for r in found]

    async def revoke_signing_key(self, tenant_id: uuid.UUID, key_id: str) -> SigningKey | None:
        row = await self._pool.fetchrow(
            "UPDATE signing_keys SET revoked_at = coalesce(revoked_at, clock_timestamp()) "
            f"WHERE tenant_id = $1 AND key_id = $2 RETURNING {rows.SIGNING_KEY_COLUMNS}",
            tenant_id,
            key_id,
        )
        return None if row is None else rows.signing_key(row)

    async def active_signing_key(
        self, tenant_id: uuid.UUID, key_id: str | None
    ) -> SigningKey | None:
        row = await self._pool.fetchrow(_ACTIVE_SIGNING_KEY, tenant_id, key_id)
        return None if row is None else rows.signing_key(row)

    async def tenant_settings(self, tenant_id: uuid.UUID) -> TenantSettings | None:
        row = await self._pool.fetchrow(
            f"SELECT {rows.TENANT_SETTINGS_COLUMNS} FROM tenants WHERE id = $1", tenant_id
        )
        return None if row is None else rows.tenant_settings(row)

    async def update_tenant_settings(
        self, tenant_id: uuid.UUID, changes: Mapping[str, object]
    ) -> TenantSettings | None:
        names = list(changes)
        # Column names cannot be parameters: only the known settings reach the text.
        if not names or not set(names) <= set(TENANT_SETTING_NAMES):
            raise ValueError(f"not tenant settings: {names}")
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
        row = await self._pool.fetchrow(
            f"UPDATE tenants SET {assignments} WHERE id = $1 "
            f"RETURNING {rows.TENANT_SETTINGS_COLUMNS}",
            tenant_id,
            *changes.values(),
        )
        return None if row is None else rows.tenant_settings(row)
