"""TenantAdminService: tenants and keys, for the operator's admin key."""

from __future__ import annotations

from imagepipe.v1 import tenant_admin_pb2 as pb
from imagepipe.v1 import tenant_admin_pb2_grpc as pb_grpc
from services.catalog import convert, tenants
from services.catalog.assets import parse_uuid
from services.catalog.repository import CatalogRepository
from services.catalog.usecases.paging import decode_name_token, encode_name_token, page_size
from services.shared.errors import NotFound
from services.shared.settings import Settings

__all__ = ["TenantAdminServicer"]

_TENANTS_QUERY = "tenants"


class TenantAdminServicer(pb_grpc.TenantAdminServiceServicer):
    def __init__(self, repo: CatalogRepository, settings: Settings) -> None:
        self._repo = repo
        self._pepper = settings.key_pepper.get_secret_value()

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: object
    ) -> pb.CreateTenantResponse:
        tenant, key, secret = await tenants.create_tenant(self._repo, request.name, self._pepper)
        return pb.CreateTenantResponse(
            tenant=convert.tenant_message(tenant),
            api_key=convert.api_key_message(key),
            secret_key=secret,
        )

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: object
    ) -> pb.ListTenantsResponse:
        size = page_size(request.page_size)
        after = decode_name_token(request.page_token, _TENANTS_QUERY) or ""
        rows = await self._repo.list_tenants(after, size + 1)
        page = rows[:size]
        token = encode_name_token(_TENANTS_QUERY, page[-1]["name"]) if len(rows) > size else ""
        return pb.ListTenantsResponse(
            tenants=[convert.tenant_message(r) for r in page], next_page_token=token
        )

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: object
    ) -> pb.CreateApiKeyResponse:
        row, secret = await tenants.issue_api_key(
            self._repo, parse_uuid(request.tenant_id, "tenant_id"), request.label, self._pepper
        )
        return pb.CreateApiKeyResponse(api_key=convert.api_key_message(row), secret_key=secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: object
    ) -> pb.ListApiKeysResponse:
        tenant_id = parse_uuid(request.tenant_id, "tenant_id")
        if not await self._repo.tenant_exists(tenant_id):
            raise NotFound(f"no tenant with id {tenant_id}", reason="TENANT_NOT_FOUND")
        rows = await self._repo.list_api_keys(tenant_id)
        return pb.ListApiKeysResponse(api_keys=[convert.api_key_message(r) for r in rows])

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: object
    ) -> pb.RevokeApiKeyResponse:
        row = await self._repo.revoke_api_key(request.key_id)
        if row is None:
            raise NotFound(f"no API key {request.key_id!r}", reason="API_KEY_NOT_FOUND")
        return pb.RevokeApiKeyResponse(api_key=convert.api_key_message(row))
