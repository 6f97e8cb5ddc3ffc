"""Tenants are sealed off, RPC by RPC.

- every tenant-facing RPC with tenant B's key on tenant A's asset, job, rendition or
  poison job answers NOT_FOUND and reveals nothing of A; listings show B nothing of A;
- every internal and admin RPC with a tenant key answers PERMISSION_DENIED;
- no key, an unknown key or a revoked key answers UNAUTHENTICATED on every service.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ingest_pb2_grpc,
    quality_pb2,
    quality_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from tests.contract.test_rpcs import ALL_SERVICES
from tests.helpers import (
    Services,
    Tenant,
    error_info,
    register_directly,
    upload,
    upload_messages,
    wait_for_status,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


@dataclass(frozen=True)
class Owned:
    """What tenant A owns: an asset with renditions, its job, a poison job."""

    alice: Tenant
    asset_id: str
    job_id: str
    poison_job_id: str
    signing_key_id: str
    backfill_id: str


@pytest.fixture(scope="module")
def owned(services: Services, make_tenant: Callable[[str], Tenant]) -> Owned:
    alice = make_tenant("alice")
    uploaded = upload(services, alice, (CORPUS / "gif_static_crash_test.gif").read_bytes())
    asset = wait_for_status(services, alice, uploaded.asset.asset_id)
    assert asset.status == common_pb2.ASSET_STATUS_READY
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    doomed = register_directly(services, alice, perceptual_hash="0123456789abcdef")
    poison = internal.RecordPoisonJob(
        catalog_internal_pb2.RecordPoisonJobRequest(
            request=doomed.render_request,
            error="test",
            reason=catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
        ),
        metadata=services.internal_metadata,
    )
    signing_key = (
        catalog_pb2_grpc.CatalogServiceStub(services.catalog)
        .CreateSigningKey(catalog_pb2.CreateSigningKeyRequest(), metadata=alice.metadata)
        .signing_key
    )
    # Selects nothing (every preset has its renditions): A's asset stays as it is.
    backfill = (
        catalog_pb2_grpc.CatalogServiceStub(services.catalog)
        .StartBackfill(
            catalog_pb2.StartBackfillRequest(scope=catalog_pb2.BACKFILL_SCOPE_MISSING),
            metadata=alice.metadata,
        )
        .backfill
    )
    return Owned(
        alice,
        asset.asset_id,
        asset.job_id,
        poison.poison_job.poison_job_id,
        signing_key.key_id,
        backfill.backfill_id,
    )


Call = Callable[[Services, Owned, Any], Any]

# Tenant-facing RPCs that name something of A's: B must get NOT_FOUND.
TARGETED: dict[str, Call] = {
    "imagepipe.v1.CatalogService.GetAsset": lambda s, o, md: catalog_pb2_grpc.CatalogServiceStub(
        s.catalog
    ).GetAsset(catalog_pb2.GetAssetRequest(asset_id=o.asset_id), metadata=md),
    "imagepipe.v1.CatalogService.WatchAsset": lambda s, o, md: list(
        catalog_pb2_grpc.CatalogServiceStub(s.catalog).WatchAsset(
            catalog_pb2.WatchAssetRequest(asset_id=o.asset_id), metadata=md, timeout=10
        )
    ),
    "imagepipe.v1.CatalogService.DeleteAsset": lambda s, o, md: catalog_pb2_grpc.CatalogServiceStub(
        s.catalog
    ).DeleteAsset(catalog_pb2.DeleteAssetRequest(asset_id=o.asset_id), metadata=md),
    "imagepipe.v1.CatalogService.FindSimilar": lambda s, o, md: catalog_pb2_grpc.CatalogServiceStub(
        s.catalog
    ).FindSimilar(catalog_pb2.FindSimilarRequest(asset_id=o.asset_id), metadata=md),
    "imagepipe.v1.CatalogService.GetRendition": lambda s, o, md: (
        catalog_pb2_grpc.CatalogServiceStub(s.catalog).GetRendition(
            catalog_pb2.GetRenditionRequest(asset_id=o.asset_id, preset="card"), metadata=md
        )
    ),
    "imagepipe.v1.CatalogService.ReadRendition": lambda s, o, md: list(
        catalog_pb2_grpc.CatalogServiceStub(s.catalog).ReadRendition(
            catalog_pb2.ReadRenditionRequest(asset_id=o.asset_id, preset="card"), metadata=md
        )
    ),
    "imagepipe.v1.CatalogService.GetJob": lambda s, o, md: catalog_pb2_grpc.CatalogServiceStub(
        s.catalog
    ).GetJob(catalog_pb2.GetJobRequest(job_id=o.job_id), metadata=md),
    "imagepipe.v1.CatalogService.ListJobs": lambda s, o, md: catalog_pb2_grpc.CatalogServiceStub(
        s.catalog
    ).ListJobs(catalog_pb2.ListJobsRequest(asset_id=o.asset_id), metadata=md),
    "imagepipe.v1.CatalogService.RetryPoisonJob": lambda s, o, md: (
        catalog_pb2_grpc.CatalogServiceStub(s.catalog).RetryPoisonJob(
            catalog_pb2.RetryPoisonJobRequest(poison_job_id=o.poison_job_id), metadata=md
        )
    ),
    "imagepipe.v1.QualityService.Compare": lambda s, o, md: quality_pb2_grpc.QualityServiceStub(
        s.quality
    ).Compare(quality_pb2.CompareRequest(asset_id=o.asset_id), metadata=md),
    "imagepipe.v1.CatalogService.GetDeliveryUrl": lambda s, o, md: (
        catalog_pb2_grpc.CatalogServiceStub(s.catalog).GetDeliveryUrl(
            catalog_pb2.GetDeliveryUrlRequest(asset_id=o.asset_id, preset="card"), metadata=md
        )
    ),
    "imagepipe.v1.CatalogService.RevokeSigningKey": lambda s, o, md: (
        catalog_pb2_grpc.CatalogServiceStub(s.catalog).RevokeSigningKey(
            catalog_pb2.RevokeSigningKeyRequest(key_id=o.signing_key_id), metadata=md
        )
    ),
    "imagepipe.v1.CatalogService.SetFocalPoint": lambda s, o, md: (
        catalog_pb2_grpc.CatalogServiceStub(s.catalog).SetFocalPoint(
            catalog_pb2.SetFocalPointRequest(
                asset_id=o.asset_id, focal_point=common_pb2.FocalPoint(x=0.5, y=0.5)
            ),
            metadata=md,
        )
    ),
    "imagepipe.v1.CatalogService.StartBackfill": lambda s, o, md: (
        catalog_pb2_grpc.CatalogServiceStub(s.catalog).StartBackfill(
            catalog_pb2.StartBackfillRequest(
                scope=catalog_pb2.BACKFILL_SCOPE_ASSET_IDS, asset_ids=[o.asset_id]
            ),
            metadata=md,
        )
    ),
    "imagepipe.v1.CatalogService.GetBackfill": lambda s, o, md: catalog_pb2_grpc.CatalogServiceStub(
        s.catalog
    ).GetBackfill(catalog_pb2.GetBackfillRequest(backfill_id=o.backfill_id), metadata=md),
}

# Re-run as the owner (without side effects) to show the thing exists for A.
OWNER_SAFE = {
    "imagepipe.v1.CatalogService.GetBackfill",
    "imagepipe.v1.CatalogService.GetAsset",
    "imagepipe.v1.CatalogService.GetJob",
    "imagepipe.v1.CatalogService.FindSimilar",
    "imagepipe.v1.CatalogService.GetRendition",
    "imagepipe.v1.CatalogService.ListJobs",
    "imagepipe.v1.QualityService.Compare",
    "imagepipe.v1.CatalogService.GetDeliveryUrl",
}

# Tenant-facing RPCs that list or count: B sees none of A's things.
LISTINGS: dict[str, Callable[[Services, Any], list[str]]] = {
    "imagepipe.v1.CatalogService.ListJobs": lambda s, md: [
        j.job_id
        for j in catalog_pb2_grpc.CatalogServiceStub(s.catalog)
        .ListJobs(catalog_pb2.ListJobsRequest(page_size=500), metadata=md)
        .jobs
    ],
    "imagepipe.v1.CatalogService.ListAssets": lambda s, md: [
        a.asset_id
        for a in catalog_pb2_grpc.CatalogServiceStub(s.catalog)
        .ListAssets(catalog_pb2.ListAssetsRequest(page_size=500), metadata=md)
        .assets
    ],
    "imagepipe.v1.CatalogService.ListPoisonJobs": lambda s, md: [
        p.poison_job_id
        for p in catalog_pb2_grpc.CatalogServiceStub(s.catalog)
        .ListPoisonJobs(catalog_pb2.ListPoisonJobsRequest(include_replayed=True), metadata=md)
        .poison_jobs
    ],
    "imagepipe.v1.CatalogService.ListSigningKeys": lambda s, md: [
        k.key_id
        for k in catalog_pb2_grpc.CatalogServiceStub(s.catalog)
        .ListSigningKeys(catalog_pb2.ListSigningKeysRequest(), metadata=md)
        .signing_keys
    ],
}

# Tenant-facing RPCs that name nothing of another tenant's (they act on the caller's
# own data or on none): covered by the contract tests and by the listings above.
UNTARGETED = {
    "imagepipe.v1.IngestService.Upload",
    "imagepipe.v1.CatalogService.GetTenantMetrics",
    "imagepipe.v1.CatalogService.Purge",
    "imagepipe.v1.RendererService.ListPresets",
    "imagepipe.v1.QualityService.CompareImages",
    "imagepipe.v1.CatalogService.CreateSigningKey",
    "imagepipe.v1.CatalogService.GetTenantSettings",
    "imagepipe.v1.CatalogService.UpdateTenantSettings",
    # A tenant's presets are its own, by name: another tenant's names reach its own.
    "imagepipe.v1.CatalogService.ListTenantPresets",
    "imagepipe.v1.CatalogService.CreatePreset",
    "imagepipe.v1.CatalogService.UpdatePreset",
    "imagepipe.v1.CatalogService.DeletePreset",
}


def test_every_tenant_rpc_is_classified() -> None:
    tenant_rpcs = {
        m.full_name
        for s in ALL_SERVICES
        if s.name not in ("CatalogInternalService", "TenantAdminService")
        for m in s.methods
        if m.name != "GetRendererStatus"
    }
    assert tenant_rpcs == set(TARGETED) | set(LISTINGS) | UNTARGETED


@pytest.mark.parametrize("method", sorted(TARGETED))
def test_another_tenants_things_are_not_found(
    method: str, owned: Owned, services: Services, make_tenant: Callable[[str], Tenant]
) -> None:
    mallory = make_tenant("mallory")
    with pytest.raises(grpc.RpcError) as failed:
        TARGETED[method](services, owned, mallory.metadata)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND, method
    revealed = (failed.value.details() or "") + str(dict(error_info(failed.value).metadata))
    assert owned.alice.tenant_id not in revealed
    # The owner still reaches it: the NOT_FOUND was about B, not about the asset.
    if method in OWNER_SAFE:
        TARGETED[method](services, owned, owned.alice.metadata)
    # And B's call changed nothing of A's (DeleteAsset, RetryPoisonJob, ... included):
    # a status code alone would not show a delete or a replay that happened anyway.
    _untouched(services, owned)


def _untouched(services: Services, owned: Owned) -> None:
    """A's asset is still live and ready, its poison job still unreplayed and dead."""
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    asset = catalog.GetAsset(
        catalog_pb2.GetAssetRequest(asset_id=owned.asset_id), metadata=owned.alice.metadata
    ).asset
    assert asset.status == common_pb2.ASSET_STATUS_READY, asset
    assert len(asset.renditions) == 3
    (poison,) = [
        p
        for p in catalog.ListPoisonJobs(
            catalog_pb2.ListPoisonJobsRequest(include_replayed=True),
            metadata=owned.alice.metadata,
        ).poison_jobs
        if p.poison_job_id == owned.poison_job_id
    ]
    assert not poison.HasField("replay_time"), poison
    job = catalog.GetJob(
        catalog_pb2.GetJobRequest(job_id=poison.job_id), metadata=owned.alice.metadata
    ).job
    assert job.state == common_pb2.JOB_STATE_DEAD, job
    keys = catalog.ListSigningKeys(
        catalog_pb2.ListSigningKeysRequest(), metadata=owned.alice.metadata
    ).signing_keys
    assert [k.HasField("revoke_time") for k in keys if k.key_id == owned.signing_key_id] == [False]


