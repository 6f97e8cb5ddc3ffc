"""API keys and the access check."""

from __future__ import annotations

import pytest

from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_pb2,
    ingest_pb2,
    quality_pb2,
    renderer_pb2,
    tenant_admin_pb2,
)
from services.shared.auth import (
    Access,
    Principal,
    PrincipalKind,
    access_policies,
    authorize,
    generate_api_key,
    hash_secret,
    parse_api_key,
)
from services.shared.errors import PermissionDenied, Unauthenticated

ADMIN = "admin-key-for-tests"
INTERNAL = "internal-token-for-tests"
ALL_SERVICES = [
    s
    for module in (
        ingest_pb2,
        catalog_pb2,
        catalog_internal_pb2,
        tenant_admin_pb2,
        renderer_pb2,
        quality_pb2,
    )
    for s in module.DESCRIPTOR.services_by_name.values()
]


class FakeTenants:
    def __init__(self) -> None:
        self.key = generate_api_key()

    async def authenticate(self, api_key: str) -> Principal:
        if api_key != self.key.full:
            raise Unauthenticated("unknown or revoked API key", reason="INVALID_API_KEY")
        return Principal(PrincipalKind.TENANT, "tenant-1", self.key.key_id)


def test_generated_keys_parse_back_and_carry_enough_entropy() -> None:
    key = generate_api_key()
    assert key.full.startswith("ip_")
    assert parse_api_key(key.full) == key
    assert len(key.secret) * 4 >= 128


@pytest.mark.parametrize(
    "bad", ["", "ip_", "ip_abc", "ip_0123456789abcdef_short", "xx_0123456789abcdef_" + "0" * 40]
)
def test_malformed_keys_are_unauthenticated(bad: str) -> None:
    with pytest.raises(Unauthenticated):
        parse_api_key(bad)


def test_secret_hash_depends_on_the_pepper() -> None:
    assert hash_secret("s", "p1") != hash_secret("s", "p2")
    assert len(hash_secret("s", "")) == 32


def test_every_rpc_declares_its_access_level() -> None:
    policies = access_policies(ALL_SERVICES)
    methods = sum(len(s.methods) for s in ALL_SERVICES)
    assert len(policies) == methods
    assert policies["/imagepipe.v1.CatalogInternalService/RegisterAsset"] is Access.INTERNAL
    assert policies["/imagepipe.v1.TenantAdminService/CreateTenant"] is Access.ADMIN
    assert policies["/imagepipe.v1.IngestService/Upload"] is Access.TENANT
    internal = [m for m, a in policies.items() if a is Access.INTERNAL]
    assert all(m.startswith("/imagepipe.v1.CatalogInternalService/") for m in internal)


async def _authorize(access: Access, token: str | None, tenants: FakeTenants) -> Principal:
    metadata = {"authorization": f"Bearer {token}"} if token is not None else {}
    return await authorize(
        access, metadata, tenants=tenants, admin_key=ADMIN, internal_token=INTERNAL
    )


async def test_each_credential_reaches_only_its_own_level() -> None:
    tenants = FakeTenants()
    assert (await _authorize(Access.TENANT, tenants.key.full, tenants)).tenant_id == "tenant-1"
    assert (await _authorize(Access.ADMIN, ADMIN, tenants)).kind is PrincipalKind.ADMIN
    assert (await _authorize(Access.INTERNAL, INTERNAL, tenants)).kind is PrincipalKind.INTERNAL
    for access, token in [
        (Access.INTERNAL, tenants.key.full),
        (Access.ADMIN, tenants.key.full),
        (Access.TENANT, INTERNAL),
        (Access.INTERNAL, ADMIN),
    ]:
        with pytest.raises(PermissionDenied):
            await _authorize(access, token, tenants)


@pytest.mark.parametrize("token", [None, "", "not-a-key", "ip_0123456789abcdef_" + "0" * 40])
async def test_missing_or_unknown_credentials_are_unauthenticated(token: str | None) -> None:
    with pytest.raises(Unauthenticated):
        await _authorize(Access.TENANT, token, FakeTenants())


async def test_empty_admin_key_never_matches() -> None:
    tenants = FakeTenants()
    with pytest.raises(Unauthenticated):
        await authorize(
            Access.ADMIN,
            {"authorization": "Bearer x"},
            tenants=tenants,
            admin_key="",
            internal_token=INTERNAL,
        )
