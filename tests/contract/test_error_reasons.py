"""Every ErrorInfo reason the services raise, triggered through the generated stubs.

The reasons are found by scanning services/ for ``reason="..."``. Each one has a
case below (a request and the status code it must get), is covered by a named test
elsewhere, or is in EXCLUDED with the reason it cannot be triggered from outside; a
new reason with none of these fails ``test_every_reason_in_the_code_is_accounted_for``.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from devstack import Stack
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    quality_pb2,
    quality_pb2_grpc,
    renderer_pb2,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from tests.conftest import CORPUS, ISSUED_TENANT_KEYS
from tests.contract import test_input_edges as edges
from tests.contract import test_malformed_requests as malformed
from tests.helpers import (
    Services,
    Tenant,
    error_info,
    register_directly,
    upload,
    upload_messages,
    wait_for_status,
)
from tests.integration import test_repository_retries as repository_retries
from tests.unit.catalog import test_signing_keys as signing_keys
from tests.unit.delivery import test_access as delivery_access
from tests.unit.delivery import test_resolve as delivery_resolve
from tests.unit.delivery import test_routes as delivery_routes
from tests.unit.quality import test_assessment as assessment

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
_REASON = re.compile(r'reason="([A-Z][A-Z0-9_]*)"')

# Reasons no request from outside can produce on a healthy stack, and why.
EXCLUDED = {
    "BROKER_UNAVAILABLE": "RabbitMQ down; an upload then succeeds with its job left in the "
    "outbox (tests/faults cover the outage)",
    "DATABASE_UNAVAILABLE": "PostgreSQL unreachable (tests/faults)",
    "STORAGE_ERROR": "the S3 server answering an error other than a missing key",
    "STORAGE_UNAVAILABLE": "the S3 server unreachable (tests/faults)",
    "WATCH_UNAVAILABLE": "catalog's LISTEN connection to PostgreSQL lost",
    "IMAGE_DECODE_TIMEOUT": "needs an image that decodes for over 30 s; "
    "tests/unit/shared/test_sandbox.py kills a slow job",
    "IMAGE_DECODER_CRASHED": "needs an input that crashes a codec; "
    "tests/unit/shared/test_sandbox.py crashes a worker",
    "TENANT_KEY_REQUIRED": "defence in depth: the interceptor refuses a non-tenant "
    "credential on a tenant RPC first (WRONG_CREDENTIAL_KIND)",
}
# Reasons whose cases need a process of their own or a long wait: the named test.
ELSEWHERE: dict[str, Callable[..., object]] = {
    "MALFORMED_REQUEST": malformed.test_malformed_requests_are_invalid_argument_everywhere,
    "UPLOAD_IDLE": edges.test_a_silent_upload_is_cut_off_and_leaves_nothing,
    "TOO_MANY_UPLOADS": edges.test_one_tenant_cannot_hold_more_open_uploads_than_its_limit,
    # More concurrent comparisons than the service's limit and queue, held at once.
    "QUALITY_BUSY": (
        assessment.test_compare_waits_for_a_slot_before_reading_and_refuses_past_the_queue
    ),
    # PostgreSQL not answering a statement in time, or refusing a value that every
    # request checks before the database (tests/contract/test_internal_inputs.py).
    "DATABASE_TIMEOUT": repository_retries.test_a_statement_timeout_is_not_retried,
    "INVALID_VALUE": repository_retries.test_bad_input_is_invalid_argument_not_a_lost_connection,
    # A catalog started without a usable key pepper (every stack here has one).
    "SIGNING_NOT_CONFIGURED": (
        signing_keys.test_no_key_is_made_or_derived_under_a_missing_or_short_pepper
    ),
    # The delivery service's HTTP reasons (JSON error bodies, not gRPC statuses).
    "BAD_PARAMETER": delivery_access.test_malformed_parameters_are_a_bad_request,
    "SIGNATURE_INVALID": delivery_access.test_a_signature_over_anything_else_is_invalid,
    "SIGNATURE_REQUIRED": (
        delivery_access.test_unsigned_urls_are_served_only_for_tenants_that_allow_them
    ),
    "SIGNING_KEY_UNKNOWN": (
        delivery_access.test_a_key_that_is_not_an_active_key_of_the_tenant_is_unknown
    ),
    "URL_EXPIRED": delivery_access.test_an_expired_url_is_refused_after_its_signature_is_checked,
    "ASSET_DELETED": delivery_resolve.test_unknown_and_deleted_assets_are_not_found,
    "NOT_READY": delivery_resolve.test_an_asset_still_rendering_says_when_to_come_back,
    "NOT_A_DELIVERY_URL": delivery_routes.test_anything_but_a_delivery_url_is_not_found,
}


def reasons_in_code() -> set[str]:
    return {
        reason
        for path in SERVICES_DIR.rglob("*.py")
        for reason in _REASON.findall(path.read_text())
    }


@dataclass
class World:
    """What the cases run against: the stack, a tenant and one rendered asset."""

    services: Services
    stack: Stack
    tenant: Tenant
    ready: common_pb2.Asset
    tight_ingest: Callable[[], grpc.Channel]

    @property
    def catalog(self) -> catalog_pb2_grpc.CatalogServiceStub:
        return catalog_pb2_grpc.CatalogServiceStub(self.services.catalog)

    @property
    def internal(self) -> catalog_internal_pb2_grpc.CatalogInternalServiceStub:
        return catalog_internal_pb2_grpc.CatalogInternalServiceStub(self.services.catalog)

    @property
    def admin(self) -> tenant_admin_pb2_grpc.TenantAdminServiceStub:
        return tenant_admin_pb2_grpc.TenantAdminServiceStub(self.services.catalog)

    @property
    def ingest(self) -> ingest_pb2_grpc.IngestServiceStub:
        return ingest_pb2_grpc.IngestServiceStub(self.services.ingest)

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return self.tenant.metadata

    def upload(self, messages: Iterator[ingest_pb2.UploadRequest]) -> object:
        return self.ingest.Upload(messages, metadata=self.md, timeout=60)

    def upload_file(self, name: str) -> object:
        return self.upload(upload_messages((CORPUS / name).read_bytes(), name))


def _header(**fields: Any) -> ingest_pb2.UploadRequest:
    return ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(**fields))


def _unknown_key() -> str:
    return f"ip_{uuid.uuid4().hex[:16]}_{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


def _missing_object(w: World) -> object:
    """ReadRendition of a rendition whose object has gone from the store."""
    keys = w.internal.GetAssetObjects(
        catalog_internal_pb2.GetAssetObjectsRequest(
            tenant_id=w.tenant.tenant_id, asset_id=w.ready.asset_id
        ),
        metadata=w.services.internal_metadata,
    )
    (thumb,) = [r for r in keys.renditions if r.rendition.preset == "thumb"]
    w.stack.s3.client().remove_object(w.stack.bucket, thumb.object_key)
    return list(
        w.catalog.ReadRendition(
            catalog_pb2.ReadRenditionRequest(asset_id=w.ready.asset_id, preset="thumb"),
            metadata=w.md,
        )
    )


def _too_slow(w: World) -> object:
    stop = threading.Event()

    def trickle() -> Iterator[ingest_pb2.UploadRequest]:
        yield _header(filename="slow.jpg")
        while not stop.wait(0.2):  # well inside the idle timeout, past the stream deadline
            yield ingest_pb2.UploadRequest(chunk=b"\xff")

    stub = ingest_pb2_grpc.IngestServiceStub(w.tight_ingest())
    try:
        return stub.Upload(trickle(), metadata=w.md, timeout=60)
    finally:
        stop.set()


def _existing_tenant(w: World) -> object:
    name = f"twice-{uuid.uuid4().hex[:8]}"
    request = tenant_admin_pb2.CreateTenantRequest(name=name)
    w.admin.CreateTenant(request, metadata=w.services.admin_metadata)
    return w.admin.CreateTenant(request, metadata=w.services.admin_metadata)


def _not_ready(w: World) -> object:
    pending = register_directly(w.services, w.tenant)
    return w.catalog.GetRendition(
        catalog_pb2.GetRenditionRequest(asset_id=pending.asset.asset_id, preset="thumb"),
        metadata=w.md,
    )


def _compare_nothing(w: World) -> object:
    quality = quality_pb2_grpc.QualityServiceStub(w.services.quality)
    data = (CORPUS / "edge_tiny_20x20.jpg").read_bytes()
    messages = iter(
        [
            quality_pb2.CompareImagesRequest(header=quality_pb2.CompareImagesHeader()),
            quality_pb2.CompareImagesRequest(reference_chunk=data),
        ]
    )
    return quality.CompareImages(messages, metadata=w.md, timeout=60)


def _registration(w: World, **changes: Any) -> catalog_internal_pb2.RegisterAssetRequest:
    digest = uuid.uuid4().hex * 2
    fields: dict[str, Any] = {
        "tenant_id": w.tenant.tenant_id,
        "content_hash": digest,
        "perceptual_hash": "00000000000000ff",
        "content_type": "image/png",
        "format": common_pb2.IMAGE_FORMAT_PNG,
        "width": 1,
        "height": 1,
        "size_bytes": 1,
        "original_key": f"originals/{w.tenant.tenant_id}/{digest}",
    }
    return catalog_internal_pb2.RegisterAssetRequest(**(fields | changes))


def _too_many_signing_keys(w: World) -> object:
    """An eleventh active signing key, on a tenant of its own."""
    created = w.admin.CreateTenant(
        tenant_admin_pb2.CreateTenantRequest(name=f"keys-{uuid.uuid4().hex[:8]}"),
        metadata=w.services.admin_metadata,
    )
    ISSUED_TENANT_KEYS[f"key of tenant {created.tenant.name}"] = created.secret_key
    md = (("authorization", f"Bearer {created.secret_key}"),)
    for _ in range(10):
        w.catalog.CreateSigningKey(catalog_pb2.CreateSigningKeyRequest(), metadata=md)
    return w.catalog.CreateSigningKey(catalog_pb2.CreateSigningKeyRequest(), metadata=md)


def _own_tenant(w: World, prefix: str) -> tuple[tuple[str, str], ...]:
    """The metadata of a tenant of its own, for cases that would change w.tenant's."""
    created = w.admin.CreateTenant(
        tenant_admin_pb2.CreateTenantRequest(name=f"{prefix}-{uuid.uuid4().hex[:8]}"),
        metadata=w.services.admin_metadata,
    )
    ISSUED_TENANT_KEYS[f"key of tenant {created.tenant.name}"] = created.secret_key
    return (("authorization", f"Bearer {created.secret_key}"),)


