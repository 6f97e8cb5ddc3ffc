"""Domain errors become canonical codes with an ErrorInfo, in one place."""

from __future__ import annotations

import pickle

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from services.shared.errors import (
    DOMAIN,
    ImagepipeError,
    InvalidImage,
    NotFound,
    Unavailable,
    error_from_rpc,
    to_grpc_status,
)


def _details(status: grpc.Status) -> error_details_pb2.ErrorInfo:
    ((key, value),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    proto = status_pb2.Status.FromString(value)
    info = error_details_pb2.ErrorInfo()
    assert proto.details[0].Unpack(info)
    return info


def test_status_carries_code_message_and_error_info() -> None:
    status = to_grpc_status(
        InvalidImage("truncated JPEG", reason="IMAGE_TRUNCATED", metadata={"bytes": 12}), "rid-1"
    )
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "truncated JPEG"
    info = _details(status)
    assert info.reason == "IMAGE_TRUNCATED"
    assert info.domain == DOMAIN
    assert dict(info.metadata) == {"bytes": "12", "request_id": "rid-1"}


def test_errors_survive_pickling_across_processes() -> None:
    error = pickle.loads(pickle.dumps(InvalidImage("x", reason="IMAGE_CORRUPT", metadata={"a": 1})))
    assert isinstance(error, InvalidImage)
    assert (error.reason, error.metadata) == ("IMAGE_CORRUPT", {"a": "1"})


def _rpc_error(
    code: grpc.StatusCode, details: str, error: ImagepipeError | None
) -> grpc.aio.AioRpcError:
    trailing = (
        grpc.aio.Metadata(*to_grpc_status(error).trailing_metadata)
        if error
        else grpc.aio.Metadata()
    )
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details)


def test_a_dependency_error_keeps_its_code_and_reason() -> None:
    remote = _rpc_error(
        grpc.StatusCode.NOT_FOUND, "no asset x", NotFound("no asset x", reason="ASSET_NOT_FOUND")
    )
    error = error_from_rpc(remote, service="catalog")
    assert isinstance(error, NotFound)
    assert error.reason == "ASSET_NOT_FOUND"


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_an_unreachable_dependency_becomes_unavailable(code: grpc.StatusCode) -> None:
    error = error_from_rpc(_rpc_error(code, "connection refused", None), service="catalog")
    assert isinstance(error, Unavailable)
    assert "catalog is unavailable" in error.message
