"""The client's one error map: every gRPC status becomes the right ImagepipeError class."""

from __future__ import annotations

import pickle

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from imagepipe.client import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    ImagepipeError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from imagepipe.client._errors import map_rpc_errors

# Written out rather than read from the module: the table under test.
EXPECTED: dict[grpc.StatusCode, type[ImagepipeError]] = {
    grpc.StatusCode.CANCELLED: ImagepipeError,
    grpc.StatusCode.UNKNOWN: ImagepipeError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: ImagepipeError,
    grpc.StatusCode.OUT_OF_RANGE: ImagepipeError,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: ImagepipeError,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: ImagepipeError,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def _rpc_error(
    code: grpc.StatusCode, details: str | None, trailer: bytes | None
) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata()
    if trailer is not None:
        trailing.add("grpc-status-details-bin", trailer)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=details)


def _status_with_info(code: grpc.StatusCode, reason: str, **metadata: str) -> bytes:
    """What imagepipe services send: a google.rpc.Status carrying an ErrorInfo."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="imagepipe", metadata=metadata))
    # google.rpc ships without type hints: bytes() pins the type down.
    return bytes(status_pb2.Status(code=code.value[0], details=[detail]).SerializeToString())


def _mapped(error: Exception, request_id: str = "") -> Exception:
    """What leaves map_rpc_errors when `error` is raised inside it."""
    try:
        with map_rpc_errors(request_id):
            raise error
    except Exception as raised:  # whatever comes out is what is under test
        return raised
    pytest.fail("map_rpc_errors swallowed the error")


def test_every_status_code_is_covered() -> None:
    assert set(EXPECTED) == set(grpc.StatusCode) - {grpc.StatusCode.OK}


@pytest.mark.parametrize("code", list(EXPECTED), ids=lambda code: code.name)
def test_each_status_becomes_its_class_with_reason_and_metadata(code: grpc.StatusCode) -> None:
    trailer = _status_with_info(code, "SOME_REASON", asset_id="a-1", request_id="rid-server")
    error = _mapped(_rpc_error(code, "what went wrong", trailer), request_id="rid-sent")

    assert type(error) is EXPECTED[code]
    assert isinstance(error, ImagepipeError)
    assert error.code == code
    assert error.message == "what went wrong"
    assert error.reason == "SOME_REASON"
    assert error.domain == "imagepipe"
    assert error.metadata == {"asset_id": "a-1", "request_id": "rid-server"}
    # The id the server logged wins over the one this client sent.
    assert error.request_id == "rid-server"
    # The gRPC error is not chained: the ImagepipeError says it all.
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL], ids=lambda code: code.name
)
def test_without_error_info_the_code_stands_in(code: grpc.StatusCode) -> None:
    error = _mapped(_rpc_error(code, None, None), request_id="rid-sent")
    assert type(error) is EXPECTED[code]
    assert isinstance(error, ImagepipeError)
    assert (error.reason, error.message, error.domain) == (code.name, code.name, "")
    assert error.metadata == {}
    assert error.request_id == "rid-sent"


def test_a_garbled_trailer_keeps_the_status() -> None:
    error = _mapped(_rpc_error(grpc.StatusCode.NOT_FOUND, "gone", b"\xff\x00 not a status"))
    assert type(error) is NotFound
    assert isinstance(error, ImagepipeError)
    assert (error.reason, error.message) == ("NOT_FOUND", "gone")


def test_other_exceptions_pass_through_unchanged() -> None:
    own = ImagepipeError(grpc.StatusCode.INTERNAL, "malformed", reason="MALFORMED_STREAM")
    assert _mapped(own) is own
    timeout = TimeoutError("local")
    assert _mapped(timeout) is timeout


def test_errors_made_by_the_client_get_the_class_of_their_code() -> None:
    missing = ImagepipeError(grpc.StatusCode.UNAUTHENTICATED, "no key", reason="API_KEY_MISSING")
    assert type(missing) is Unauthenticated
    assert repr(missing).startswith("Unauthenticated(code=UNAUTHENTICATED")
    internal = ImagepipeError(grpc.StatusCode.DATA_LOSS, "short", reason="RENDITION_TRUNCATED")
    assert type(internal) is ImagepipeError

    copy = pickle.loads(pickle.dumps(missing))
    assert type(copy) is Unauthenticated
    assert (copy.code, copy.reason, copy.message) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_MISSING",
        "no key",
    )