def _create_preset(w: World, md: Any = None, **fields: Any) -> object:
    defaults: dict[str, Any] = {"name": "p", "max_width": 10, "max_height": 10}
    preset = renderer_pb2.Preset(**(defaults | fields))
    return w.catalog.CreatePreset(
        catalog_pb2.CreatePresetRequest(preset=preset), metadata=md or w.md
    )


def _too_many_presets(w: World) -> object:
    md = _own_tenant(w, "presets")
    for n in range(17):  # the 3 defaults and 17 more
        _create_preset(w, md, name=f"p{n}")
    return _create_preset(w, md, name="p99")


def _last_preset(w: World) -> object:
    md = _own_tenant(w, "presets")
    for name in ("zoom", "card"):
        w.catalog.DeletePreset(catalog_pb2.DeletePresetRequest(name=name), metadata=md)
    return w.catalog.DeletePreset(catalog_pb2.DeletePresetRequest(name="thumb"), metadata=md)


def _backfill(w: World, **fields: Any) -> object:
    return w.catalog.StartBackfill(catalog_pb2.StartBackfillRequest(**fields), metadata=w.md)


def _settings(w: World, *paths: str) -> object:
    return w.catalog.UpdateTenantSettings(
        catalog_pb2.UpdateTenantSettingsRequest(
            settings=common_pb2.TenantSettings(), update_mask=FieldMask(paths=list(paths))
        ),
        metadata=w.md,
    )


