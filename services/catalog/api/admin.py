"""TenantAdminService: tenants and keys, for the operator's admin key. Translation only."""

from __future__ import annotations

from imagepipe.v1 import tenant_admin_pb2 as pb
from imagepipe.v1 import tenant_admin_pb2_grpc as pb_grpc
from services.catalog.api.convert import api_key_message, tenant_message
from services.catalog.api.requests import parse_uuid
from services.catalog.ports import TenantStore
from services.catalog.usecases import tenants
from services.shared.settings import Settings

__all__ = ["TenantAdminServicer"]


class TenantAdminServicer(pb_grpc.TenantAdminServiceServicer):
    def __init__(self, tenant_store: TenantStore, settings: Settings) -> None:
        self._tenants = tenant_store
        self._pepper = settings.key_pepper.get_secret_value()

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: object
    ) -> pb.CreateTenantResponse:
        created = await tenants.create_tenant(self._tenants, name=request.name, pepper=self._pepper)
        return pb.CreateTenantResponse(
            tenant=tenant_message(created.tenant),
            api_key=api_key_message(created.api_key),
            secret_key=created.secret_key,
        )

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: object
    ) -> pb.ListTenantsResponse:
        page = await tenants.list_tenants(
            self._tenants, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListTenantsResponse(
            tenants=[tenant_message(t) for t in page.items], next_page_token=page.next_page_token
        )

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: object
    ) -> pb.CreateApiKeyResponse:
        issued = await tenants.issue_api_key(
            self._tenants,
            tenant_id=parse_uuid(request.tenant_id, "tenant_id"),
            label=request.label,
            pepper=self._pepper,
        )
        return pb.CreateApiKeyResponse(
            api_key=api_key_message(issued.api_key), secret_key=issued.secret_key
        )

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: object
    ) -> pb.ListApiKeysResponse:
        keys = await tenants.list_api_keys(
            self._tenants, tenant_id=parse_uuid(request.tenant_id, "tenant_id")
        )
        return pb.ListApiKeysResponse(api_keys=[api_key_message(k) for k in keys])

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: object
    ) -> pb.RevokeApiKeyResponse:
        revoked = await tenants.revoke_api_key(self._tenants, key_id=request.key_id)
        return pb.RevokeApiKeyResponse(api_key=api_key_message(revoked))
