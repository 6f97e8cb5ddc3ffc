"""Protobuf wire encoding by hand, for bytes the protobuf library refuses to produce.

The library will not put invalid UTF-8 into a string field, nor produce a message
that does not parse; a hostile client can send both, so the fuzz builds them here.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "LENGTH",
    "VARINT",
    "is_valid",
    "key",
    "length_delimited",
    "map_entry",
    "varint",
    "varint_field",
]

VARINT = 0
LENGTH = 2


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as their 64-bit two's complement (as int32 is sent)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def length_delimited(field: int, body: bytes) -> bytes:
    return key(field, LENGTH) + varint(len(body)) + body


def varint_field(field: int, value: int) -> bytes:
    return key(field, VARINT) + varint(value)


def map_entry(field: int, pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Entries of a map<string, string> field with raw key and value bytes."""
    return b"".join(
        length_delimited(field, length_delimited(1, k) + length_delimited(2, v)) for k, v in pairs
    )


def is_valid(message_type: type, data: bytes) -> bool:
    """Whether the protobuf runtime (the same one the services use) parses `data`."""
    try:
        message_type.FromString(data)  # type: ignore[attr-defined]
    except Exception:  # DecodeError, or RuntimeWarning-free parse errors of the runtime
        return False
    return True