def _complete_with(w: World, **rendition: Any) -> object:
    fields: dict[str, Any] = {
        "preset": "thumb",
        "format": common_pb2.IMAGE_FORMAT_WEBP,
        "width": 1,
        "height": 1,
        "size_bytes": 1,
    }
    record = catalog_internal_pb2.RenditionRecord(
        rendition=common_pb2.Rendition(**(fields | rendition)), object_key="k"
    )
    return w.internal.CompleteJob(
        catalog_internal_pb2.CompleteJobRequest(
            job_id=str(uuid.uuid4()), attempt=1, renditions=[record]
        ),
        metadata=w.services.internal_metadata,
    )


S = grpc.StatusCode
CASES: dict[str, tuple[grpc.StatusCode, Callable[[World], object]]] = {
    # Credentials
    "MISSING_CREDENTIALS": (
        S.UNAUTHENTICATED,
        lambda w: w.catalog.GetTenantMetrics(catalog_pb2.GetTenantMetricsRequest()),
    ),
    "MALFORMED_CREDENTIALS": (
        S.UNAUTHENTICATED,
        lambda w: w.catalog.GetTenantMetrics(
            catalog_pb2.GetTenantMetricsRequest(), metadata=(("authorization", "Basic abc"),)
        ),
    ),
    "INVALID_CREDENTIALS": (
        S.UNAUTHENTICATED,
        lambda w: w.catalog.GetTenantMetrics(
            catalog_pb2.GetTenantMetricsRequest(), metadata=(("authorization", "Bearer xyz"),)
        ),
    ),
    "MALFORMED_KEY": (
        S.UNAUTHENTICATED,
        lambda w: w.ingest.Upload(
            upload_messages(b"x"), metadata=(("authorization", "Bearer ip_short"),)
        ),
    ),
    "INVALID_API_KEY": (
        S.UNAUTHENTICATED,
        lambda w: w.catalog.GetTenantMetrics(
            catalog_pb2.GetTenantMetricsRequest(),
            metadata=(("authorization", f"Bearer {_unknown_key()}"),),
        ),
    ),
    "WRONG_CREDENTIAL_KIND": (
        S.PERMISSION_DENIED,
        lambda w: w.admin.ListTenants(tenant_admin_pb2.ListTenantsRequest(), metadata=w.md),
    ),
    # Upload streams and headers
    "MALFORMED_STREAM": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload(iter([ingest_pb2.UploadRequest(chunk=b"x")])),
    ),
    "CHUNK_TOO_LARGE": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload(
            iter([_header(), ingest_pb2.UploadRequest(chunk=bytes(1024 * 1024 + 1))])
        ),
    ),
    "UPLOAD_TOO_LARGE": (
        S.RESOURCE_EXHAUSTED,
        lambda w: ingest_pb2_grpc.IngestServiceStub(w.tight_ingest()).Upload(
            upload_messages(bytes(5000), chunk=1000), metadata=w.md, timeout=60
        ),
    ),
    "UPLOAD_TIMEOUT": (S.DEADLINE_EXCEEDED, _too_slow),
    "INVALID_LABELS": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload(iter([_header(labels={"Not A Key": "x"})])),
    ),
    "FIELD_TOO_LONG": (S.INVALID_ARGUMENT, lambda w: w.upload(iter([_header(filename="f" * 256)]))),
    "INVALID_FILENAME": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload(iter([_header(filename="\u202egnp.exe")])),
    ),
    "NUL_CHARACTER": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload(iter([_header(labels={"site": "\x00"})])),
    ),
    # Images
    "IMAGE_EMPTY": (S.INVALID_ARGUMENT, lambda w: w.upload(iter([_header()]))),
    "IMAGE_FORMAT_UNSUPPORTED": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload_file("invalid_html_404.jpg"),
    ),
    "IMAGE_CORRUPT": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload_file("invalid_png_flipped_idat_byte.png"),
    ),
    "IMAGE_TRUNCATED": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload_file("invalid_truncated_60pct.jpg"),
    ),
    "IMAGE_TOO_LARGE": (
        S.INVALID_ARGUMENT,
        lambda w: w.upload_file("invalid_bomb_png_50000x50000.png"),
    ),
    # Catalog reads
    "INVALID_ID": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.GetAsset(catalog_pb2.GetAssetRequest(asset_id="nope"), metadata=w.md),
    ),
    "ASSET_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.catalog.GetAsset(
            catalog_pb2.GetAssetRequest(asset_id=str(uuid.uuid4())), metadata=w.md
        ),
    ),
    "JOB_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.catalog.GetJob(
            catalog_pb2.GetJobRequest(job_id=str(uuid.uuid4())), metadata=w.md
        ),
    ),
    "INVALID_PAGE_SIZE": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.ListAssets(catalog_pb2.ListAssetsRequest(page_size=-1), metadata=w.md),
    ),
    "INVALID_PAGE_TOKEN": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.ListJobs(
            catalog_pb2.ListJobsRequest(page_token="bogus"), metadata=w.md
        ),
    ),
    "INVALID_FILTER": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.ListAssets(
            catalog_pb2.ListAssetsRequest(status=common_pb2.ASSET_STATUS_DELETED), metadata=w.md
        ),
    ),
    "DISTANCE_TOO_LARGE": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.FindSimilar(
            catalog_pb2.FindSimilarRequest(perceptual_hash="0" * 16, max_distance=40),
            metadata=w.md,
        ),
    ),
    "LIMIT_TOO_LARGE": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.FindSimilar(
            catalog_pb2.FindSimilarRequest(perceptual_hash="0" * 16, limit=1000), metadata=w.md
        ),
    ),
    "INVALID_HASH": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.FindSimilar(
            catalog_pb2.FindSimilarRequest(perceptual_hash="xyz"), metadata=w.md
        ),
    ),
    "MISSING_TARGET": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.FindSimilar(catalog_pb2.FindSimilarRequest(), metadata=w.md),
    ),
    # Renditions
    "INVALID_TTL": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.GetRendition(
            catalog_pb2.GetRenditionRequest(
                asset_id=w.ready.asset_id, preset="thumb", url_ttl_seconds=10**7
            ),
            metadata=w.md,
        ),
    ),
    "INVALID_FORMAT": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.GetRendition(
            catalog_pb2.GetRenditionRequest(
                asset_id=w.ready.asset_id,
                preset="thumb",
                accept_formats=[77],  # type: ignore[list-item]
            ),
            metadata=w.md,
        ),
    ),
    "ASSET_NOT_READY": (S.FAILED_PRECONDITION, _not_ready),
    "RENDITION_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.catalog.GetRendition(
            catalog_pb2.GetRenditionRequest(asset_id=w.ready.asset_id, preset="poster"),
            metadata=w.md,
        ),
    ),
    "FORMAT_NOT_AVAILABLE": (
        S.NOT_FOUND,
        lambda w: w.catalog.GetRendition(
            catalog_pb2.GetRenditionRequest(
                asset_id=w.ready.asset_id,
                preset="thumb",
                accept_formats=[common_pb2.IMAGE_FORMAT_PNG],
            ),
            metadata=w.md,
        ),
    ),
    "OBJECT_MISSING": (S.UNAVAILABLE, _missing_object),
    # Delivery URLs, signing keys and settings ("reasons" has no signing key, and no
    # case here gives it one).
    "NO_SIGNING_KEY": (
        S.FAILED_PRECONDITION,
        lambda w: w.catalog.GetDeliveryUrl(
            catalog_pb2.GetDeliveryUrlRequest(asset_id=w.ready.asset_id, preset="thumb"),
            metadata=w.md,
        ),
    ),
    "SIGNING_KEY_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.catalog.RevokeSigningKey(
            catalog_pb2.RevokeSigningKeyRequest(key_id="0123456789abcdef"), metadata=w.md
        ),
    ),
    "TOO_MANY_SIGNING_KEYS": (S.FAILED_PRECONDITION, _too_many_signing_keys),
    "INVALID_PRESET": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.GetDeliveryUrl(
            catalog_pb2.GetDeliveryUrlRequest(asset_id=w.ready.asset_id, preset="Thumb"),
            metadata=w.md,
        ),
    ),
    "UPDATE_MASK_REQUIRED": (S.INVALID_ARGUMENT, _settings),
    # Presets, focal points and backfills
    "INVALID_PRESET_SIZE": (S.INVALID_ARGUMENT, lambda w: _create_preset(w, max_width=8193)),
    "INVALID_PRESET_FORMAT": (
        S.INVALID_ARGUMENT,
        lambda w: _create_preset(w, formats=[common_pb2.IMAGE_FORMAT_PNG]),
    ),
    "INVALID_PRESET_QUALITY": (S.INVALID_ARGUMENT, lambda w: _create_preset(w, min_ssim=1.5)),
    "INVALID_PRESET_CHROMA": (
        S.INVALID_ARGUMENT,
        lambda w: _create_preset(w, chroma_subsampling=7),
    ),
    "INVALID_PRESET_FIT": (S.INVALID_ARGUMENT, lambda w: _create_preset(w, fit=7)),
    "INVALID_PRESET_GRAVITY": (S.INVALID_ARGUMENT, lambda w: _create_preset(w, gravity=9)),
    "PRESET_EXISTS": (S.ALREADY_EXISTS, lambda w: _create_preset(w, name="thumb")),
    "TOO_MANY_PRESETS": (S.FAILED_PRECONDITION, _too_many_presets),
    "LAST_PRESET": (S.FAILED_PRECONDITION, _last_preset),
    "PRESET_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.catalog.DeletePreset(
            catalog_pb2.DeletePresetRequest(name="poster"), metadata=w.md
        ),
    ),
    "UNKNOWN_PRESET_FIELD": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.UpdatePreset(
            catalog_pb2.UpdatePresetRequest(
                preset=renderer_pb2.Preset(name="thumb"), update_mask=FieldMask(paths=["name"])
            ),
            metadata=w.md,
        ),
    ),
    "INVALID_FOCAL_POINT": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.SetFocalPoint(
            catalog_pb2.SetFocalPointRequest(
                asset_id=w.ready.asset_id, focal_point=common_pb2.FocalPoint(x=-1)
            ),
            metadata=w.md,
        ),
    ),
    "INVALID_BACKFILL_SCOPE": (S.INVALID_ARGUMENT, _backfill),
    "TOO_MANY_ASSET_IDS": (
        S.INVALID_ARGUMENT,
        lambda w: _backfill(
            w,
            scope=catalog_pb2.BACKFILL_SCOPE_ASSET_IDS,
            asset_ids=[str(uuid.uuid4()) for _ in range(1001)],
        ),
    ),
    "BACKFILL_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.catalog.GetBackfill(
            catalog_pb2.GetBackfillRequest(backfill_id=str(uuid.uuid4())), metadata=w.md
        ),
    ),
    "UNKNOWN_SETTING": (S.INVALID_ARGUMENT, lambda w: _settings(w, "unsigned_delivery", "gps")),
    # Poison jobs and purge
    "POISON_JOB_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.catalog.RetryPoisonJob(
            catalog_pb2.RetryPoisonJobRequest(poison_job_id=str(uuid.uuid4())), metadata=w.md
        ),
    ),
    "AGE_TOO_LARGE": (
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.Purge(catalog_pb2.PurgeRequest(older_than_days=40_000), metadata=w.md),
    ),
    # Tenant administration
    "INVALID_TENANT_NAME": (
        S.INVALID_ARGUMENT,
        lambda w: w.admin.CreateTenant(
            tenant_admin_pb2.CreateTenantRequest(name="Not A Name"),
            metadata=w.services.admin_metadata,
        ),
    ),
    "TENANT_EXISTS": (S.ALREADY_EXISTS, _existing_tenant),
    "TENANT_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.admin.ListApiKeys(
            tenant_admin_pb2.ListApiKeysRequest(tenant_id=str(uuid.uuid4())),
            metadata=w.services.admin_metadata,
        ),
    ),
    "INVALID_LABEL": (
        S.INVALID_ARGUMENT,
        lambda w: w.admin.CreateApiKey(
            tenant_admin_pb2.CreateApiKeyRequest(tenant_id=w.tenant.tenant_id, label="l" * 201),
            metadata=w.services.admin_metadata,
        ),
    ),
    "API_KEY_NOT_FOUND": (
        S.NOT_FOUND,
        lambda w: w.admin.RevokeApiKey(
            tenant_admin_pb2.RevokeApiKeyRequest(key_id="0123456789abcdef"),
            metadata=w.services.admin_metadata,
        ),
    ),
    # Internal API (the services' own calls, with the internal token)
    "JOB_NOT_RUNNABLE": (
        S.FAILED_PRECONDITION,
        lambda w: w.internal.CompleteJob(
            catalog_internal_pb2.CompleteJobRequest(job_id=str(uuid.uuid4()), attempt=1),
            metadata=w.services.internal_metadata,
        ),
    ),
    "INVALID_DIMENSIONS": (
        S.INVALID_ARGUMENT,
        lambda w: w.internal.RegisterAsset(
            _registration(w, width=2**31), metadata=w.services.internal_metadata
        ),
    ),
    "INVALID_SIZE": (
        S.INVALID_ARGUMENT,
        lambda w: w.internal.RegisterAsset(
            _registration(w, size_bytes=-1), metadata=w.services.internal_metadata
        ),
    ),
    "INVALID_METADATA": (
        S.INVALID_ARGUMENT,
        lambda w: w.internal.RegisterAsset(
            _registration(w, metadata=common_pb2.AssetMetadata(f_number=float("nan"))),
            metadata=w.services.internal_metadata,
        ),
    ),
    "INVALID_ATTEMPT": (
        S.INVALID_ARGUMENT,
        lambda w: w.internal.CompleteJob(
            catalog_internal_pb2.CompleteJobRequest(job_id=str(uuid.uuid4()), attempt=2**31),
            metadata=w.services.internal_metadata,
        ),
    ),
    "INVALID_QUALITY": (S.INVALID_ARGUMENT, lambda w: _complete_with(w, quality=101)),
    "INVALID_SCORES": (S.INVALID_ARGUMENT, lambda w: _complete_with(w, min_ssim=1.0)),
    "CONTENT_HASH_MISMATCH": (
        S.INVALID_ARGUMENT,
        lambda w: _complete_with(w, content_hash="0" * 64),
    ),
    "INVALID_POISON_REASON": (
        S.INVALID_ARGUMENT,
        lambda w: w.internal.RecordPoisonJob(
            catalog_internal_pb2.RecordPoisonJobRequest(error="x"),
            metadata=w.services.internal_metadata,
        ),
    ),
}
# A second producer of the same reason, on another service.
EXTRA_CASES: dict[str, tuple[str, grpc.StatusCode, Callable[[World], object]]] = {
    "compare-images-empty": ("IMAGE_EMPTY", S.INVALID_ARGUMENT, _compare_nothing),
    "delivery-url-ttl": (
        "INVALID_TTL",
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.GetDeliveryUrl(
            catalog_pb2.GetDeliveryUrlRequest(
                asset_id=w.ready.asset_id, preset="thumb", ttl_seconds=365 * 86400 + 1
            ),
            metadata=w.md,
        ),
    ),
    "delivery-url-format": (
        "INVALID_FORMAT",
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.GetDeliveryUrl(
            catalog_pb2.GetDeliveryUrlRequest(
                asset_id=w.ready.asset_id, preset="thumb", format=common_pb2.IMAGE_FORMAT_PNG
            ),
            metadata=w.md,
        ),
    ),
    "delivery-url-not-ready": (
        "ASSET_NOT_READY",
        S.FAILED_PRECONDITION,
        lambda w: w.catalog.GetDeliveryUrl(
            catalog_pb2.GetDeliveryUrlRequest(
                asset_id=register_directly(w.services, w.tenant).asset.asset_id, preset="thumb"
            ),
            metadata=w.md,
        ),
    ),
    "delivery-url-no-format": (
        "FORMAT_NOT_AVAILABLE",
        S.NOT_FOUND,
        lambda w: w.catalog.GetDeliveryUrl(
            catalog_pb2.GetDeliveryUrlRequest(
                asset_id=w.ready.asset_id, preset="thumb", format=common_pb2.IMAGE_FORMAT_AVIF
            ),
            metadata=w.md,
        ),
    ),
    "signing-key-label": (
        "INVALID_LABEL",
        S.INVALID_ARGUMENT,
        lambda w: w.catalog.CreateSigningKey(
            catalog_pb2.CreateSigningKeyRequest(label="l" * 201), metadata=w.md
        ),
    ),
    "resolve-preset": (
        "INVALID_PRESET",
        S.INVALID_ARGUMENT,
        lambda w: w.internal.ResolveDelivery(
            catalog_internal_pb2.ResolveDeliveryRequest(
                tenant_id=w.tenant.tenant_id, asset_id=w.ready.asset_id, preset="../x"
            ),
            metadata=w.services.internal_metadata,
        ),
    ),
    "delivery-access-tenant": (
        "INVALID_ID",
        S.INVALID_ARGUMENT,
        lambda w: w.internal.GetDeliveryAccess(
            catalog_internal_pb2.GetDeliveryAccessRequest(tenant_id="nope"),
            metadata=w.services.internal_metadata,
        ),
    ),
}


