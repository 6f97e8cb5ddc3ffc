"""Request messages as they arrive: parsed and checked before any handler sees them.

Every handler registered on a server gets its request deserializer wrapped here
(``checked_deserializer``), so bytes that are not a valid message (garbage, invalid
UTF-8 in a string field) and strings PostgreSQL cannot store (a NUL character) are
refused the same way on every RPC of every service: ``INVALID_ARGUMENT`` with an
``ErrorInfo`` reason, one warning line, no traceback.

A deserializer cannot refuse a call itself: grpc aio answers an exception raised
there with ``UNKNOWN`` (unary requests) or hands it to the handler mid-stream. So the
wrapper returns a ``RefusedRequest`` in the message's place, and the server's
handler wrapper raises its error inside the call, where domain errors become status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from services.shared.errors import InvalidArgument

__all__ = ["RefusedRequest", "checked_deserializer", "nul_fields"]

Deserializer = Callable[[bytes], Any]


class RefusedRequest:
    """Stands in for a request message that must not reach the handler."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidArgument) -> None:
        self.error = error


def checked_deserializer(deserialize: Deserializer | None, type_name: str) -> Deserializer:
    """`deserialize`, answering a RefusedRequest instead of raising or passing on a NUL."""

    def parse(data: bytes) -> Any:
        if deserialize is None:
            return data
        try:
            message = deserialize(data)
        except DecodeError as error:
            return RefusedRequest(
                InvalidArgument(
                    f"the request is not a valid {type_name} message ({error}); "
                    "send it through a client generated from the imagepipe protos",
                    reason="MALFORMED_REQUEST",
                    metadata={"message_type": type_name},
                )
            )
        path = next(nul_fields(message), None) if isinstance(message, Message) else None
        if path is not None:
            return RefusedRequest(
                InvalidArgument(
                    f"{path} contains a NUL character (U+0000), which no text field may hold; "
                    "remove it",
                    reason="NUL_CHARACTER",
                    metadata={"field": path},
                )
            )
        return message

    return parse


def nul_fields(message: Message, prefix: str = "") -> Iterator[str]:
    """Paths of every string in `message` (nested, repeated, map keys and values)
    that contains a NUL character."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            items = value if field.is_repeated else [value]
            if any("\x00" in item for item in items):
                yield path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                yield from _nul_map(entry, value, path)
            elif field.is_repeated:
                for index, item in enumerate(value):
                    yield from nul_fields(item, f"{path}[{index}].")
            else:
                yield from nul_fields(value, f"{path}.")


def _nul_map(entry: Any, mapping: Any, path: str) -> Iterator[str]:
    key_is_text = entry.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING
    value_type = entry.fields_by_name["value"].type
    for key, value in mapping.items():
        if key_is_text and "\x00" in key:
            yield f"{path} key"
        elif value_type == FieldDescriptor.TYPE_STRING and "\x00" in value:
            yield f"{path}[{key!r}]"
        elif value_type == FieldDescriptor.TYPE_MESSAGE:
            yield from nul_fields(value, f"{path}[{key!r}].")
