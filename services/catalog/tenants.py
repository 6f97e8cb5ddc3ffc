"""Tenants and API keys: creation, and resolving a presented key to its tenant."""

from __future__ import annotations

import hmac
import re
import uuid

import asyncpg

from services.catalog.repository import CatalogRepository
from services.shared.auth import (
    Principal,
    PrincipalKind,
    generate_api_key,
    hash_secret,
    parse_api_key,
)
from services.shared.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated

__all__ = ["KeyAuthenticator", "create_tenant", "issue_api_key"]

# fullmatch: `$` would also accept a trailing newline, which the database's CHECK refuses.
_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_LABEL_MAX = 200


def _check_label(label: str) -> None:
    if len(label) > _LABEL_MAX:
        raise InvalidArgument(
            f"label is limited to {_LABEL_MAX} characters", reason="INVALID_LABEL"
        )


async def create_tenant(
    repo: CatalogRepository, name: str, pepper: str
) -> tuple[asyncpg.Record, asyncpg.Record, str]:
    """Create a tenant and its first key; returns (tenant, key, full key)."""
    if not _TENANT_NAME.fullmatch(name):
        raise InvalidArgument(
            "tenant name must be 1-63 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit",
            reason="INVALID_TENANT_NAME",
        )
    key = generate_api_key()
    created = await repo.create_tenant(name, key.key_id, hash_secret(key.secret, pepper), "initial")
    if created is None:
        raise AlreadyExists(f"a tenant named {name!r} already exists", reason="TENANT_EXISTS")
    tenant, key_row = created
    return tenant, key_row, key.full


async def issue_api_key(
    repo: CatalogRepository, tenant_id: uuid.UUID, label: str, pepper: str
) -> tuple[asyncpg.Record, str]:
    _check_label(label)
    if not await repo.tenant_exists(tenant_id):
        raise NotFound(f"no tenant with id {tenant_id}", reason="TENANT_NOT_FOUND")
    key = generate_api_key()
    row = await repo.create_api_key(tenant_id, key.key_id, hash_secret(key.secret, pepper), label)
    return row, key.full


class KeyAuthenticator:
    """TenantAuthenticator backed by the api_keys table (used inside catalog)."""

    def __init__(self, repo: CatalogRepository, pepper: str) -> None:
        self._repo = repo
        self._pepper = pepper

    async def authenticate(self, api_key: str) -> Principal:
        parts = parse_api_key(api_key)
        row = await self._repo.get_api_key(parts.key_id)
        presented = hash_secret(parts.secret, self._pepper)
        # Compare even when the key is unknown, so timing does not tell which keys exist.
        expected = row["secret_hash"] if row is not None else bytes(len(presented))
        matches = hmac.compare_digest(presented, expected)
        if row is None or not matches or row["revoked_at"] is not None:
            raise Unauthenticated("unknown or revoked API key", reason="INVALID_API_KEY")
        return Principal(PrincipalKind.TENANT, str(row["tenant_id"]), parts.key_id)
