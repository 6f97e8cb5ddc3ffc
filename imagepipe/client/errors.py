"""The one error type of the client, built from a gRPC status and its ErrorInfo.

Services attach a ``google.rpc.ErrorInfo`` (domain ``imagepipe``) to every error they
report on purpose, so callers branch on ``reason`` (``IMAGE_TRUNCATED``,
``UPLOAD_TOO_LARGE``, ...) rather than on the message, which may change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = ["ImagepipeError"]

_DETAILS_KEY = "grpc-status-details-bin"


class ImagepipeError(Exception):
    """A call failed: the canonical status code, the server's reason and the request id.

    ``reason`` falls back to the code name when the failure carries no ErrorInfo (a
    deadline that expired on the client, a server that could not be reached), so it is
    never empty.
    """

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
            f"ImagepipeError(code={self.code_name}, reason={self.reason!r}, "
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
        return cls(
            code,
            error.details() or code.name,
            reason=info.reason if info is not None else "",
            domain=info.domain if info is not None else "",
            metadata=metadata,
            request_id=metadata.get("request_id") or request_id,
        )


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
