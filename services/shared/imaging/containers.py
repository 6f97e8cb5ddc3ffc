"""What a file's container says about it, read from the raw bytes without decoding.

Pillow stops quietly at the end of the data in several places (a GIF's frame walk
takes end of file for the trailer, a TIFF whose strips run past the end decodes
what is there), so whether a file is whole is decided here, from the structure each
format declares: a PNG ends with IEND, a GIF with its trailer, a RIFF (WebP) and an
ISO media file (AVIF, HEIF) declare their boxes' sizes. Everything here is bounds-
checked arithmetic on bytes: a hostile file can make it answer "cut", never raise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["PngHeader", "is_cut", "png_header"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PngHeader:
    bit_depth: int
    colour_type: int  # 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA
    trns: bytes | None  # the tRNS chunk's payload, when there is one before IDAT


def _png_chunks(data: bytes) -> tuple[list[tuple[bytes, int, int]], bool]:
    """(type, start, length) of each chunk up to IEND, and whether IEND was reached
    with every chunk inside the data."""
    chunks: list[tuple[bytes, int, int]] = []
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = bytes(data[position + 4 : position + 8])
        end = position + 8 + length + 4
        if end > len(data):
            return chunks, False
        chunks.append((kind, position + 8, length))
        if kind == b"IEND":
            return chunks, True
        position = end
    return chunks, False


def png_header(data: bytes) -> PngHeader | None:
    """IHDR's bit depth and colour type and the tRNS payload; None if not a readable PNG."""
    if bytes(data[:8]) != _PNG_SIGNATURE:
        return None
    chunks, _ = _png_chunks(data)
    if not chunks or chunks[0][0] != b"IHDR" or chunks[0][2] < 13:
        return None
    _, start, _ = chunks[0]
    bit_depth, colour_type = data[start + 8], data[start + 9]
    trns = None
    for kind, start, length in chunks:
        if kind == b"IDAT":
            break  # tRNS after the image data is ignored, as decoders do
        if kind == b"tRNS":
            trns = bytes(data[start : start + length])
    return PngHeader(bit_depth, colour_type, trns)


def _gif_whole(data: bytes) -> bool:
    """Walk a GIF's blocks (GIF89a, sections 18-27) to its trailer: whole unless a block
    runs past the end of the data."""
    if len(data) < 13:
        return False
    position = 13
    if data[10] & 0x80:  # global colour table
        position += 3 << ((data[10] & 0x07) + 1)

    def sub_blocks(position: int) -> int:
        while position < len(data):
            size = data[position]
            position += 1 + size
            if size == 0:
                return position
        return -1

    while position < len(data):
        introducer = data[position]
        if introducer == 0x3B:  # trailer
            return True
        if introducer == 0x21:  # extension: label, then sub-blocks
            position = sub_blocks(position + 2)
        elif introducer == 0x2C:  # image descriptor, local colour table, LZW size, data
            if position + 10 > len(data):
                return False
            flags = data[position + 9]
            position += 10
            if flags & 0x80:
                position += 3 << ((flags & 0x07) + 1)
            position = sub_blocks(position + 1)
        else:
            return True  # garbage after the last frame: nothing of the image is missing
        if position < 0:
            return False
    # Every block is complete and only the trailer is missing, which several encoders
    # omit and every viewer accepts: nothing of the image is lost.
    return position == len(data)


def _riff_whole(data: bytes) -> bool:
    if len(data) < 12:
        return False
    size: int = struct.unpack_from("<I", data, 4)[0]
    return 8 + size <= len(data)


def _iso_media_whole(data: bytes) -> bool:
    """Every top-level box (ISO/IEC 14496-12, 4.2) lies inside the data."""
    position = 0
    while position < len(data):
        if position + 8 > len(data):
            return False
        (size,) = struct.unpack_from(">I", data, position)
        if size == 1:
            if position + 16 > len(data):
                return False
            (size,) = struct.unpack_from(">Q", data, position + 8)
        elif size == 0:
            return True  # the last box runs to the end of the file
        if size < 8 or position + size > len(data):
            return False
        position += size
    return True


# Bytes per value of each TIFF field type (TIFF 6.0, section 2; 13 is IFD).
_TIFF_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
}


def _tiff_whole(data: bytes) -> bool:
    """Every image file directory in the chain (TIFF 6.0, section 2), and every value
    its entries keep outside it, lies inside the data."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return False
    (position,) = struct.unpack_from(order + "I", data, 4)
    seen: set[int] = set()
    while position and position not in seen:
        seen.add(position)
        if position + 2 > len(data):
            return False
        (entries,) = struct.unpack_from(order + "H", data, position)
        end = position + 2 + 12 * entries
        if end + 4 > len(data):
            return False
        for entry in range(position + 2, end, 12):
            kind, count, offset = struct.unpack_from(order + "HII", data, entry + 2)
            size = _TIFF_TYPE_SIZES.get(kind, 0) * count
            if size > 4 and offset + size > len(data):
                return False
        (position,) = struct.unpack_from(order + "I", data, end)
    return True


def is_cut(data: bytes) -> bool:
    """Whether the data ends before the structure it declares does, for the
    containers whose structure says where they end; False when it cannot tell.

    JPEG and BMP declare no end to check: their pixel data is checked by decoding it,
    and TIFF strips by ``decode``.
    """
    if data.startswith(_PNG_SIGNATURE):
        return not _png_chunks(data)[1]
    if data.startswith((b"GIF87a", b"GIF89a")):
        return not _gif_whole(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return not _riff_whole(data)
    if data[4:8] == b"ftyp":
        return not _iso_media_whole(data)
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return not _tiff_whole(data)
    return False
