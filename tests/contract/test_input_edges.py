"""Input at the edges, through the generated stubs: refused with a reason, nothing stored.

Each case here was once INTERNAL, UNAVAILABLE, silently cut or silently ignored.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from devstack import Stack
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from services.catalog.usecases.paging import _fingerprint as fingerprint
from tests.conftest import CORPUS
from tests.helpers import Services, Tenant, error_info, upload, upload_messages


def _refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code(), error_info(failed.value).reason


def _objects(stack: Stack, tenant: Tenant) -> list[str]:
    client = stack.s3.client()
    return [
        o.object_name or ""
        for prefix in (f"originals/{tenant.tenant_id}/", f"renditions/{tenant.tenant_id}/")
        for o in client.list_objects(stack.bucket, prefix=prefix, recursive=True)
    ]


def _header_upload(data: bytes, **header: object) -> Iterator[ingest_pb2.UploadRequest]:
    yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(**header))  # type: ignore[arg-type]
    yield ingest_pb2.UploadRequest(chunk=data)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"labels": {"site": "a\x00b"}}, "NUL_CHARACTER"),
        ({"content_type": "image/jpeg\x00"}, "NUL_CHARACTER"),
        ({"filename": "a\x00.jpg"}, "NUL_CHARACTER"),
        ({"labels": {"site\n": "x"}}, "INVALID_LABELS"),
        ({"filename": "f" * 10_000}, "FIELD_TOO_LONG"),
        ({"content_type": "image/" + "x" * 10_000}, "FIELD_TOO_LONG"),
    ],
    ids=["nul-label", "nul-content-type", "nul-filename", "newline-key", "10k-name", "10k-type"],
)
def test_hostile_headers_are_refused_before_anything_is_stored(
    services: Services,
    stack: Stack,
    tenant: Tenant,
    header: dict[str, object],
    reason: str,
) -> None:
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    data = (CORPUS / "edge_tiny_20x20.jpg").read_bytes()
    code, got = _refused(
        lambda: stub.Upload(_header_upload(data, **header), metadata=tenant.metadata, timeout=30)
    )
    assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert _objects(stack, tenant) == [], "a refused upload left an object behind"
    # The same bytes with a clean header are accepted as new.
    assert not upload(services, tenant, data).deduplicated


def test_tenant_names_with_a_trailing_newline_are_refused(services: Services) -> None:
    admin = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog)
    name = f"edge-{uuid.uuid4().hex[:8]}"
    assert _refused(
        lambda: admin.CreateTenant(
            tenant_admin_pb2.CreateTenantRequest(name=name + "\n"),
            metadata=services.admin_metadata,
            timeout=30,
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TENANT_NAME")


def _token(query: str, **position: object) -> str:
    payload = {"q": fingerprint(query), **position}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_forged_page_tokens_are_invalid_not_unavailable(services: Services, tenant: Tenant) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    admin = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog)
    query = f"assets:{tenant.tenant_id}:None"
    forged = [
        _token(query, t="2026-01-01T00:00:00+00:00", id=12345),
        _token(query, t="0001-01-01T00:00:00+05:00", id=str(uuid.uuid4())),
        _token(query, t="2026-01-01T00:00:00", id=str(uuid.uuid4())),
    ]

    def list_assets(token: str) -> object:
        return catalog.ListAssets(
            catalog_pb2.ListAssetsRequest(page_token=token), metadata=tenant.metadata, timeout=30
        )

    def list_tenants(token: str) -> object:
        return admin.ListTenants(
            tenant_admin_pb2.ListTenantsRequest(page_token=token),
            metadata=services.admin_metadata,
            timeout=30,
        )

    calls = [functools.partial(list_assets, token) for token in forged] + [
        functools.partial(list_tenants, token)
        for token in (_token("tenants", name="a\x00"), base64.urlsafe_b64encode(b"\x00").decode())
    ]
    for call in calls:
        assert _refused(call) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


def test_tenant_listing_pages_through_every_tenant(
    services: Services, make_tenant: Callable[[str], Tenant]
) -> None:
    for _ in range(3):
        make_tenant("page")
    admin = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog)
    names: list[str] = []
    token = ""
    while True:
        page = admin.ListTenants(
            tenant_admin_pb2.ListTenantsRequest(page_size=2, page_token=token),
            metadata=services.admin_metadata,
            timeout=30,
        )
        names += [t.name for t in page.tenants]
        token = page.next_page_token
        if not token:
            break
    assert names == sorted(names) and len(names) == len(set(names)) >= 3


def test_out_of_range_numbers_and_enums_are_refused(services: Services, tenant: Tenant) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    md = tenant.metadata
    asset_id = str(uuid.uuid4())
    cases = {
        "purge": (
            lambda: catalog.Purge(
                catalog_pb2.PurgeRequest(older_than_days=4_294_967_295), metadata=md
            ),
            "AGE_TOO_LARGE",
        ),
        "accept_formats": (
            lambda: catalog.GetRendition(
                catalog_pb2.GetRenditionRequest(
                    asset_id=asset_id,
                    preset="thumb",
                    accept_formats=[99],  # type: ignore[list-item]
                ),
                metadata=md,
            ),
            "INVALID_FORMAT",
        ),
        "read-accept_formats": (
            lambda: list(
                catalog.ReadRendition(
                    catalog_pb2.ReadRenditionRequest(
                        asset_id=asset_id,
                        preset="thumb",
                        accept_formats=[99],  # type: ignore[list-item]
                    ),
                    metadata=md,
                )
            ),
            "INVALID_FORMAT",
        ),
        "status": (
            lambda: catalog.ListAssets(catalog_pb2.ListAssetsRequest(status=42), metadata=md),  # type: ignore[arg-type]
            "INVALID_FILTER",
        ),
        "state": (
            lambda: catalog.ListJobs(catalog_pb2.ListJobsRequest(state=42), metadata=md),  # type: ignore[arg-type]
            "INVALID_FILTER",
        ),
    }
    wrong = {}
    for name, (call, reason) in cases.items():
        try:
            got: object = _refused(call)
        except BaseException as error:  # pytest.raises fails with a BaseException
            got = repr(error)
        if got != (grpc.StatusCode.INVALID_ARGUMENT, reason):
            wrong[name] = got
    assert wrong == {}


@contextlib.contextmanager
def _extra_ingest(stack: Stack, instance: str, **env: str) -> Iterator[grpc.Channel]:
    """Another ingest process with its own settings, beside the stack's."""
    process = stack.start_service("ingest", instance=instance, **env)
    try:
        process.wait_serving(timeout=60)
        with grpc.insecure_channel(process.address) as channel:
            yield channel
    finally:
        process.stop()


