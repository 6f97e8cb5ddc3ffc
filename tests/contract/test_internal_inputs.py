"""The internal API refuses what the database cannot hold, with a reason naming the
field, and writes nothing: an unknown format, a malformed content hash, integers past
PostgreSQL's 32-bit columns, scores outside their range. Each was INTERNAL (or a
database error passed through) before the catalog checked its internal inputs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)
from tests.helpers import Services, Tenant, error_info, register_directly

BIG = 2**31


def _registration(tenant: Tenant, **changes: Any) -> catalog_internal_pb2.RegisterAssetRequest:
    digest = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    fields: dict[str, Any] = {
        "tenant_id": tenant.tenant_id,
        "content_hash": digest,
        "perceptual_hash": "00000000000000ff",
        "content_type": "image/png",
        "format": common_pb2.IMAGE_FORMAT_PNG,
        "width": 10,
        "height": 10,
        "size_bytes": 100,
        "original_key": f"originals/{tenant.tenant_id}/{digest}",
    }
    fields.update(changes)
    return catalog_internal_pb2.RegisterAssetRequest(**fields)


def _rendition(**changes: Any) -> catalog_internal_pb2.RenditionRecord:
    fields: dict[str, Any] = {
        "preset": "thumb",
        "format": common_pb2.IMAGE_FORMAT_WEBP,
        "width": 10,
        "height": 10,
        "size_bytes": 10,
        "quality": 80,
    }
    scores = changes.pop("scores", None)
    fields.update(changes)
    rendition = common_pb2.Rendition(**fields)
    if scores is not None:
        rendition.scores.CopyFrom(scores)
    return catalog_internal_pb2.RenditionRecord(
        rendition=rendition, object_key="renditions/x/y/thumb.0123456789abcdef.webp"
    )


def _refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code(), error_info(failed.value).reason


REGISTRATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown format": ({"format": 77}, "INVALID_FORMAT"),
    "unspecified format": ({"format": 0}, "INVALID_FORMAT"),
    "upper-case hash": ({"content_hash": "A" * 64}, "INVALID_HASH"),
    "short hash": ({"content_hash": "abc"}, "INVALID_HASH"),
    "width past int32": ({"width": BIG}, "INVALID_DIMENSIONS"),
    "zero height": ({"height": 0}, "INVALID_DIMENSIONS"),
    "frame count past int32": ({"frame_count": BIG}, "INVALID_DIMENSIONS"),
    "zero size": ({"size_bytes": 0}, "INVALID_SIZE"),
}


@pytest.mark.parametrize("case", sorted(REGISTRATIONS))
def test_a_registration_the_database_cannot_hold_is_refused(
    services: Services, tenant: Tenant, case: str
) -> None:
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    changes, reason = REGISTRATIONS[case]
    request = _registration(tenant, **changes)

    got = _refused(lambda: internal.RegisterAsset(request, metadata=services.internal_metadata))

    assert got == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    listed = catalog_pb2_grpc.CatalogServiceStub(services.catalog).ListAssets(
        catalog_pb2.ListAssetsRequest(), metadata=tenant.metadata
    )
    assert list(listed.assets) == [], "a refused registration left an asset behind"


COMPLETIONS: dict[str, tuple[dict[str, Any], str]] = {
    "attempt past int32": ({"attempt": BIG}, "INVALID_ATTEMPT"),
    "zero attempt": ({"attempt": 0}, "INVALID_ATTEMPT"),
    "unknown format": ({"renditions": [_rendition(format=77)]}, "INVALID_FORMAT"),
    "width past int32": ({"renditions": [_rendition(width=BIG)]}, "INVALID_DIMENSIONS"),
    "zero height": ({"renditions": [_rendition(height=0)]}, "INVALID_DIMENSIONS"),
    "zero size": ({"renditions": [_rendition(size_bytes=0)]}, "INVALID_SIZE"),
    "quality past int32": ({"renditions": [_rendition(quality=BIG)]}, "INVALID_QUALITY"),
    "min_ssim of 1.5": ({"renditions": [_rendition(min_ssim=1.5)]}, "INVALID_SCORES"),
    "hash distance past 64": (
        {"renditions": [_rendition(scores=common_pb2.QualityScores(hash_distance=BIG))]},
        "INVALID_SCORES",
    ),
}


@pytest.mark.parametrize("case", sorted(COMPLETIONS))
def test_a_completion_the_database_cannot_hold_is_refused(
    services: Services, tenant: Tenant, case: str
) -> None:
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    registered = register_directly(services, tenant)
    job_id = registered.job.job_id
    started = internal.StartJobAttempt(
        catalog_internal_pb2.StartJobAttemptRequest(
            job_id=job_id, worker="contract", lease_seconds=60
        ),
        metadata=services.internal_metadata,
    )
    assert started.proceed
    changes, reason = COMPLETIONS[case]
    fields: dict[str, Any] = {
        "job_id": job_id,
        "attempt": started.attempt,
        "renditions": [_rendition()],
    }
    fields.update(changes)
    request = catalog_internal_pb2.CompleteJobRequest(**fields)

    got = _refused(lambda: internal.CompleteJob(request, metadata=services.internal_metadata))

    assert got == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    job = catalog_pb2_grpc.CatalogServiceStub(services.catalog).GetJob(
        catalog_pb2.GetJobRequest(job_id=job_id), metadata=tenant.metadata
    )
    assert job.job.state != common_pb2.JOB_STATE_DONE, "a refused completion finished the job"
