"""Domain errors and their one mapping to gRPC status + google.rpc.ErrorInfo.

Handlers raise these; the server interceptor turns them into a status with an
``ErrorInfo{reason, domain="imagepipe", metadata}`` detail, so clients branch on
``reason`` instead of parsing messages::

    ImagepipeError                      (INTERNAL - a bug)
    ├── InvalidArgument                 INVALID_ARGUMENT
    │   └── InvalidImage                INVALID_ARGUMENT, reason IMAGE_*
    ├── NotFound                        NOT_FOUND
    ├── AlreadyExists                   ALREADY_EXISTS
    ├── FailedPrecondition              FAILED_PRECONDITION
    ├── ResourceExhausted               RESOURCE_EXHAUSTED
    ├── Unauthenticated                 UNAUTHENTICATED
    ├── PermissionDenied                PERMISSION_DENIED
    ├── Unimplemented                   UNIMPLEMENTED
    ├── DeadlineExceeded                DEADLINE_EXCEEDED
    └── Unavailable                     UNAVAILABLE (a dependency is down; retry)
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "DOMAIN",
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "ImagepipeError",
    "InvalidArgument",
    "InvalidImage",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_from_rpc",
    "to_grpc_status",
]

DOMAIN = "imagepipe"


class ImagepipeError(Exception):
    """Base of every error a service reports on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str | int | float] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}

    def __reduce__(self) -> tuple[object, ...]:
        # Keep reason and metadata when raised in a worker process.
        return (_rebuild, (type(self), self.message, self.reason, self.metadata))


def _rebuild(
    cls: type[ImagepipeError], message: str, reason: str, metadata: dict[str, str]
) -> ImagepipeError:
    return cls(message, reason=reason, metadata=metadata)


class InvalidArgument(ImagepipeError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class InvalidImage(InvalidArgument):
    """The bytes are not an image we accept; reason says why (IMAGE_TRUNCATED, ...)."""

    default_reason = "IMAGE_INVALID"


class NotFound(ImagepipeError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(ImagepipeError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(ImagepipeError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class ResourceExhausted(ImagepipeError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Unauthenticated(ImagepipeError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(ImagepipeError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unimplemented(ImagepipeError):
    code = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "NOT_IMPLEMENTED"


class DeadlineExceeded(ImagepipeError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Unavailable(ImagepipeError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "DEPENDENCY_UNAVAILABLE"


_BY_CODE: dict[grpc.StatusCode, type[ImagepipeError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Unimplemented,
        DeadlineExceeded,
        Unavailable,
    )
}


def to_grpc_status(error: ImagepipeError, request_id: str = "") -> grpc.Status:
    """The status an error is reported with: canonical code, message, ErrorInfo."""
    metadata = dict(error.metadata)
    if request_id:
        metadata.setdefault("request_id", request_id)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=error.code.value[0], message=error.message, details=[detail])
    return rpc_status.to_status(status)


def error_from_rpc(error: grpc.aio.AioRpcError, *, service: str) -> ImagepipeError:
    """Re-raise another service's error as ours, keeping code, reason and metadata.

    A dependency that cannot be reached becomes Unavailable naming the service, so
    the caller's client sees a retryable status rather than our internals.
    """
    code = error.code()
    info = _error_info(error)
    message = error.details() or code.name
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and info is None:
        return Unavailable(f"{service} is unavailable: {message}", metadata={"service": service})
    cls = _BY_CODE.get(code, ImagepipeError)
    return cls(
        message,
        reason=info.reason if info else None,
        metadata=dict(info.metadata) if info else None,
    )


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info
    return None
