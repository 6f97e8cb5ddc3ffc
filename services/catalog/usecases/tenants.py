"""Tenants and API keys: creation, listing, revocation, and resolving a presented key
to its tenant; a tenant's usage and its settings."""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.catalog.model import (
    TENANT_SETTING_NAMES,
    ApiKey,
    Tenant,
    TenantMetrics,
    TenantSettings,
)
from services.catalog.ports import TenantStore, UsageStore
from services.catalog.usecases import paging
from services.catalog.usecases.masks import masked_fields
from services.catalog.usecases.paging import Page, decode_name_token, encode_name_token, paginate
from services.shared.auth import (
    Principal,
    PrincipalKind,
    generate_api_key,
    hash_secret,
    parse_api_key,
)
from services.shared.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated

__all__ = [
    "CreatedTenant",
    "IssuedApiKey",
    "KeyAuthenticator",
    "check_label",
    "create_tenant",
    "get_tenant_settings",
    "issue_api_key",
    "list_api_keys",
    "list_tenants",
    "revoke_api_key",
    "tenant_metrics",
    "tenant_not_found",
    "update_tenant_settings",
]

# fullmatch: `$` would also accept a trailing newline, which the database's CHECK refuses.
_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_LABEL_MAX = 200
_TENANTS_QUERY = "tenants"


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    api_key: ApiKey
    secret_key: str  # the full key, shown once


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    secret_key: str  # the full key, shown once


def check_label(label: str) -> None:
    if len(label) > _LABEL_MAX:
        raise InvalidArgument(
            f"label is limited to {_LABEL_MAX} characters", reason="INVALID_LABEL"
        )


def tenant_not_found(tenant_id: uuid.UUID) -> NotFound:
    return NotFound(f"no tenant with id {tenant_id}", reason="TENANT_NOT_FOUND")


async def create_tenant(tenants: TenantStore, *, name: str, pepper: str) -> CreatedTenant:
    """A tenant and its first key."""
    if not _TENANT_NAME.fullmatch(name):
        raise InvalidArgument(
            "tenant name must be 1-63 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit",
            reason="INVALID_TENANT_NAME",
        )
    key = generate_api_key()
    created = await tenants.create_tenant(
        name, key.key_id, hash_secret(key.secret, pepper), "initial"
    )
    if created is None:
        raise AlreadyExists(f"a tenant named {name!r} already exists", reason="TENANT_EXISTS")
    tenant, api_key = created
    return CreatedTenant(tenant, api_key, key.full)


async def list_tenants(tenants: TenantStore, *, page_size: int, page_token: str) -> Page[Tenant]:
    """Every tenant, by name."""
    size = paging.page_size(page_size)
    after = decode_name_token(page_token, _TENANTS_QUERY) or ""
    return await paginate(
        lambda limit: tenants.list_tenants(after, limit),
        size=size,
        token_of=lambda tenant: encode_name_token(_TENANTS_QUERY, tenant.name),
    )


async def issue_api_key(
    tenants: TenantStore, *, tenant_id: uuid.UUID, label: str, pepper: str
) -> IssuedApiKey:
    check_label(label)
    if not await tenants.tenant_exists(tenant_id):
        raise tenant_not_found(tenant_id)
    key = generate_api_key()
    api_key = await tenants.create_api_key(
        tenant_id, key.key_id, hash_secret(key.secret, pepper), label
    )
    return IssuedApiKey(api_key, key.full)


async def list_api_keys(tenants: TenantStore, *, tenant_id: uuid.UUID) -> list[ApiKey]:
    if not await tenants.tenant_exists(tenant_id):
        raise tenant_not_found(tenant_id)
    return await tenants.list_api_keys(tenant_id)


async def revoke_api_key(tenants: TenantStore, *, key_id: str) -> ApiKey:
    """Revoked from now on (revoking again keeps the first time)."""
    api_key = await tenants.revoke_api_key(key_id)
    if api_key is None:
        raise NotFound(f"no API key {key_id!r}", reason="API_KEY_NOT_FOUND")
    return api_key


async def tenant_metrics(usage: UsageStore, *, tenant_id: uuid.UUID) -> TenantMetrics:
    return await usage.tenant_metrics(tenant_id)


async def get_tenant_settings(tenants: TenantStore, *, tenant_id: uuid.UUID) -> TenantSettings:
    settings = await tenants.tenant_settings(tenant_id)
    if settings is None:
        raise tenant_not_found(tenant_id)
    return settings


async def update_tenant_settings(
    tenants: TenantStore, *, tenant_id: uuid.UUID, values: TenantSettings, paths: Sequence[str]
) -> TenantSettings:
    """Set the settings `paths` (an update mask) names to their `values`; the others
    keep theirs. An empty mask is refused rather than read as "all": a client that
    sends only the fields it knows would reset the ones added after it."""
    paths = masked_fields(
        paths, TENANT_SETTING_NAMES, what="settings", unknown_reason="UNKNOWN_SETTING"
    )
    changes = {name: getattr(values, name) for name in paths}
    settings = await tenants.update_tenant_settings(tenant_id, changes)
    if settings is None:
        raise tenant_not_found(tenant_id)
    return settings


class KeyAuthenticator:
    """TenantAuthenticator backed by the tenant store (used inside catalog)."""

    def __init__(self, tenants: TenantStore, pepper: str) -> None:
        self._tenants = tenants
        self._pepper = pepper

    async def authenticate(self, api_key: str) -> Principal:
        parts = parse_api_key(api_key)
        stored = await self._tenants.get_api_key(parts.key_id)
        presented = hash_secret(parts.secret, self._pepper)
        # Compare even when the key is unknown, so timing does not tell which keys exist.
        expected = stored.secret_hash if stored is not None else bytes(len(presented))
        matches = hmac.compare_digest(presented, expected)
        if stored is None or not matches or stored.revoked_at is not None:
            raise Unauthenticated("unknown or revoked API key", reason="INVALID_API_KEY")
        return Principal(PrincipalKind.TENANT, str(stored.tenant_id), parts.key_id)
