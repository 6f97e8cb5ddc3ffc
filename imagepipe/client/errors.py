"""The client's errors: one class per canonical status, built from a status and its ErrorInfo.

Services attach a ``google.rpc.ErrorInfo`` (domain ``imagepipe``) to every error they
report on purpose, so callers branch on ``reason`` (``IMAGE_TRUNCATED``,
``UPLOAD_TOO_LARGE``, ...) rather than on the message, which may change. The classes
mirror the services' own tree, so ``except NotFound`` reads the same on both sides::

    ImagepipeError                      any other code (INTERNAL, DATA_LOSS, ...)
    ├── InvalidArgument                 INVALID_ARGUMENT
    ├── NotFound                        NOT_FOUND
    ├── AlreadyExists                   ALREADY_EXISTS
    ├── FailedPrecondition              FAILED_PRECONDITION
    ├── ResourceExhausted               RESOURCE_EXHAUSTED
    ├── Unauthenticated                 UNAUTHENTICATED
    ├── PermissionDenied                PERMISSION_DENIED
    ├── Unimplemented                   UNIMPLEMENTED
    ├── DeadlineExceeded                DEADLINE_EXCEEDED
    └── Unavailable                     UNAVAILABLE (retry later)

``ImagepipeError(code, message, ...)`` builds the class of its code, the way
``OSError(errno.ENOENT, ...)`` builds a FileNotFoundError, so errors the client makes
itself (a missing key, a wait that timed out) are caught by the same ``except``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self, cast

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "ImagepipeError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_class",
    "error_info",
]

_DETAILS_KEY = "grpc-status-details-bin"


class ImagepipeError(Exception):
    """A call failed: the canonical status code, the server's reason and the request id.

    ``reason`` falls back to the code name when the failure carries no ErrorInfo (a
    deadline that expired on the client, a server that could not be reached), so it is
    never empty.
    """

    def __new__(cls, code: grpc.StatusCode, *args: Any, **kwargs: Any) -> Self:
        chosen = error_class(code) if cls is ImagepipeError else cls
        return cast(Self, super().__new__(chosen))

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or code.name
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.request_id = request_id or self.metadata.get("request_id", "")

    @property
    def code_name(self) -> str:
        """The status code's canonical name, e.g. ``INVALID_ARGUMENT``."""
        return self.code.name

    def __str__(self) -> str:
        text = f"{self.code_name}: {self.message}"
        if self.reason != self.code_name:
            text += f" (reason {self.reason})"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code_name}, reason={self.reason!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Exceptions pickle through their args; keep every field across processes.
        fields = {
            "reason": self.reason,
            "domain": self.domain,
            "metadata": self.metadata,
            "request_id": self.request_id,
        }
        return (_rebuild, (self.code, self.message, fields))

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError, request_id: str = "") -> ImagepipeError:
        """Map a failed call, reading the ErrorInfo out of the trailing metadata.

        The server echoes the request id in the ErrorInfo metadata; that one wins over
        the id this client sent because it is what the server's logs carry.
        """
        code = error.code()
        info = error_info(error.trailing_metadata() or ())
        metadata = dict(info.metadata) if info is not None else {}
        return ImagepipeError(
            code,
            error.details() or code.name,
            reason=info.reason if info is not None else "",
            domain=info.domain if info is not None else "",
            metadata=metadata,
            request_id=metadata.get("request_id") or request_id,
        )


class InvalidArgument(ImagepipeError):
    """INVALID_ARGUMENT: the request (or the image in it) is refused; see ``reason``."""


class NotFound(ImagepipeError):
    """NOT_FOUND: no such asset, rendition, job or tenant (or not the caller's)."""


class AlreadyExists(ImagepipeError):
    """ALREADY_EXISTS: e.g. a tenant name that is taken."""


class FailedPrecondition(ImagepipeError):
    """FAILED_PRECONDITION: not possible in the resource's current state."""


class ResourceExhausted(ImagepipeError):
    """RESOURCE_EXHAUSTED: a size cap or a quota was passed."""


class Unauthenticated(ImagepipeError):
    """UNAUTHENTICATED: no key, or a wrong or revoked one."""


class PermissionDenied(ImagepipeError):
    """PERMISSION_DENIED: the key may not call this."""


class Unimplemented(ImagepipeError):
    """UNIMPLEMENTED: the server does not offer this call (an older server)."""


class DeadlineExceeded(ImagepipeError):
    """DEADLINE_EXCEEDED: no answer (or no ready asset) in time."""


class Unavailable(ImagepipeError):
    """UNAVAILABLE: the service or one of its dependencies is down; retry later."""


_BY_CODE: Mapping[grpc.StatusCode, type[ImagepipeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def error_class(code: grpc.StatusCode) -> type[ImagepipeError]:
    """The class errors with `code` are raised as (ImagepipeError for codes without one)."""
    return _BY_CODE.get(code, ImagepipeError)


def _rebuild(code: grpc.StatusCode, message: str, fields: dict[str, Any]) -> ImagepipeError:
    return ImagepipeError(code, message, **fields)


def error_info(
    trailing_metadata: Iterable[tuple[str, str | bytes]],
) -> error_details_pb2.ErrorInfo | None:
    """The first ErrorInfo in a ``grpc-status-details-bin`` trailer, if any."""
    for key, value in trailing_metadata:
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            # A garbled trailer must not hide the status code the call did return.
            return None
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info
    return None
