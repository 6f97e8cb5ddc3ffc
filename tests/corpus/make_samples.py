"""Make the generated corpus samples of issue 15 from files already in the corpus.

Run from the repository root: `.venv/bin/python tests/corpus/make_samples.py`. The
output is deterministic (fixed seeds, no timestamps), so running it again rewrites
identical files. What each file is for is in manifest.json and README.md.

- PNG colour keys (tRNS on grey and RGB images, 8 and 16 bits per sample), written
  by hand (Pillow cannot write 16-bit RGB, and sets no key on 16-bit grey): a crop of
  orient_Landscape_1.jpg with an ellipse set to the key colour.
- CMYK without an ICC profile: the YCCK JPEG jpeg_cmyk_swop_icc.jpg with its
  ICC_PROFILE segments cut out (same compressed data), the same pixels saved as a plain
  Adobe CMYK JPEG and as a CMYK TIFF.
- Damaged files: multi-frame GIF, TIFF and WebP cut short, and a PNG with one byte of
  its compressed data flipped.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

CORPUS = Path(__file__).resolve().parent


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _png(samples: NDArray[np.uint16], colour_type: int, depth: int, trns: bytes) -> bytes:
    """A PNG (filter type 0 on every row) of `samples`, big-endian at 16 bits."""
    height, width = samples.shape[:2]
    dtype = ">u2" if depth == 16 else "u1"
    rows = samples.astype(dtype).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"tRNS", trns)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _keyed_area(size: tuple[int, int]) -> NDArray[np.bool_]:
    mask = Image.new("L", size, 0)
    width, height = size
    ImageDraw.Draw(mask).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), 255)
    return np.asarray(mask) > 0


def colour_keys() -> dict[str, bytes]:
    with Image.open(CORPUS / "orient_Landscape_1.jpg") as photo:
        rgb8 = np.asarray(photo.convert("RGB").resize((240, 160), Image.Resampling.LANCZOS))
    keyed = _keyed_area((240, 160))
    rng = np.random.default_rng(15)
    # 16 bits: the photo's bytes as high bytes, random low bytes.
    rgb16 = rgb8.astype(np.uint16) * 256 + rng.integers(0, 256, rgb8.shape, dtype=np.uint16)
    grey8 = np.asarray(Image.fromarray(rgb8).convert("L"))
    grey16 = grey8.astype(np.uint16) * 256 + rng.integers(0, 256, grey8.shape, dtype=np.uint16)

    # The key takes the high bytes of pixels outside the keyed area but not their low
    # bytes: compared at 8 bits, those pixels would wrongly turn transparent too.
    def with_key(samples: NDArray[np.uint16], key: NDArray[np.uint16]) -> NDArray[np.uint16]:
        out = samples.copy()
        out[keyed] = key
        return out

    rgb8_key = np.array([37, 201, 90], dtype=np.uint16)
    rgb16_key = (rgb16[10, 10] & 0xFF00) | ((rgb16[10, 10] & 0x00FF) ^ 0x0055)
    grey8_key = np.array(57, dtype=np.uint16)
    grey16_key = (grey16[10, 10] & 0xFF00) | ((grey16[10, 10] & 0x00FF) ^ 0x0055)
    return {
        "png_trns_rgb8.png": _png(
            with_key(rgb8.astype(np.uint16), rgb8_key), 2, 8, struct.pack(">3H", *rgb8_key)
        ),
        "png_trns_rgb16.png": _png(
            with_key(rgb16, rgb16_key), 2, 16, struct.pack(">3H", *rgb16_key)
        ),
        "png_trns_grey8.png": _png(
            with_key(grey8.astype(np.uint16), grey8_key), 0, 8, struct.pack(">H", int(grey8_key))
        ),
        "png_trns_grey16.png": _png(
            with_key(grey16, grey16_key), 0, 16, struct.pack(">H", grey16_key)
        ),
    }


def _without_icc(jpeg: bytes) -> bytes:
    """The JPEG with its APP2 ICC_PROFILE segments removed, every other byte kept."""
    out = bytearray(jpeg[:2])
    position = 2
    while position + 4 <= len(jpeg):
        marker = jpeg[position + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            break
        (length,) = struct.unpack(">H", jpeg[position + 2 : position + 4])
        segment = jpeg[position : position + 2 + length]
        if not (marker == 0xE2 and segment[4:16] == b"ICC_PROFILE\x00"):
            out += segment
        position += 2 + length
    return bytes(out + jpeg[position:])


def untagged_cmyk() -> dict[str, bytes]:
    ycck = _without_icc((CORPUS / "jpeg_cmyk_swop_icc.jpg").read_bytes())
    with Image.open(io.BytesIO(ycck)) as image:
        assert image.mode == "CMYK" and "icc_profile" not in image.info
        assert image.info.get("adobe_transform") == 2  # YCCK
        cmyk = image.convert("CMYK")
    plain, tiff = io.BytesIO(), io.BytesIO()
    cmyk.save(plain, "JPEG", quality=95)  # Pillow writes Adobe (inverted) CMYK
    cmyk.save(tiff, "TIFF", compression="tiff_deflate")
    return {
        "jpeg_ycck_untagged.jpg": ycck,
        "jpeg_cmyk_untagged.jpg": plain.getvalue(),
        "tiff_cmyk_untagged.tif": tiff.getvalue(),
    }


def _frames(count: int) -> list[Image.Image]:
    with Image.open(CORPUS / "orient_Landscape_1.jpg") as photo:
        base = photo.convert("RGB").resize((150, 100), Image.Resampling.LANCZOS)
    return [base.rotate(12 * index) for index in range(count)]


def _cut_in_a_frame_header(gif: bytes) -> bytes:
    """The GIF cut inside a later frame's image descriptor, past its middle: where
    Pillow's frame count (`n_frames`) fails with IndexError or struct.error instead
    of stopping."""
    for end in range(len(gif) // 2, len(gif)):
        try:
            with Image.open(io.BytesIO(gif[:end])) as image:
                _ = getattr(image, "n_frames", 1)
        except (IndexError, struct.error):
            return gif[:end]
    raise AssertionError("no cut point found")


def damaged() -> dict[str, bytes]:
    frames = _frames(6)
    encoded = {}
    for name, fmt, options in (
        ("gif", "GIF", {}),
        ("tiff", "TIFF", {"compression": "tiff_deflate"}),
        ("webp", "WEBP", {"quality": 80}),
    ):
        buffer = io.BytesIO()
        frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], **options)
        encoded[name] = buffer.getvalue()
    png = io.BytesIO()
    frames[0].save(png, "PNG")
    flipped = bytearray(png.getvalue())
    flipped[flipped.index(b"IDAT") + 4 + len(flipped) // 3] ^= 0xFF
    return {
        # Each cut leaves the first frame whole and the file not.
        "invalid_truncated_gif_animated.gif": _cut_in_a_frame_header(encoded["gif"]),
        "invalid_truncated_tiff_multipage.tif": encoded["tiff"][: len(encoded["tiff"]) // 2],
        "invalid_truncated_webp_animated.webp": encoded["webp"][: len(encoded["webp"]) * 2 // 3],
        "invalid_png_flipped_idat_byte.png": bytes(flipped),
    }


def main() -> None:
    for name, data in {**colour_keys(), **untagged_cmyk(), **damaged()}.items():
        (CORPUS / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
