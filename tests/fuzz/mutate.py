"""Seed images and their mutations: cut, flipped, and re-arranged chunk by chunk.

Every corpus file (tests/corpus/manifest.json, accepted and refused, small and over
60 KB) is a seed, plus a few small multi-frame files generated here (the corpus has
no multi-frame TIFF and only a 1 MB animated GIF). The structural mutators know just
enough of each container to move whole units around: PNG chunks, JPEG segments,
RIFF (WebP) chunks, GIF blocks, TIFF directory entries and ISO-BMFF (AVIF/HEIF) boxes.
A mutation that keeps the container well-formed reaches the decoder rather than the
format sniffer, which is where the interesting failures are.
"""

from __future__ import annotations

import functools
import io
import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["Seed", "mutate", "seeds"]

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SMALL = 60_000
LARGE = 1_100_000


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    accepted: bool  # what the manifest expects of the unmutated file

    @property
    def size_class(self) -> str:
        if len(self.data) <= SMALL:
            return "small"
        return "large" if len(self.data) > LARGE else "medium"


def _frames(size: tuple[int, int], count: int) -> list[Image.Image]:
    """RGB gradients, different in each frame, so no encoder collapses the frames."""
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    return [
        Image.fromarray(
            np.stack(
                [(x * 7 + y * 3 + index * 40 + c * 80) % 256 for c in range(3)], axis=-1
            ).astype(np.uint8)
        )
        for index in range(count)
    ]


def _save(frames: list[Image.Image], fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=len(frames) > 1, append_images=frames[1:], **options)
    return buffer.getvalue()


def _generated() -> dict[str, bytes]:
    rgb = _frames((64, 48), 4)
    return {
        "gen_tiff_4_frames_raw.tif": _save(rgb, "TIFF"),
        "gen_tiff_3_frames_deflate.tif": _save(rgb[:3], "TIFF", compression="tiff_adobe_deflate"),
        "gen_tiff_cmyk_2_frames.tif": _save([f.convert("CMYK") for f in rgb[:2]], "TIFF"),
        "gen_gif_4_frames.gif": _save(
            [f.convert("P") for f in rgb], "GIF", duration=50, loop=0, disposal=2
        ),
        "gen_webp_4_frames.webp": _save(rgb, "WEBP", duration=50, loop=0, lossless=True),
        "gen_apng_3_frames.png": _save(rgb[:3], "PNG", duration=50, loop=0),
        "gen_png_grey16.png": _save([Image.new("I;16", (32, 32), 40000)], "PNG"),
    }


@functools.cache
def seeds() -> tuple[Seed, ...]:
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    found = [
        Seed(entry["file"], (CORPUS / entry["file"]).read_bytes(), entry["expect"] == "accept")
        for entry in manifest
    ]
    found += [Seed(name, data, True) for name, data in sorted(_generated().items())]
    return tuple(found)


def pick_seed(rng: random.Random) -> Seed:
    """Small files most often (fast), but every size class and format regularly."""
    by_class: dict[str, list[Seed]] = {}
    for seed in seeds():
        by_class.setdefault(seed.size_class, []).append(seed)
    size_class = rng.choices(["small", "medium", "large"], weights=[50, 40, 10])[0]
    return rng.choice(by_class[size_class])


# Containers ---------------------------------------------------------------------------
# Each splits a file into (prefix, units, suffix) and joins it back; the mutators below
# only ever reorder, drop, duplicate or rewrite units.

Split = tuple[bytes, list[bytes], bytes]


