"""Who is calling: API keys, principals and the access check every RPC goes through.

A tenant key is ``ip_<key id>_<secret>``: the key id (64 random bits, hex) is stored in
clear to find the row; the secret (160 random bits, hex) only as an HMAC-SHA256 under
IMAGEPIPE_KEY_PEPPER, compared in constant time. The access level each RPC needs is
declared in the protos (``option (imagepipe.v1.access)``) and read from the
descriptors here, so the policy cannot drift from the contract.
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.descriptor import ServiceDescriptor

from imagepipe.v1 import common_pb2
from services.shared.errors import ImagepipeError, PermissionDenied, Unauthenticated

__all__ = [
    "Access",
    "ApiKeyParts",
    "Principal",
    "TenantAuthenticator",
    "access_policies",
    "authorize",
    "current_principal",
    "current_tenant_id",
    "generate_api_key",
    "hash_secret",
    "parse_api_key",
    "secrets_match",
]

KEY_PREFIX = "ip_"


class Access(enum.IntEnum):
    TENANT = common_pb2.ACCESS_TENANT
    ADMIN = common_pb2.ACCESS_ADMIN
    INTERNAL = common_pb2.ACCESS_INTERNAL


class PrincipalKind(enum.Enum):
    TENANT = "tenant"
    ADMIN = "admin"
    INTERNAL = "internal"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    tenant_id: str = ""
    key_id: str = ""


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None
)


def current_tenant_id() -> str:
    """The calling tenant; only valid inside an ACCESS_TENANT RPC."""
    principal = current_principal.get()
    if principal is None or principal.kind is not PrincipalKind.TENANT:
        raise PermissionDenied("this call needs a tenant API key", reason="TENANT_KEY_REQUIRED")
    return principal.tenant_id


@dataclass(frozen=True)
class ApiKeyParts:
    key_id: str
    secret: str

    @property
    def full(self) -> str:
        return f"{KEY_PREFIX}{self.key_id}_{self.secret}"


def generate_api_key() -> ApiKeyParts:
    return ApiKeyParts(key_id=secrets.token_hex(8), secret=secrets.token_hex(20))


def parse_api_key(key: str) -> ApiKeyParts:
    """Split a presented key; Unauthenticated when it cannot be one of ours."""
    if not key.startswith(KEY_PREFIX):
        raise Unauthenticated("API key must look like ip_<key id>_<secret>", reason="MALFORMED_KEY")
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not _is_hex(key_id, 16) or not _is_hex(secret, 40):
        raise Unauthenticated("API key must look like ip_<key id>_<secret>", reason="MALFORMED_KEY")
    return ApiKeyParts(key_id=key_id, secret=secret)


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def hash_secret(secret: str, pepper: str) -> bytes:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).digest()


def secrets_match(presented: str, expected: str) -> bool:
    """Constant-time comparison of two credentials (empty never matches)."""
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


class TenantAuthenticator(Protocol):
    """Resolves a tenant API key to its principal, or raises Unauthenticated."""

    async def authenticate(self, api_key: str) -> Principal: ...


def access_policies(services: Iterable[ServiceDescriptor]) -> dict[str, Access]:
    """Map `/package.Service/Method` to the access level declared in the protos."""
    policies: dict[str, Access] = {}
    for service in services:
        for method in service.methods:
            level = method.GetOptions().Extensions[common_pb2.access]
            if level == common_pb2.ACCESS_UNSPECIFIED:
                raise ValueError(f"{method.full_name} declares no access level")
            policies[f"/{service.full_name}/{method.name}"] = Access(level)
    return policies


def bearer_token(metadata: Mapping[str, str]) -> str:
    value = metadata.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not value:
        raise Unauthenticated(
            "missing credentials: send metadata 'authorization: Bearer <api key>'",
            reason="MISSING_CREDENTIALS",
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "authorization metadata must be 'Bearer <api key>'", reason="MALFORMED_CREDENTIALS"
        )
    return token.strip()


async def authorize(
    access: Access,
    metadata: Mapping[str, str],
    *,
    tenants: TenantAuthenticator,
    admin_key: str,
    internal_token: str,
) -> Principal:
    """Check the caller's credentials against the level the RPC needs."""
    token = bearer_token(metadata)
    if secrets_match(token, internal_token):
        principal = Principal(PrincipalKind.INTERNAL)
    elif secrets_match(token, admin_key):
        principal = Principal(PrincipalKind.ADMIN)
    elif token.startswith(KEY_PREFIX):
        principal = await tenants.authenticate(token)
    else:
        raise Unauthenticated("unknown credentials", reason="INVALID_CREDENTIALS")

    allowed = {
        Access.TENANT: PrincipalKind.TENANT,
        Access.ADMIN: PrincipalKind.ADMIN,
        Access.INTERNAL: PrincipalKind.INTERNAL,
    }[access]
    if principal.kind is not allowed:
        raise PermissionDenied(
            f"this RPC needs {allowed.value} credentials, not {principal.kind.value} ones",
            reason="WRONG_CREDENTIAL_KIND",
            metadata={"required": allowed.value},
        )
    return principal


def is_auth_error(error: ImagepipeError) -> bool:
    return isinstance(error, Unauthenticated | PermissionDenied)
