"""Content and perceptual hashes.

The perceptual hash is the classic 64-bit pHash: greyscale, 32x32 (Lanczos), 2-D
DCT-II, the 8x8 lowest frequencies compared with their median, bits row-major with
the first bit most significant (the same bit order as the `imagehash` library).
"""

from __future__ import annotations

import hashlib
from functools import cache

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = ["format_hash", "hamming", "parse_hash", "perceptual_hash", "sha256_file"]

HASH_BITS = 64
_SIDE = 8
_SAMPLE = 32


@cache
def _dct_matrix(n: int) -> NDArray[np.float64]:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def perceptual_hash(image: Image.Image) -> int:
    """64-bit pHash of an (already oriented, alpha-flattened) image."""
    grey = image if image.mode == "L" else image.convert("L")
    small = grey.resize((_SAMPLE, _SAMPLE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    dct = _dct_matrix(_SAMPLE)
    coefficients = (dct @ pixels @ dct.T)[:_SIDE, :_SIDE]
    bits = (coefficients > np.median(coefficients)).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def format_hash(value: int) -> str:
    return f"{value:016x}"


def parse_hash(text: str) -> int:
    """Parse 16 hex digits; ValueError otherwise."""
    if len(text) != 16:
        raise ValueError("a perceptual hash is 16 hex digits")
    return int(text, 16)


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