@pytest.mark.parametrize("method", sorted(LISTINGS))
def test_listings_show_nothing_of_another_tenant(
    method: str, owned: Owned, services: Services, make_tenant: Callable[[str], Tenant]
) -> None:
    mallory = make_tenant("mallory")
    assert LISTINGS[method](services, mallory.metadata) == []


def _internal_calls() -> list[tuple[str, Callable[[Services, Any], Any]]]:
    calls: list[tuple[str, Callable[[Services, Any], Any]]] = []
    service = catalog_internal_pb2.DESCRIPTOR.services_by_name["CatalogInternalService"]
    for method in service.methods:
        request_class = getattr(catalog_internal_pb2, method.input_type.name)

        def call(s: Services, md: Any, name: str = method.name, cls: Any = request_class) -> Any:
            stub = catalog_internal_pb2_grpc.CatalogInternalServiceStub(s.catalog)
            return getattr(stub, name)(cls(), metadata=md)

        calls.append((method.full_name, call))
    admin = tenant_admin_pb2.DESCRIPTOR.services_by_name["TenantAdminService"]
    for method in admin.methods:
        request_class = getattr(tenant_admin_pb2, method.input_type.name)

        def admin_call(
            s: Services, md: Any, name: str = method.name, cls: Any = request_class
        ) -> Any:
            stub = tenant_admin_pb2_grpc.TenantAdminServiceStub(s.catalog)
            return getattr(stub, name)(cls(), metadata=md)

        calls.append((method.full_name, admin_call))
    calls.append(
        (
            "imagepipe.v1.RendererService.GetRendererStatus",
            lambda s, md: renderer_pb2_grpc.RendererServiceStub(s.renderer).GetRendererStatus(
                renderer_pb2.GetRendererStatusRequest(), metadata=md
            ),
        )
    )
    return calls


