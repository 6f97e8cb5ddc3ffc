"""Valid images carrying hostile metadata blocks (EXIF, XMP, IPTC, ICC), for the
upload/metadata fuzz family: the pixels are fine, so every answer but OK (or a clear
refusal of the image by the decoder) is a bug in how the blocks are read."""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, TiffImagePlugin

__all__ = ["hostile_metadata_image"]

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
_EXIF_PHOTOS = ("photo_iphone6_gps.jpg", "photo_olympus_ep3_12mp.jpg", "jpeg_adobergb_icc.jpg")
_XMP_PHOTOS = ("jpeg_adobergb_icc.jpg", "jpeg_progressive_portrait.jpg")
_R = TiffImagePlugin.IFDRational


def _corpus_block(name: str, key: str) -> bytes:
    with Image.open(CORPUS / name) as image:
        block = image.info.get(key, b"")
    return bytes(block) if isinstance(block, bytes | bytearray) else b""


def _damaged(rng: random.Random, block: bytes) -> bytes:
    """Cut, overwritten with noise, or both."""
    data = bytearray(block)
    for _ in range(rng.choice([0, 1, 4, 32])):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.5:
        data = data[: rng.randrange(len(data) + 1)]
    return bytes(data)


def _lying_tiff(rng: random.Random) -> bytes:
    """An IFD whose entries claim huge counts, offsets past the block, and loops."""
    order = rng.choice(["<", ">"])
    entries = [
        struct.pack(
            order + "HHII",
            rng.choice([0x010F, 0x0110, 0x0112, 0x8769, 0x8825, 0x829D, 0x9003]),
            rng.choice([1, 2, 3, 4, 5, 7, 10, 99]),
            rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]),
            rng.choice([0, 8, 0xFFFFFF00, 0x7FFFFFF0]),
        )
        for _ in range(rng.randint(1, 12))
    ]
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    count = rng.choice([len(entries), 0xFFFF])
    return b"Exif\x00\x00" + magic + struct.pack(order + "IH", 8, count) + b"".join(entries)


def _absurd_exif(rng: random.Random) -> bytes:
    """Well-formed EXIF whose values are NaN, zero-denominator, absurd or not text."""
    exif = Image.Exif()
    exif[0x010F] = rng.choice(["\x00\x00\x00", "A" * 60_000, "Can\u202eon"])
    exif[0x0112] = rng.choice([0, 9, 65535])
    camera = exif.get_ifd(0x8769)
    nan = _R(0, 0)
    camera[0x829D] = rng.choice([nan, _R(1, 0), _R(-1, 1), _R(2**31 - 1, 1)])
    camera[0x829A] = rng.choice([nan, _R(10**9, 1)])
    camera[0x9003] = rng.choice(["0000:00:00 00:00:00", "9999:99:99 99:99:99", "", "x" * 500])
    camera[0x9011] = rng.choice(["+99:99", "-00:61", "\x00"])
    gps = exif.get_ifd(0x8825)
    gps[1], gps[3] = rng.choice(["N", "S", "\x00"]), rng.choice(["E", "W", ""])
    gps[2] = (nan, nan, nan)
    gps[4] = (_R(500, 1), _R(0, 1), _R(0, 1))
    gps[6] = rng.choice([nan, _R(10**12, 1)])
    return exif.tobytes()


def _exif(rng: random.Random) -> tuple[str, dict[str, Any]]:
    kind = rng.choice(["damaged", "lying", "absurd"])
    if kind == "damaged":
        block = _damaged(rng, _corpus_block(rng.choice(_EXIF_PHOTOS), "exif"))
        return "exif-damaged", {"exif": b"Exif\x00\x00" + block[6:] if block else b""}
    if kind == "lying":
        return "exif-lying", {"exif": _lying_tiff(rng)}
    return "exif-absurd", {"exif": _absurd_exif(rng)}


_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&%s;" % bytes([97 + i])) * 10) for i in range(8)
    )
    + b']><x:xmpmeta xmlns:x="adobe:ns:meta/"><t>&i;</t></x:xmpmeta>'
)


def _xmp(rng: random.Random) -> tuple[str, dict[str, Any]]:
    makers: dict[str, Callable[[], bytes]] = {
        "damaged": lambda: _damaged(rng, _corpus_block(rng.choice(_XMP_PHOTOS), "xmp")),
        "noise": lambda: rng.randbytes(rng.choice([1, 100, 60_000])),
        "laughs": lambda: _LAUGHS,
        "external": lambda: b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        "deep": lambda: b"<a>" * 20_000 + b"</a>" * 20_000,
        "controls": lambda: (
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
            b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"'
            b' dc:title="\xff\xfe\xc0\x80' + b"t" * 50_000 + b'"/></rdf:RDF></x:xmpmeta>'
        ),
    }
    kind = rng.choice(sorted(makers))
    return f"xmp-{kind}", {"xmp": makers[kind]()}


def _iptc(rng: random.Random) -> tuple[str, dict[str, Any]]:
    records = b"".join(
        bytes([rng.choice([0x1C, 0x1C, 0x1D]), rng.choice([1, 2, 3, 8, 99])])
        + bytes([rng.choice([5, 25, 55, 60, 80, 116, 120, 10])])
        + rng.choice([struct.pack(">H", 4), b"\x80\x04", b"\x84\xff\xff\xff\xff", b"\xff\xff"])
        + rng.randbytes(rng.choice([0, 4, 300]))
        for _ in range(rng.randint(1, 20))
    )
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", rng.choice([len(records), 2**31]))
    return "iptc", {"app13": b"Photoshop 3.0\x00" + resource + records}


def _icc(rng: random.Random) -> tuple[str, dict[str, Any]]:
    return "icc", {"icc_profile": rng.randbytes(rng.choice([4, 128, 3000]))}


def hostile_metadata_image(rng: random.Random, tag: str) -> tuple[str, bytes]:
    """(what is hostile, a JPEG made unique by `tag`, carrying it)."""
    kind, blocks = rng.choice([_exif, _exif, _xmp, _iptc, _icc])(rng)
    image = Image.new("RGB", (24, 16), (rng.randrange(256), 90, 160))
    out = io.BytesIO()
    # One APP1 segment holds at most 64 KiB: longer blocks are cut to fit.
    options: dict[str, Any] = {k: v[:65_000] for k, v in blocks.items() if k != "app13"}
    if rng.random() < 0.5:
        options["dpi"] = (72, 72)  # with a JFIF density Pillow leaves the EXIF to us
    image.save(out, "JPEG", comment=tag.encode(), **options)
    data = out.getvalue()
    if "app13" in blocks:
        payload = blocks["app13"][:65_000]
        data = data[:2] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    return kind, data