def test_every_reason_in_the_code_is_accounted_for() -> None:
    in_code = reasons_in_code()
    assert len(in_code) >= 50, "the scan found too few reasons: is the pattern still right?"
    covered, excluded, elsewhere = set(CASES), set(EXCLUDED), set(ELSEWHERE)
    assert not covered & excluded and not covered & elsewhere and not excluded & elsewhere
    assert covered | excluded | elsewhere == in_code, {
        "in the code with no case": sorted(in_code - covered - excluded - elsewhere),
        "cased but not in the code": sorted((covered | excluded | elsewhere) - in_code),
    }


@pytest.fixture(scope="module")
def world(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> Iterator[World]:
    tenant = make_tenant("reasons")
    uploaded = upload(services, tenant, (CORPUS / "edge_tiny_20x20.jpg").read_bytes())
    ready = wait_for_status(services, tenant, uploaded.asset.asset_id, timeout=60)
    assert ready.status == common_pb2.ASSET_STATUS_READY
    extra: list[Any] = []

    def tight_ingest() -> grpc.Channel:
        """An ingest with a 4 KiB upload cap and a 2 s stream deadline, started once."""
        if not extra:
            manager = edges._extra_ingest(
                stack,
                "tight",
                IMAGEPIPE_MAX_UPLOAD_BYTES="4096",
                IMAGEPIPE_UPLOAD_TIMEOUT_SECONDS="2",
            )
            extra.append((manager, manager.__enter__()))
        channel: grpc.Channel = extra[0][1]
        return channel

    try:
        yield World(services, stack, tenant, ready, tight_ingest)
    finally:
        for manager, _ in extra:
            manager.__exit__(None, None, None)


def _check(
    world: World, code: grpc.StatusCode, call: Callable[[World], object], reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        call(world)
    got = (failed.value.code(), error_info(failed.value).reason)
    assert got == (code, reason), failed.value.details()


@pytest.mark.parametrize("reason", sorted(CASES))
def test_reason(world: World, reason: str) -> None:
    code, call = CASES[reason]
    _check(world, code, call, reason)


@pytest.mark.parametrize("case", sorted(EXTRA_CASES))
def test_reason_from_another_producer(world: World, case: str) -> None:
    reason, code, call = EXTRA_CASES[case]
    _check(world, code, call, reason)
