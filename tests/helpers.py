"""Helpers for tests that talk to the running services through the generated stubs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from devstack import Stack
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc

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


def upload(
    services: Services, tenant: Tenant, data: bytes, filename: str = "image.jpg"
) -> ingest_pb2.UploadResponse:
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    response: ingest_pb2.UploadResponse = stub.Upload(
        upload_messages(data, filename), metadata=tenant.metadata, timeout=60
    )
    return response
