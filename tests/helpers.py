"""Helpers for tests that talk to the running services through the generated stubs."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from PIL import Image

from devstack import Stack
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
)

__all__ = [
    "Services",
    "Tenant",
    "error_info",
    "upload",
    "upload_messages",
    "wait_for_status",
]

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    key: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)


@dataclass
class Services:
    stack: Stack
    ingest: grpc.Channel
    catalog: grpc.Channel
    renderer: grpc.Channel
    quality: grpc.Channel

    @classmethod
    def open(cls, stack: Stack) -> Services:
        return cls(
            stack=stack,
            **{name: grpc.insecure_channel(stack.address(name)) for name in stack.ports},
        )

    def channel(self, name: str) -> grpc.Channel:
        channel: grpc.Channel = getattr(self, name)
        return channel

    def close(self) -> None:
        for name in self.stack.ports:
            self.channel(name).close()

    @property
    def internal_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.stack.internal_token}"),)

    @property
    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.stack.admin_key}"),)


def upload_messages(
    data: bytes, filename: str = "image.jpg", chunk: int = CHUNK, **labels: str
) -> Iterator[ingest_pb2.UploadRequest]:
    yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename=filename, labels=labels))
    for start in range(0, len(data), chunk):
        yield ingest_pb2.UploadRequest(chunk=data[start : start + chunk])


def upload_file(path: Path) -> Iterator[ingest_pb2.UploadRequest]:
    return upload_messages(path.read_bytes(), filename=path.name)


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo detail of a failed call (fails the test if there is none)."""
    trailing: Any = error.trailing_metadata()
    for key, value in trailing or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError(f"no ErrorInfo in {error!r}")


def random_uuid() -> str:
    return str(uuid.uuid4())


def wait_for_status(
    services: Services,
    tenant: Tenant,
    asset_id: str,
    timeout: float = 30.0,
    done: tuple[int, ...] = (common_pb2.ASSET_STATUS_READY, common_pb2.ASSET_STATUS_FAILED),
) -> common_pb2.Asset:
    """Poll GetAsset until the asset reaches one of `done` (fails the test on timeout)."""
    stub = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    deadline = time.monotonic() + timeout
    while True:
        asset = stub.GetAsset(
            catalog_pb2.GetAssetRequest(asset_id=asset_id), metadata=tenant.metadata, timeout=10
        ).asset
        if asset.status in done:
            return asset
        if time.monotonic() > deadline:
            raise AssertionError(
                f"asset {asset_id} still {common_pb2.AssetStatus.Name(asset.status)} "
                f"after {timeout:g} s"
            )
        time.sleep(0.1)


def register_directly(
    services: Services,
    tenant: Tenant,
    *,
    content_hash: str = "",
    perceptual_hash: str = "00000000000000ff",
    width: int = 1,
    height: int = 1,
    size_bytes: int = 1,
) -> catalog_internal_pb2.RegisterAssetResponse:
    """Register a PNG asset and its job through the internal API, as ingest would,
    without storing an original (unless the caller put one at its key)."""
    digest = content_hash or hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    internal = catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)
    response: catalog_internal_pb2.RegisterAssetResponse = internal.RegisterAsset(
        catalog_internal_pb2.RegisterAssetRequest(
            tenant_id=tenant.tenant_id,
            content_hash=digest,
            perceptual_hash=perceptual_hash,
            content_type="image/png",
            format=common_pb2.IMAGE_FORMAT_PNG,
            width=width,
            height=height,
            size_bytes=size_bytes,
            original_key=f"originals/{tenant.tenant_id}/{digest}",
        ),
        metadata=services.internal_metadata,
    )
    return response


def upload(
    services: Services, tenant: Tenant, data: bytes, filename: str = "image.jpg"
) -> ingest_pb2.UploadResponse:
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    response: ingest_pb2.UploadResponse = stub.Upload(
        upload_messages(data, filename), metadata=tenant.metadata, timeout=60
    )
    return response


def secrets_in_logs(log_dir: Path, secrets: dict[str, str]) -> list[str]:
    """`<secret name> in <log file>` for every secret value found in any log file."""
    found = []
    for log_file in sorted(log_dir.glob("*.log")):
        text = log_file.read_text(errors="replace")
        found += [f"{name} in {log_file.name}" for name, value in secrets.items() if value in text]
    return found


def stack_secrets(stack: Stack) -> dict[str, str]:
    """The secrets a stack was configured with (what must never be logged)."""
    return {
        "admin key": stack.admin_key,
        "internal token": stack.internal_token,
        "S3 secret key": stack.s3.secret,
        "key pepper": stack.key_pepper,
    }


def downsized_jpeg(path: Path, size: tuple[int, int]) -> bytes:
    """A corpus photo as a JPEG of `size` (q90): a render costs tens of ms, like a phone
    upload, so tests can queue hundreds."""
    with Image.open(path) as image:
        image.draft("RGB", size)
        small = image.convert("RGB").resize(size)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
