"""The one place a failed gRPC call becomes an ImagepipeError (cf. httpx's map_exceptions).

Every RPC the client makes runs inside :func:`map_rpc_errors`; code that must react to
a particular status (retry on UNAVAILABLE, fall back on UNIMPLEMENTED) catches the
mapped class (``Unavailable``, ``Unimplemented``), never ``grpc.aio.AioRpcError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from imagepipe.client.errors import ImagepipeError

__all__ = ["malformed_stream", "map_rpc_errors"]


@contextmanager
def map_rpc_errors(request_id: str = "") -> Iterator[None]:
    """Re-raise a failed call as the ImagepipeError subclass of its status code.

    Reason, domain and metadata come from the call's ErrorInfo; `request_id` is the
    id this client sent, used when the server did not echo one. The gRPC exception is
    dropped from the chain: it repeats what the ImagepipeError says.
    """
    try:
        yield
    except grpc.aio.AioRpcError as error:
        raise ImagepipeError.from_rpc_error(error, request_id) from None


def malformed_stream(message: str, request_id: str) -> ImagepipeError:
    """A response stream that broke the contract (no metadata first, bytes missing)."""
    return ImagepipeError(
        grpc.StatusCode.INTERNAL, message, reason="MALFORMED_STREAM", request_id=request_id
    )
