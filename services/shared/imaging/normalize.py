"""Bringing any accepted image to 8-bit sRGB RGB, the way renditions are made.

Used by the renderer (to make renditions) and by quality (to build the reference a
rendition is compared with), so both see the same pixels.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms

from services.shared.imaging.decode import (
    apply_orientation,
    exif_orientation,
    flatten_to_rgb,
    open_untrusted,
    oriented_size,
)

__all__ = ["fit_within", "load_srgb", "to_srgb"]

_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit greys: scale to 8 bits (Pillow's convert would clip)."""
    pixels = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
    scaled = np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    description = ImageCms.getProfileDescription(profile) or ""
    return "srgb" in description.lower().replace(" ", "")


def _apply_icc(image: Image.Image, icc: bytes) -> Image.Image:
    """Convert pixels described by an embedded ICC profile to sRGB (littlecms)."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        return image  # a broken profile is ignored, as browsers do
    if image.mode in ("RGB", "RGBA") and _is_srgb(source):
        return image
    output = "RGBA" if image.mode in ("RGBA", "LA") else "RGB"
    if image.mode == "LA":
        image = image.convert("RGBA")
    try:
        converted = ImageCms.profileToProfile(
            image,
            source,
            _srgb(),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode=output,
        )
    except (ImageCms.PyCMSError, ValueError, OSError):
        return image  # profile does not fit the pixels (e.g. an RGB profile on CMYK)
    return converted if converted is not None else image


def to_srgb(image: Image.Image) -> Image.Image:
    """8-bit sRGB RGB: ICC converted, CMYK/palette/16-bit converted, alpha onto white."""
    icc = image.info.get("icc_profile")
    if image.mode in _WIDE_MODES:
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "PA":
        image = image.convert("RGBA")
    if icc and image.mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        image = _apply_icc(image, icc)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")  # CMYK without a profile, YCbCr, 1-bit, ...
    return flatten_to_rgb(image)


def fit_within(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Size that fits the box, keeps the aspect ratio, never upscales, never hits 0 px."""
    scale = min(max_width / width, max_height / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_srgb(
    source: Path | BinaryIO, max_pixels: int, boxes: Sequence[tuple[int, int]] = ()
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the first frame, oriented and in sRGB.

    With `boxes`, a JPEG is decoded at the smallest DCT scale whose output still
    covers the image fitted into each of the boxes (libjpeg scales while decoding, so
    a 24 MP photo is never materialised at full size). Returns the image and the
    oriented size of the full original.
    """
    image = open_untrusted(source, max_pixels)
    orientation = exif_orientation(image)
    full = oriented_size(image.size, orientation)
    if boxes and image.format in ("JPEG", "MPO"):
        fitted = [fit_within(*full, *box) for box in boxes]
        target = (max(w for w, _ in fitted), max(h for _, h in fitted))
        image.draft("RGB", target if orientation < 5 else (target[1], target[0]))
    image.load()
    return to_srgb(apply_orientation(image, orientation)), full
