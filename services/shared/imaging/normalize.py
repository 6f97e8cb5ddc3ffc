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

from PIL import Image, ImageCms

from services.shared.imaging.decode import (
    apply_orientation,
    decode_untrusted,
    fit_within,
    flatten_to_rgb,
    wide_grey_to_8bit,
)
from services.shared.imaging.vips import vips

__all__ = ["fit_within", "load_srgb", "to_srgb"]

_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@cache
def _default_cmyk() -> ImageCms.ImageCmsProfile:
    """The CMYK profile libvips assumes for CMYK pixels that carry none.

    It is libvips' built-in ``cmyk`` profile ("Chemical proof", made by Graeme W. Gill
    with ArgyllCMS and released by him into the public domain), taken from the libvips
    that pyvips-binary ships: the same bytes libvips, and so sharp, use, with the
    version pinned in constraints.txt; no profile file is kept in this repository.
    """
    return ImageCms.ImageCmsProfile(
        io.BytesIO(bytes(vips().Operation.call("profile_load", "cmyk")))
    )


def _untagged_cmyk_to_srgb(image: Image.Image) -> Image.Image:
    """CMYK without a usable profile, through the standard one.

    Relative colorimetric without black-point compensation, as libvips converts it
    (its ``icc_transform`` default): the naive formula Pillow's convert uses is about
    ΔE76 8 away on photos.
    """
    converted = ImageCms.profileToProfile(
        image,
        _default_cmyk(),
        _srgb(),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
    )
    return converted if converted is not None else image.convert("RGB")


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
    """8-bit sRGB RGB: ICC converted, CMYK/palette/16-bit converted, alpha onto white.

    CMYK without a profile goes through libvips' standard CMYK profile; a PNG colour
    key has already become an alpha channel (``decode.decode_untrusted``).
    """
    icc = image.info.get("icc_profile")
    if image.mode in _WIDE_MODES:
        image = wide_grey_to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "PA":
        image = image.convert("RGBA")
    if icc and image.mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        image = _apply_icc(image, icc)
    if image.mode == "CMYK":  # no profile, or one that does not fit CMYK
        image = _untagged_cmyk_to_srgb(image)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")  # CMYK without a profile, YCbCr, 1-bit, ...
    return flatten_to_rgb(image)


def load_srgb(
    source: Path | BinaryIO, max_pixels: int, boxes: Sequence[tuple[int, int]] = ()
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the first frame, oriented and in sRGB.

    With `boxes`, a JPEG is decoded at the smallest DCT scale whose output still
    covers the image fitted into each of the boxes (libjpeg scales while decoding, so
    a 24 MP photo is never materialised at full size). Returns the image and the
    oriented size of the full original.
    """
    decoded = decode_untrusted(source, max_pixels, draft_mode="RGB", boxes=boxes)
    return to_srgb(apply_orientation(decoded.image, decoded.orientation)), decoded.oriented_size