def _png_units(data: bytes) -> Split | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    units, at = [], 8
    while at + 12 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        end = at + 12 + length
        if end > len(data):
            break
        units.append(data[at:end])
        at = end
    return data[:8], units, data[at:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _jpeg_units(data: bytes) -> Split | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    units, at = [], 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker == 0xDA:  # start of scan: the rest (entropy-coded data) is one unit
            units.append(data[at:])
            return data[:2], units, b""
        units.append(data[at : at + 2 + length])
        at += 2 + length
    return data[:2], units, data[at:]


def _riff_units(data: bytes) -> Split | None:
    if not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
        return None
    units, at = [], 12
    while at + 8 <= len(data):
        (length,) = struct.unpack("<I", data[at + 4 : at + 8])
        end = at + 8 + length + (length & 1)
        if end > len(data):
            break
        units.append(data[at:end])
        at = end
    return data[:12], units, data[at:]


def _gif_units(data: bytes) -> Split | None:
    if not data.startswith(b"GIF8") or len(data) < 13:
        return None
    header_end = 13 + ((3 << ((data[10] & 7) + 1)) if data[10] & 0x80 else 0)

    def sub_blocks(at: int) -> int:
        while at < len(data) and data[at]:
            at += data[at] + 1
        return at + 1

    units, at = [], header_end
    while at < len(data):
        start = at
        if data[at] == 0x21:  # extension: label, then sub-blocks
            at = sub_blocks(at + 2)
        elif data[at] == 0x2C and at + 10 <= len(data):  # image: descriptor, table, LZW data
            flags = data[at + 9]
            at += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
            at = sub_blocks(at + 1)
        else:
            break
        if at > len(data):
            at = start
            break
        units.append(data[start:at])
    return data[:header_end], units, data[at:]


def _bmff_units(data: bytes) -> Split | None:
    if data[4:8] != b"ftyp":
        return None
    units, at = [], 0
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if length < 8 or at + length > len(data):
            break
        units.append(data[at : at + length])
        at += length
    return b"", units, data[at:]


SPLITTERS: dict[str, Callable[[bytes], Split | None]] = {
    "png": _png_units,
    "jpeg": _jpeg_units,
    "riff": _riff_units,
    "gif": _gif_units,
    "bmff": _bmff_units,
}


def _container(data: bytes) -> tuple[str, Split] | None:
    for name, split in SPLITTERS.items():
        parts = split(data)
        if parts is not None and len(parts[1]) >= 1:
            return name, parts
    return None


def _restructure(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    found = _container(data)
    if found is None:
        return _tiff_entry(rng, data)
    name, (prefix, units, suffix) = found
    units = list(units)
    operation = rng.choice(["swap", "drop", "duplicate", "move", "cut-unit"])
    i = rng.randrange(len(units))
    j = rng.randrange(len(units))
    if operation == "swap":
        units[i], units[j] = units[j], units[i]
    elif operation == "drop" and len(units) > 1:
        del units[i]
    elif operation == "duplicate":
        units.insert(j, units[i])
    elif operation == "move":
        units.insert(j, units.pop(i))
    else:  # keep the unit's header, cut its body short
        units[i] = units[i][: rng.randrange(1, max(2, len(units[i])))]
    if name == "riff":  # keep the RIFF size right so the chunks themselves are parsed
        body = b"".join(units) + suffix
        prefix = b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP"
    return f"{name}-{operation}", prefix + b"".join(units) + suffix


def _tiff_entry(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """Rewrite one entry of the first directory of a TIFF (type, count or value)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        return _flip(rng, data)
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd + 2 > len(data):
        return _flip(rng, data)
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    if count == 0 or ifd + 2 + 12 * count > len(data):
        return _flip(rng, data)
    entry = ifd + 2 + 12 * rng.randrange(count)
    field = rng.choice(["type", "count", "value"])
    out = bytearray(data)
    if field == "type":
        out[entry + 2 : entry + 4] = struct.pack(order + "H", rng.choice([0, 3, 4, 5, 13, 99]))
    else:
        at = entry + (4 if field == "count" else 8)
        value = rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(data), rng.getrandbits(32)])
        out[at : at + 4] = struct.pack(order + "I", value)
    return f"tiff-{field}", bytes(out)


# Byte-level mutators ------------------------------------------------------------------


def _truncate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    if len(data) < 2:
        return "truncate", b""
    # Cuts near the end (inside a later frame, or just the trailer) are the tricky ones.
    if rng.random() < 0.4:
        cut = len(data) - 1 - int(rng.random() ** 3 * (len(data) - 1))
    else:
        cut = rng.randrange(len(data))
    return "truncate", data[:cut]


def _flip(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    if not data:
        return "flip", data
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return "flip", bytes(out)


def _flip_png_data(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """Flip a byte inside a PNG chunk body and fix the CRC: only the decoder can tell."""
    parts = _png_units(data)
    if parts is None or not parts[1]:
        return _flip(rng, data)
    prefix, units, suffix = parts
    candidates = [i for i, u in enumerate(units) if len(u) > 12]
    if not candidates:
        return _flip(rng, data)
    i = rng.choice(candidates)
    kind, body = units[i][4:8], bytearray(units[i][8:-4])
    body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
    units[i] = png_chunk(kind, bytes(body))
    return f"png-flip-{kind.decode('latin-1')}", prefix + b"".join(units) + suffix


def _dimensions(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """The same file declaring other dimensions (checksums kept valid)."""
    width = rng.choice([0, 1, 65_535, 100_000, 2**31 - 1])
    height = rng.choice([0, 1, 65_535, 100_000, 2**31 - 1])
    if data.startswith(b"\x89PNG") and len(data) >= 33:
        ihdr = bytearray(data[16:29])
        ihdr[0:8] = struct.pack(">II", width, height)
        return "dimensions", data[:8] + png_chunk(b"IHDR", bytes(ihdr)) + data[33:]
    if data.startswith(b"GIF8"):
        return "dimensions", data[:6] + struct.pack("<HH", width & 0xFFFF, height & 0xFFFF) + (
            data[10:]
        )
    if data.startswith(b"BM"):
        return "dimensions", data[:18] + struct.pack("<ii", width, height) + data[26:]
    if data.startswith(b"\xff\xd8"):
        for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
            at = data.find(marker)
            if at > 0:
                size = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
                return "dimensions", data[: at + 5] + size + data[at + 9 :]
    return _flip(rng, data)


def _splice(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    other = pick_seed(rng).data
    cut = rng.randrange(min(len(data), 1024) + 1)
    return "splice", data[:cut] + other[rng.randrange(len(other) + 1) :]


MUTATORS: list[tuple[Callable[[random.Random, bytes], tuple[str, bytes]], int]] = [
    (_truncate, 30),
    (_flip, 20),
    (_flip_png_data, 8),
    (_restructure, 30),
    (_dimensions, 5),
    (_splice, 7),
]


def mutate(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    """One to three mutations of a seed; returns their names and the bytes."""
    data = seed.data
    names = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        mutator = rng.choices([m for m, _ in MUTATORS], weights=[w for _, w in MUTATORS])[0]
        name, data = mutator(rng, data)
        names.append(name)
    return "+".join(names), data