@pytest.mark.parametrize(
    ("method", "call"), _internal_calls(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_tenant_keys_cannot_call_internal_or_admin_rpcs(
    method: str, call: Callable[[Services, Any], Any], services: Services, tenant: Tenant
) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        call(services, tenant.metadata)
    assert failed.value.code() == grpc.StatusCode.PERMISSION_DENIED, method


def _one_call_per_service(services: Services, metadata: Any) -> list[Callable[[], Any]]:
    return [
        lambda: catalog_pb2_grpc.CatalogServiceStub(services.catalog).ListAssets(
            catalog_pb2.ListAssetsRequest(), metadata=metadata
        ),
        lambda: ingest_pb2_grpc.IngestServiceStub(services.ingest).Upload(
            upload_messages(b"x"), metadata=metadata
        ),
        lambda: renderer_pb2_grpc.RendererServiceStub(services.renderer).ListPresets(
            renderer_pb2.ListPresetsRequest(), metadata=metadata
        ),
        lambda: quality_pb2_grpc.QualityServiceStub(services.quality).Compare(
            quality_pb2.CompareRequest(asset_id=str(uuid.uuid4())), metadata=metadata
        ),
    ]


@pytest.mark.parametrize(
    "credentials",
    [
        (),
        (("authorization", "Bearer ip_0011223344556677_" + "0" * 40),),
        (("authorization", "Basic abc"),),
    ],
    ids=["no key", "unknown key", "not a bearer token"],
)
def test_missing_or_unknown_keys_are_unauthenticated(credentials: Any, services: Services) -> None:
    for call in _one_call_per_service(services, credentials):
        with pytest.raises(grpc.RpcError) as failed:
            call()
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_revoked_key_stops_working_at_once_everywhere(services: Services, tenant: Tenant) -> None:
    catalog_pb2_grpc.CatalogServiceStub(services.catalog).ListAssets(
        catalog_pb2.ListAssetsRequest(), metadata=tenant.metadata
    )
    key_id = tenant.key.split("_")[1]
    tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog).RevokeApiKey(
        tenant_admin_pb2.RevokeApiKeyRequest(key_id=key_id), metadata=services.admin_metadata
    )
    for call in _one_call_per_service(services, tenant.metadata):
        with pytest.raises(grpc.RpcError) as failed:
            call()
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(failed.value).reason == "INVALID_API_KEY"
