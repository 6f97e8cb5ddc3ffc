"""Signing keys of delivery URLs: issuing, listing and revoking them, and the secret
each key's id derives.

The secret is never stored: it is HMAC-SHA256 of the key id under the key pepper, so
the catalog can hand it out when the key is made and to the delivery service while
the key is active, and a copy of the database alone reveals none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from services.catalog.model import SigningKey
from services.catalog.ports import TenantStore
from services.catalog.usecases.tenants import check_label
from services.shared.errors import FailedPrecondition, NotFound

__all__ = [
    "MAX_ACTIVE_SIGNING_KEYS",
    "MIN_PEPPER_LENGTH",
    "IssuedSigningKey",
    "create_signing_key",
    "is_key_id",
    "list_signing_keys",
    "require_signing_pepper",
    "revoke_signing_key",
    "signing_key_not_found",
    "signing_secret",
]

# Enough for rotation (add, switch, revoke) across a few sites, few enough that the
# delivery service's lookups of a tenant's keys stay small.
MAX_ACTIVE_SIGNING_KEYS = 10
_KEY_ID = re.compile(r"[0-9a-f]{16}")
# Versioned, and distinct from anything else the pepper keys (API-key hashes).
_DERIVATION = b"imagepipe delivery signing key v1:"
# The pepper is the only secret in the derivation: anyone who knows it (or can guess it
# from a URL's key id and signature) can sign for every tenant.
MIN_PEPPER_LENGTH = 16


@dataclass(frozen=True)
class IssuedSigningKey:
    signing_key: SigningKey
    secret: str  # shown once


def signing_secret(key_id: str, pepper: str) -> str:
    """The key's secret: base64url (no padding) of HMAC-SHA256(pepper, context + id),
    43 characters, used by signers as UTF-8 bytes."""
    require_signing_pepper(pepper)
    digest = hmac.new(pepper.encode(), _DERIVATION + key_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def require_signing_pepper(pepper: str) -> None:
    """Refuse to derive secrets from a missing or guessable pepper."""
    if len(pepper) < MIN_PEPPER_LENGTH:
        raise FailedPrecondition(
            "delivery URL signing is not configured: IMAGEPIPE_KEY_PEPPER must hold a secret "
            f"of at least {MIN_PEPPER_LENGTH} characters (e.g. `openssl rand -hex 32`)",
            reason="SIGNING_NOT_CONFIGURED",
            metadata={"min_length": MIN_PEPPER_LENGTH},
        )


def is_key_id(text: str) -> bool:
    return _KEY_ID.fullmatch(text) is not None


def signing_key_not_found(key_id: str, *, active: bool = False) -> NotFound:
    """Unknown, malformed and other tenants' keys alike (never reveal that one exists)."""
    which = "active signing key" if active else "signing key"
    return NotFound(f"no {which} {key_id[:64]!r}", reason="SIGNING_KEY_NOT_FOUND")


async def create_signing_key(
    tenants: TenantStore, *, tenant_id: uuid.UUID, label: str, pepper: str
) -> IssuedSigningKey:
    check_label(label)
    require_signing_pepper(pepper)
    key_id = secrets.token_hex(8)
    created = await tenants.create_signing_key(tenant_id, key_id, label, MAX_ACTIVE_SIGNING_KEYS)
    if created is None:
        raise FailedPrecondition(
            f"a tenant may hold {MAX_ACTIVE_SIGNING_KEYS} active signing keys; "
            "revoke one first (RevokeSigningKey)",
            reason="TOO_MANY_SIGNING_KEYS",
            metadata={"max_active": MAX_ACTIVE_SIGNING_KEYS},
        )
    return IssuedSigningKey(created, signing_secret(key_id, pepper))


async def list_signing_keys(tenants: TenantStore, *, tenant_id: uuid.UUID) -> list[SigningKey]:
    """Oldest first, revoked ones included."""
    return await tenants.list_signing_keys(tenant_id)


async def revoke_signing_key(
    tenants: TenantStore, *, tenant_id: uuid.UUID, key_id: str
) -> SigningKey:
    """Revoked from now on (revoking again keeps the first time)."""
    revoked = await tenants.revoke_signing_key(tenant_id, key_id) if is_key_id(key_id) else None
    if revoked is None:
        raise signing_key_not_found(key_id)
    return revoked
