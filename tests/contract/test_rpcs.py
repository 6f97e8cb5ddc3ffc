"""Every RPC of the four services, called through the generated stubs.

A completeness test fails when an RPC in the protos has no case here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    events_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    quality_pb2,
    quality_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from services.catalog.api.admin import TenantAdminServicer
from services.catalog.api.internal import CatalogInternalServicer
from services.catalog.api.public import CatalogServicer
from services.ingest.servicer import IngestServicer
from services.quality.servicer import QualityServicer
from services.renderer.servicer import RendererServicer
from tests.helpers import (
    Services,
    Tenant,
    error_info,
    upload,
    upload_messages,
    wait_for_status,
)

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

# Tested with working behaviour below (the delivery RPCs in test_delivery_rpcs.py, the
# preset ones in test_preset_rpcs.py);
# written out by hand (not read from the descriptors it is checked against), so an RPC
# added to a proto without a case here, or a case whose RPC is gone, fails the
# completeness check.
IMPLEMENTED = {
    "imagepipe.v1.IngestService.Upload",
    "imagepipe.v1.CatalogService.GetAsset",
    "imagepipe.v1.CatalogService.ListAssets",
    "imagepipe.v1.CatalogService.GetJob",
    "imagepipe.v1.CatalogService.WatchAsset",
    "imagepipe.v1.CatalogService.DeleteAsset",
    "imagepipe.v1.CatalogService.FindSimilar",
    "imagepipe.v1.CatalogService.ListJobs",
    "imagepipe.v1.CatalogService.GetTenantMetrics",
    "imagepipe.v1.CatalogService.Purge",
    "imagepipe.v1.CatalogService.ListPoisonJobs",
    "imagepipe.v1.CatalogService.RetryPoisonJob",
    "imagepipe.v1.CatalogService.GetRendition",
    "imagepipe.v1.CatalogService.ReadRendition",
    "imagepipe.v1.RendererService.ListPresets",
    "imagepipe.v1.RendererService.GetRendererStatus",
    "imagepipe.v1.QualityService.Compare",
    "imagepipe.v1.QualityService.CompareImages",
    "imagepipe.v1.TenantAdminService.CreateTenant",
    "imagepipe.v1.TenantAdminService.ListTenants",
    "imagepipe.v1.TenantAdminService.CreateApiKey",
    "imagepipe.v1.TenantAdminService.ListApiKeys",
    "imagepipe.v1.TenantAdminService.RevokeApiKey",
    "imagepipe.v1.CatalogInternalService.Authenticate",
    "imagepipe.v1.CatalogInternalService.ResolveDuplicate",
    "imagepipe.v1.CatalogInternalService.RegisterAsset",
    "imagepipe.v1.CatalogInternalService.MarkJobPublished",
    "imagepipe.v1.CatalogInternalService.ClaimUnpublishedJobs",
    "imagepipe.v1.CatalogInternalService.ClaimRenderJobs",
    "imagepipe.v1.CatalogInternalService.StartJobAttempt",
    "imagepipe.v1.CatalogInternalService.CompleteJob",
    "imagepipe.v1.CatalogInternalService.FailJobAttempt",
    "imagepipe.v1.CatalogInternalService.RecordPoisonJob",
    "imagepipe.v1.CatalogInternalService.GetAssetObjects",
    # Delivery (tests/contract/test_delivery_rpcs.py).
    "imagepipe.v1.CatalogService.CreateSigningKey",
    "imagepipe.v1.CatalogService.ListSigningKeys",
    "imagepipe.v1.CatalogService.RevokeSigningKey",
    "imagepipe.v1.CatalogService.GetDeliveryUrl",
    "imagepipe.v1.CatalogService.GetTenantSettings",
    "imagepipe.v1.CatalogService.UpdateTenantSettings",
    "imagepipe.v1.CatalogInternalService.GetDeliveryAccess",
    "imagepipe.v1.CatalogInternalService.ResolveDelivery",
    # Presets, focal points, backfills (tests/contract/test_preset_rpcs.py).
    "imagepipe.v1.CatalogService.ListTenantPresets",
    "imagepipe.v1.CatalogService.CreatePreset",
    "imagepipe.v1.CatalogService.UpdatePreset",
    "imagepipe.v1.CatalogService.DeletePreset",
    "imagepipe.v1.CatalogService.SetFocalPoint",
    "imagepipe.v1.CatalogService.StartBackfill",
    "imagepipe.v1.CatalogService.GetBackfill",
}
# The servicer class registered for each service, and the generated base it extends.
SERVICERS: dict[str, tuple[type, type]] = {
    "imagepipe.v1.IngestService": (IngestServicer, ingest_pb2_grpc.IngestServiceServicer),
    "imagepipe.v1.CatalogService": (CatalogServicer, catalog_pb2_grpc.CatalogServiceServicer),
    "imagepipe.v1.CatalogInternalService": (
        CatalogInternalServicer,
        catalog_internal_pb2_grpc.CatalogInternalServiceServicer,
    ),
    "imagepipe.v1.TenantAdminService": (
        TenantAdminServicer,
        tenant_admin_pb2_grpc.TenantAdminServiceServicer,
    ),
    "imagepipe.v1.RendererService": (RendererServicer, renderer_pb2_grpc.RendererServiceServicer),
    "imagepipe.v1.QualityService": (QualityServicer, quality_pb2_grpc.QualityServiceServicer),
}


def test_every_rpc_has_a_contract_case() -> None:
    methods = {m.full_name for s in ALL_SERVICES for m in s.methods}
    assert methods == IMPLEMENTED, methods ^ IMPLEMENTED


def test_every_rpc_is_implemented_by_its_servicer() -> None:
    """The generated base answers UNIMPLEMENTED: each servicer must override every RPC."""
    assert set(SERVICERS) == {s.full_name for s in ALL_SERVICES}
    missing = [
        f"{service.full_name}.{method.name}"
        for service in ALL_SERVICES
        for method in service.methods
        if getattr(SERVICERS[service.full_name][0], method.name)
        is getattr(SERVICERS[service.full_name][1], method.name)
    ]
    assert missing == []


def _uploaded(services: Services, tenant: Tenant, corpus: Path) -> ingest_pb2.UploadResponse:
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    data = (corpus / "webp_lossy_denali.webp").read_bytes()
    return stub.Upload(
        upload_messages(data, "denali.webp", site="docs"), metadata=tenant.metadata, timeout=60
    )


def test_tenant_reads(services: Services, tenant: Tenant, corpus: Path) -> None:
    uploaded = _uploaded(services, tenant, corpus)
    assert uploaded.asset.format == common_pb2.IMAGE_FORMAT_WEBP
    assert dict(uploaded.asset.labels) == {"site": "docs"}
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    md = tenant.metadata

    asset = catalog.GetAsset(
        catalog_pb2.GetAssetRequest(asset_id=uploaded.asset.asset_id), metadata=md
    ).asset
    assert (asset.asset_id, asset.width, asset.height) == (uploaded.asset.asset_id, 600, 315)
    assert len(asset.perceptual_hash) == 16

    listed = catalog.ListAssets(catalog_pb2.ListAssetsRequest(page_size=10), metadata=md)
    assert [a.asset_id for a in listed.assets] == [asset.asset_id]
    assert listed.next_page_token == ""

    job = catalog.GetJob(catalog_pb2.GetJobRequest(job_id=asset.job_id), metadata=md).job
    assert job.asset_id == asset.asset_id
    assert job.state != common_pb2.JOB_STATE_UNSPECIFIED

    for bad in (
        lambda: catalog.GetAsset(catalog_pb2.GetAssetRequest(asset_id="not-a-uuid"), metadata=md),
        lambda: catalog.ListAssets(catalog_pb2.ListAssetsRequest(page_token="bogus"), metadata=md),
    ):
        with pytest.raises(grpc.RpcError) as failed:
            bad()
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _registered_with(
    services: Services, tenant: Tenant, tag: str, captured: dt.datetime | None, **labels: str
) -> str:
    """An asset registered through the internal API with this capture time and labels,
    and a GPS position its tenant does not keep."""
    request = _fake_registration(tenant, tag)
    request.labels.update(labels)
    request.metadata.camera_model = f"camera {tag}"
    request.metadata.gps.latitude = 48.85
    if captured is not None:
        request.metadata.capture_time.FromDatetime(captured)
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    registered = internal.RegisterAsset(request, metadata=services.internal_metadata)
    return registered.asset.asset_id


def test_list_assets_filters(services: Services, tenant: Tenant) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    md = tenant.metadata
    day = [dt.datetime(2024, 3, d, tzinfo=dt.UTC) for d in range(1, 5)]
    first = _registered_with(services, tenant, "a", day[0], shop="eu", kind="shoe")
    second = _registered_with(services, tenant, "b", day[1], shop="eu")
    third = _registered_with(services, tenant, "c", day[2], shop="us", kind="shoe")
    undated = _registered_with(services, tenant, "d", None, shop="eu")

    def listed(**filters: Any) -> list[str]:
        request = catalog_pb2.ListAssetsRequest(**filters)
        return [a.asset_id for a in catalog.ListAssets(request, metadata=md).assets]

    def stamp(moment: dt.datetime) -> Timestamp:
        value = Timestamp()
        value.FromDatetime(moment)
        return value

    assert listed(labels={"shop": "eu"}) == [undated, second, first]
    assert listed(labels={"shop": "eu", "kind": "shoe"}) == [first]
    assert listed(capture_time_from=stamp(day[1])) == [third, second]
    assert listed(capture_time_to=stamp(day[1])) == [first]
    assert listed(capture_time_from=stamp(day[0]), capture_time_to=stamp(day[2])) == [
        second,
        first,
    ]
    assert listed(labels={"kind": "shoe"}, capture_time_from=stamp(day[1])) == [third]

    got = catalog.GetAsset(catalog_pb2.GetAssetRequest(asset_id=first), metadata=md).asset
    assert got.metadata.camera_model == "camera a"
    assert got.metadata.capture_time.ToDatetime(tzinfo=dt.UTC) == day[0]
    assert not got.metadata.HasField("gps"), "the tenant does not keep GPS"
    listed_assets = catalog.ListAssets(
        catalog_pb2.ListAssetsRequest(labels={"kind": "shoe"}), metadata=md
    ).assets
    assert {a.metadata.camera_model for a in listed_assets} == {"camera a", "camera c"}

    page = catalog.ListAssets(
        catalog_pb2.ListAssetsRequest(labels={"shop": "eu"}, page_size=1), metadata=md
    )
    assert page.next_page_token
    for bad in (
        catalog_pb2.ListAssetsRequest(labels={"shop": "us"}, page_token=page.next_page_token),
        catalog_pb2.ListAssetsRequest(page_token=page.next_page_token),
        catalog_pb2.ListAssetsRequest(
            capture_time_from=stamp(day[2]), capture_time_to=stamp(day[1])
        ),
        catalog_pb2.ListAssetsRequest(capture_time_from=Timestamp(seconds=2**40)),
        catalog_pb2.ListAssetsRequest(labels={f"k{i}": "v" for i in range(33)}),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            catalog.ListAssets(bad, metadata=md)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(refused.value).reason in ("INVALID_PAGE_TOKEN", "INVALID_FILTER")


def test_list_presets(services: Services, tenant: Tenant) -> None:
    stub = renderer_pb2_grpc.RendererServiceStub(services.renderer)
    presets = stub.ListPresets(renderer_pb2.ListPresetsRequest(), metadata=tenant.metadata).presets
    assert [(p.name, p.max_width, p.max_height) for p in presets] == [
        ("zoom", 1200, 1200),
        ("card", 400, 400),
        ("thumb", 100, 100),
    ]
    assert all(
        list(p.formats) == [common_pb2.IMAGE_FORMAT_JPEG] and p.quality == 85 for p in presets
    )


def test_tenant_admin(services: Services) -> None:
    admin = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog)
    md = services.admin_metadata
    name = f"contract-{uuid.uuid4().hex[:8]}"
    created = admin.CreateTenant(tenant_admin_pb2.CreateTenantRequest(name=name), metadata=md)
    tenant_id = created.tenant.tenant_id
    assert created.secret_key.startswith(f"ip_{created.api_key.key_id}_")

    with pytest.raises(grpc.RpcError) as duplicate:
        admin.CreateTenant(tenant_admin_pb2.CreateTenantRequest(name=name), metadata=md)
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS

    names: list[str] = []
    token = ""
    while True:
        page = admin.ListTenants(
            tenant_admin_pb2.ListTenantsRequest(page_size=2, page_token=token), metadata=md
        )
        names += [t.name for t in page.tenants]
        token = page.next_page_token
        if not token:
            break
    assert name in names and names == sorted(names)

    second = admin.CreateApiKey(
        tenant_admin_pb2.CreateApiKeyRequest(tenant_id=tenant_id, label="ci"), metadata=md
    )
    keys = admin.ListApiKeys(
        tenant_admin_pb2.ListApiKeysRequest(tenant_id=tenant_id), metadata=md
    ).api_keys
    assert {k.key_id for k in keys} == {created.api_key.key_id, second.api_key.key_id}
    revoked = admin.RevokeApiKey(
        tenant_admin_pb2.RevokeApiKeyRequest(key_id=second.api_key.key_id), metadata=md
    )
    assert revoked.api_key.HasField("revoke_time")


def _fake_registration(tenant: Tenant, tag: str) -> catalog_internal_pb2.RegisterAssetRequest:
    digest = hashlib.sha256(f"{tag}-{uuid.uuid4()}".encode()).hexdigest()
    return catalog_internal_pb2.RegisterAssetRequest(
        tenant_id=tenant.tenant_id,
        content_hash=digest,
        perceptual_hash="00ff00ff00ff00ff",
        filename=f"{tag}.png",
        content_type="image/png",
        format=common_pb2.IMAGE_FORMAT_PNG,
        width=10,
        height=10,
        size_bytes=100,
        original_key=f"originals/{tenant.tenant_id}/{digest}",
        request_id=f"contract-{tag}",
    )


def test_catalog_internal(services: Services, tenant: Tenant, corpus: Path) -> None:
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    md = services.internal_metadata
    uploaded = _uploaded(services, tenant, corpus)

    who = internal.Authenticate(
        catalog_internal_pb2.AuthenticateRequest(api_key=tenant.key), metadata=md
    )
    assert who.tenant_id == tenant.tenant_id

    found = internal.ResolveDuplicate(
        catalog_internal_pb2.ResolveDuplicateRequest(
            tenant_id=tenant.tenant_id, content_hash=uploaded.asset.content_hash
        ),
        metadata=md,
    )
    assert found.found and found.asset.asset_id == uploaded.asset.asset_id

    objects = internal.GetAssetObjects(
        catalog_internal_pb2.GetAssetObjectsRequest(
            tenant_id=tenant.tenant_id, asset_id=uploaded.asset.asset_id
        ),
        metadata=md,
    )
    assert objects.original_key == f"originals/{tenant.tenant_id}/{uploaded.asset.content_hash}"

    # The life of one job, driven by hand.
    registered = internal.RegisterAsset(_fake_registration(tenant, "lifecycle"), metadata=md)
    assert registered.created and registered.render_request.job_id == registered.job.job_id
    job_id = registered.job.job_id
    again = internal.RegisterAsset(
        catalog_internal_pb2.RegisterAssetRequest(
            tenant_id=tenant.tenant_id,
            content_hash=registered.asset.content_hash,
            perceptual_hash="00ff00ff00ff00ff",
            content_type="image/png",
            format=common_pb2.IMAGE_FORMAT_PNG,
            width=10,
            height=10,
            size_bytes=100,
            original_key=registered.render_request.original_key,
        ),
        metadata=md,
    )
    assert not again.created and again.asset.asset_id == registered.asset.asset_id

    published = internal.MarkJobPublished(
        catalog_internal_pb2.MarkJobPublishedRequest(job_id=job_id), metadata=md
    )
    assert published.job.state in (common_pb2.JOB_STATE_QUEUED, common_pb2.JOB_STATE_RUNNING)
    first = internal.StartJobAttempt(
        catalog_internal_pb2.StartJobAttemptRequest(
            job_id=job_id, worker="contract", lease_seconds=30
        ),
        metadata=md,
    )
    assert first.proceed and first.attempt >= 1
    failed = internal.FailJobAttempt(
        catalog_internal_pb2.FailJobAttemptRequest(
            job_id=job_id, attempt=first.attempt, error="boom"
        ),
        metadata=md,
    )
    assert failed.job.last_error == "boom"
    second = internal.StartJobAttempt(
        catalog_internal_pb2.StartJobAttemptRequest(
            job_id=job_id, worker="contract", lease_seconds=30
        ),
        metadata=md,
    )
    assert second.proceed and second.attempt == first.attempt + 1
    rendition = common_pb2.Rendition(
        asset_id=registered.asset.asset_id,
        preset="thumb",
        format=common_pb2.IMAGE_FORMAT_JPEG,
        width=10,
        height=10,
        size_bytes=50,
        quality=85,
    )
    done = internal.CompleteJob(
        catalog_internal_pb2.CompleteJobRequest(
            job_id=job_id,
            attempt=second.attempt,
            renditions=[
                catalog_internal_pb2.RenditionRecord(
                    rendition=rendition, object_key="renditions/x/thumb.jpg"
                )
            ],
            placeholder=common_pb2.Placeholder(dominant_color="#102030"),
        ),
        metadata=md,
    )
    assert done.job.state == common_pb2.JOB_STATE_DONE
    late = internal.StartJobAttempt(
        catalog_internal_pb2.StartJobAttemptRequest(
            job_id=job_id, worker="contract", lease_seconds=30
        ),
        metadata=md,
    )
    assert not late.proceed and late.job.state == common_pb2.JOB_STATE_DONE

    # A job that is given up on.
    doomed = internal.RegisterAsset(_fake_registration(tenant, "poison"), metadata=md)
    poison = internal.RecordPoisonJob(
        catalog_internal_pb2.RecordPoisonJobRequest(
            request=doomed.render_request,
            error="gave up",
            reason=catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
        ),
        metadata=md,
    )
    assert poison.poison_job.job_id == doomed.job.job_id
    assert poison.poison_job.request.job_id == doomed.job.job_id
    after = internal.StartJobAttempt(
        catalog_internal_pb2.StartJobAttemptRequest(job_id=doomed.job.job_id, worker="contract"),
        metadata=md,
    )
    assert not after.proceed and after.job.state == common_pb2.JOB_STATE_DEAD

    unpublished = internal.ClaimUnpublishedJobs(
        catalog_internal_pb2.ClaimUnpublishedJobsRequest(
            limit=5, lease_seconds=1, min_age_seconds=86_400, owner="contract"
        ),
        metadata=md,
    )
    assert list(unpublished.render_requests) == []
    claimed = internal.ClaimRenderJobs(
        catalog_internal_pb2.ClaimRenderJobsRequest(limit=1, lease_seconds=1, owner="contract"),
        metadata=md,
    )
    assert all(isinstance(r, events_pb2.RenderRequest) for r in claimed.render_requests)


def test_renditions_status_and_quality(services: Services, tenant: Tenant, corpus: Path) -> None:
    uploaded = upload(services, tenant, (corpus / "jpeg_progressive_portrait.jpg").read_bytes())
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id)
    assert asset.status == common_pb2.ASSET_STATUS_READY
    assert asset.placeholder.thumbhash and asset.placeholder.dominant_color.startswith("#")
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    md = tenant.metadata

    got = catalog.GetRendition(
        catalog_pb2.GetRenditionRequest(
            asset_id=asset.asset_id, preset="card", accept_formats=[common_pb2.IMAGE_FORMAT_JPEG]
        ),
        metadata=md,
    )
    assert got.rendition.preset == "card" and got.url.startswith("http")
    streamed = list(
        catalog.ReadRendition(
            catalog_pb2.ReadRenditionRequest(asset_id=asset.asset_id, preset="card"), metadata=md
        )
    )
    assert streamed[0].WhichOneof("part") == "rendition"
    assert sum(len(m.chunk) for m in streamed[1:]) == got.rendition.size_bytes

    status = renderer_pb2_grpc.RendererServiceStub(services.renderer).GetRendererStatus(
        renderer_pb2.GetRendererStatusRequest(), metadata=services.admin_metadata
    )
    assert status.mode == renderer_pb2.CONSUME_MODE_BROKER
    assert status.concurrency >= 1 and status.worker

    quality = quality_pb2_grpc.QualityServiceStub(services.quality)
    compared = quality.Compare(quality_pb2.CompareRequest(asset_id=asset.asset_id), metadata=md)
    assert [r.preset for r in compared.renditions] == ["zoom", "card", "thumb"]
    assert all(r.scores.ssim > 0.9 and r.good for r in compared.renditions)
    # The default presets use a fixed quality: every score is measured by Compare itself.
    assert not any(r.measured_at_render or r.min_ssim for r in compared.renditions)

    data = (corpus / "png_rgba_dice.png").read_bytes()

    def both() -> Iterator[quality_pb2.CompareImagesRequest]:
        yield quality_pb2.CompareImagesRequest(
            header=quality_pb2.CompareImagesHeader(reference_filename="a.png")
        )
        yield quality_pb2.CompareImagesRequest(reference_chunk=data)
        yield quality_pb2.CompareImagesRequest(candidate_chunk=data)

    same = quality.CompareImages(both(), metadata=md)
    assert same.scores.psnr_infinite and same.scores.ssim == pytest.approx(1.0)
    assert same.scores.hash_distance == 0 and not same.resized


def test_poison_jobs_are_listed_and_replayed(services: Services, tenant: Tenant) -> None:
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    md = tenant.metadata
    doomed = internal.RegisterAsset(
        _fake_registration(tenant, "replay"), metadata=services.internal_metadata
    )
    internal.RecordPoisonJob(
        catalog_internal_pb2.RecordPoisonJobRequest(
            request=doomed.render_request,
            error="gave up",
            # A give-up always records; a delivery-limit dead letter of a job that never
            # opened an attempt would be spared and delivered again (test_job_settlement).
            reason=catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
        ),
        metadata=services.internal_metadata,
    )
    listed = catalog.ListPoisonJobs(catalog_pb2.ListPoisonJobsRequest(page_size=1), metadata=md)
    (poison,) = listed.poison_jobs
    assert (poison.job_id, poison.reason) == (
        doomed.job.job_id,
        catalog_pb2.POISON_REASON_RETRIES_EXHAUSTED,
    )

    replayed = catalog.RetryPoisonJob(
        catalog_pb2.RetryPoisonJobRequest(poison_job_id=poison.poison_job_id), metadata=md
    )
    assert replayed.poison_job.HasField("replay_time")
    assert replayed.job.state in (
        common_pb2.JOB_STATE_PENDING,
        common_pb2.JOB_STATE_QUEUED,
        common_pb2.JOB_STATE_RUNNING,
        common_pb2.JOB_STATE_RETRYING,
    )
    open_ones = catalog.ListPoisonJobs(catalog_pb2.ListPoisonJobsRequest(), metadata=md).poison_jobs
    assert poison.poison_job_id not in [p.poison_job_id for p in open_ones]
    every = catalog.ListPoisonJobs(
        catalog_pb2.ListPoisonJobsRequest(include_replayed=True), metadata=md
    ).poison_jobs
    assert poison.poison_job_id in [p.poison_job_id for p in every]


def test_housekeeping_rpcs(services: Services, tenant: Tenant, corpus: Path) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    md = tenant.metadata
    first = upload(services, tenant, (corpus / "bmp_hopper_24bit.bmp").read_bytes())
    second = upload(services, tenant, (corpus / "tiff_adobe_deflate.tif").read_bytes())
    ready = wait_for_status(services, tenant, first.asset.asset_id)

    watched = list(
        catalog.WatchAsset(
            catalog_pb2.WatchAssetRequest(asset_id=ready.asset_id), metadata=md, timeout=10
        )
    )
    assert [w.asset.status for w in watched] == [common_pb2.ASSET_STATUS_READY]

    similar = catalog.FindSimilar(
        catalog_pb2.FindSimilarRequest(perceptual_hash=ready.perceptual_hash, max_distance=0),
        metadata=md,
    )
    assert [a.asset_id for a in similar.assets] == [ready.asset_id]
    with pytest.raises(grpc.RpcError) as too_far:
        catalog.FindSimilar(
            catalog_pb2.FindSimilarRequest(asset_id=ready.asset_id, max_distance=40), metadata=md
        )
    assert too_far.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    jobs = catalog.ListJobs(catalog_pb2.ListJobsRequest(asset_id=ready.asset_id), metadata=md).jobs
    assert [j.job_id for j in jobs] == [ready.job_id]
    all_jobs = catalog.ListJobs(catalog_pb2.ListJobsRequest(page_size=1), metadata=md)
    assert len(all_jobs.jobs) == 1 and all_jobs.next_page_token

    # Rendered first: a rendition written but not yet recorded would be an orphan object.
    wait_for_status(services, tenant, second.asset.asset_id)
    deleted = catalog.DeleteAsset(
        catalog_pb2.DeleteAssetRequest(asset_id=second.asset.asset_id), metadata=md
    )
    assert deleted.asset.status == common_pb2.ASSET_STATUS_DELETED and deleted.asset.HasField(
        "delete_time"
    )
    with pytest.raises(grpc.RpcError) as gone:
        catalog.GetAsset(catalog_pb2.GetAssetRequest(asset_id=second.asset.asset_id), metadata=md)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND

    metrics = catalog.GetTenantMetrics(catalog_pb2.GetTenantMetricsRequest(), metadata=md)
    assert metrics.asset_count == 1 and metrics.tenant_id == tenant.tenant_id
    assert metrics.physical_bytes == ready.size_bytes

    planned = catalog.Purge(catalog_pb2.PurgeRequest(older_than_days=0), metadata=md)
    assert planned.dry_run, "dry run unless asked otherwise"
    assert all(i.asset_id == second.asset.asset_id for i in planned.items)
    assert planned.object_count == len(planned.items) >= 1