@pytest.fixture
def impatient_ingest(stack: Stack) -> Iterator[grpc.Channel]:
    with _extra_ingest(stack, "idle", IMAGEPIPE_UPLOAD_IDLE_SECONDS="2") as channel:
        yield channel


@pytest.fixture
def one_upload_ingest(stack: Stack) -> Iterator[grpc.Channel]:
    with _extra_ingest(stack, "one-upload", IMAGEPIPE_TENANT_MAX_UPLOADS="1") as channel:
        yield channel


def test_a_silent_upload_is_cut_off_and_leaves_nothing(
    impatient_ingest: grpc.Channel, stack: Stack, tenant: Tenant
) -> None:
    never = threading.Event()

    def header_then_silence() -> Iterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="slow.jpg"))
        yield ingest_pb2.UploadRequest(chunk=b"\xff\xd8\xff")
        never.wait(120)

    stub = ingest_pb2_grpc.IngestServiceStub(impatient_ingest)
    try:
        assert _refused(
            lambda: stub.Upload(header_then_silence(), metadata=tenant.metadata, timeout=60)
        ) == (grpc.StatusCode.DEADLINE_EXCEEDED, "UPLOAD_IDLE")
    finally:
        never.set()
    assert _objects(stack, tenant) == []


def test_one_tenant_cannot_hold_more_open_uploads_than_its_limit(
    one_upload_ingest: grpc.Channel,
    make_tenant: Callable[[str], Tenant],
    corpus: Path,
) -> None:
    holder, other = make_tenant("holder"), make_tenant("other")
    data = (corpus / "edge_tiny_20x20.jpg").read_bytes()
    release = threading.Event()

    def held_open() -> Iterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="held.jpg"))
        release.wait(100)
        yield ingest_pb2.UploadRequest(chunk=data)

    stub = ingest_pb2_grpc.IngestServiceStub(one_upload_ingest)

    def hold() -> Any:
        return stub.Upload.future(held_open(), metadata=holder.metadata, timeout=120)

    def probe() -> tuple[grpc.StatusCode, str]:
        # Not an image: should the probe get the slot, it is refused for that instead.
        return _refused(
            lambda: stub.Upload(
                upload_messages(b"not an image"), metadata=holder.metadata, timeout=30
            )
        )

    held = hold()
    try:
        deadline = time.monotonic() + 60
        reasons = []
        while time.monotonic() < deadline:
            if held.done():  # a probe took the slot first and this one was refused: again
                held = hold()
            code, reason = probe()
            reasons.append(reason)
            if reason == "TOO_MANY_UPLOADS":
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
                break
        assert reasons[-1] == "TOO_MANY_UPLOADS", reasons[-3:]
        # Another tenant is not held back by this one.
        assert stub.Upload(
            upload_messages(data), metadata=other.metadata, timeout=30
        ).asset.asset_id
    finally:
        release.set()
    assert held.result().asset.asset_id
    # The slot is free again once the held upload ended.
    again = stub.Upload(upload_messages(data), metadata=holder.metadata, timeout=30)
    assert again.deduplicated
