"""The seam between the delivery core and an HTTP server: a request in, a reply out.

Neither side knows the other's framework. A server adapter turns its request into a
`Request`, awaits `DeliveryCore.handle`, and sends the `Reply`: status, headers and a
body that is bytes, an `ObjectStream` to copy out piece by piece, or nothing (HEAD,
304). A server must close an `ObjectStream` whether or not it was sent in full: that
releases the object store's connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ObjectStream", "Reply", "Request", "Route", "error_reply", "json_reply"]

Route = Literal["negotiated", "format", "health", "other"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query, as sent (not percent-decoded)
    query: Mapping[str, str]
    headers: Mapping[str, str]  # looked up by lower-case name

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class ObjectStream:
    """An object's bytes (or a range of them) from the store, already opened.

    The first piece is read before the reply is made, so an object missing from the
    store is a 404 rather than a reply cut short after its headers.
    """

    def __init__(self, first: bytes, rest: AsyncIterator[bytes], length: int) -> None:
        self.length = length
        self._first: bytes | None = first
        self._rest = rest

    def __aiter__(self) -> ObjectStream:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        self._first = None
        closer = getattr(self._rest, "aclose", None)
        if closer is not None:
            await closer()


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | ObjectStream | None = None
    route: Route = "other"


def json_reply(status: int, payload: object, headers: Mapping[str, str] | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    fixed = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    return Reply(status, {**fixed, **(headers or {})}, body)


def error_reply(
    status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
) -> Reply:
    """The JSON body every refusal carries: {"error": {"status", "reason", "message"}}."""
    payload = {"error": {"status": status, "reason": reason, "message": message}}
    return json_reply(status, payload, headers)
