"""Tenants are sealed off: keys, other tenants' data, internal RPCs, revocation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    ingest_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from tests.helpers import Services, Tenant, error_info, upload_messages


def _upload(services: Services, tenant: Tenant, data: bytes) -> str:
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    return stub.Upload(upload_messages(data), metadata=tenant.metadata, timeout=60).asset.asset_id


def test_no_key_is_unauthenticated_everywhere(services: Services) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    ingest = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    for call in (
        lambda: catalog.ListAssets(catalog_pb2.ListAssetsRequest()),
        lambda: ingest.Upload(upload_messages(b"x")),
        lambda: catalog.ListAssets(
            catalog_pb2.ListAssetsRequest(),
            metadata=(("authorization", "Bearer ip_0011223344556677_" + "0" * 40),),
        ),
    ):
        with pytest.raises(grpc.RpcError) as failed:
            call()
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(failed.value).reason in ("MISSING_CREDENTIALS", "INVALID_API_KEY")


def test_another_tenants_asset_and_job_are_not_found(
    services: Services, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    alice, mallory = make_tenant("alice"), make_tenant("mallory")
    asset_id = _upload(services, alice, (corpus / "gif_static_crash_test.gif").read_bytes())
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    job_id = catalog.GetAsset(
        catalog_pb2.GetAssetRequest(asset_id=asset_id), metadata=alice.metadata
    ).asset.job_id

    for call in (
        lambda: catalog.GetAsset(
            catalog_pb2.GetAssetRequest(asset_id=asset_id), metadata=mallory.metadata
        ),
        lambda: catalog.GetJob(catalog_pb2.GetJobRequest(job_id=job_id), metadata=mallory.metadata),
    ):
        with pytest.raises(grpc.RpcError) as failed:
            call()
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert alice.tenant_id not in (failed.value.details() or "")
    listed = catalog.ListAssets(catalog_pb2.ListAssetsRequest(), metadata=mallory.metadata)
    assert list(listed.assets) == []


def test_tenant_keys_cannot_call_internal_or_admin_rpcs(services: Services, tenant: Tenant) -> None:
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    admin = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog)
    for call in (
        lambda: internal.Authenticate(
            catalog_internal_pb2.AuthenticateRequest(api_key=tenant.key), metadata=tenant.metadata
        ),
        lambda: internal.GetAssetObjects(
            catalog_internal_pb2.GetAssetObjectsRequest(
                tenant_id=tenant.tenant_id, asset_id=tenant.tenant_id
            ),
            metadata=tenant.metadata,
        ),
        lambda: admin.ListTenants(tenant_admin_pb2.ListTenantsRequest(), metadata=tenant.metadata),
    ):
        with pytest.raises(grpc.RpcError) as failed:
            call()
        assert failed.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_revoked_key_stops_working_at_once(services: Services, tenant: Tenant) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    admin = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog)
    catalog.ListAssets(catalog_pb2.ListAssetsRequest(), metadata=tenant.metadata)
    key_id = tenant.key.split("_")[1]
    admin.RevokeApiKey(
        tenant_admin_pb2.RevokeApiKeyRequest(key_id=key_id), metadata=services.admin_metadata
    )
    for call in (
        lambda: catalog.ListAssets(catalog_pb2.ListAssetsRequest(), metadata=tenant.metadata),
        lambda: ingest_pb2_grpc.IngestServiceStub(services.ingest).Upload(
            upload_messages(b"x"), metadata=tenant.metadata
        ),
    ):
        with pytest.raises(grpc.RpcError) as failed:
            call()
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(failed.value).reason == "INVALID_API_KEY"
