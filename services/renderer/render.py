"""Making renditions: plain functions over bytes, run in a worker process.

One decode per job, at the smallest JPEG DCT scale that still covers the largest
preset; then orientation and sRGB; then the presets, largest first, each resized
from the previous one with Lanczos.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from services.shared.imaging.normalize import fit_within, load_srgb
from services.shared.settings import Preset

__all__ = ["EXTENSIONS", "RenderedImage", "encode", "render_presets"]

EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
MIME_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif"}


@dataclass(frozen=True)
class RenderedImage:
    preset: str
    format: str  # jpeg | webp | avif
    width: int
    height: int
    quality: int
    data: bytes

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return MIME_TYPES[self.format]


_JPEG_SUBSAMPLING = {"4:4:4": 0, "4:2:0": 2}


def encode(image: Image.Image, image_format: str, quality: int, chroma: str = "4:2:0") -> bytes:
    """Encode without metadata: no EXIF, no GPS, no ICC (the pixels are sRGB)."""
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(
            buffer,
            "JPEG",
            quality=quality,
            progressive=True,
            optimize=True,
            subsampling=_JPEG_SUBSAMPLING[chroma],
        )
    elif image_format == "webp":
        image.save(buffer, "WEBP", quality=quality, method=4)
    elif image_format == "avif":
        image.save(buffer, "AVIF", quality=quality, speed=6, subsampling=chroma)
    else:
        raise ValueError(f"unknown output format {image_format!r}")
    return buffer.getvalue()


def render_presets(data: bytes, presets: Sequence[Preset], max_pixels: int) -> list[RenderedImage]:
    """Every preset and format of one original, from a single decode."""
    ordered = sorted(presets, key=lambda p: p.max_width * p.max_height, reverse=True)
    largest = (ordered[0].max_width, ordered[0].max_height)
    current, full = load_srgb(io.BytesIO(data), max_pixels, box=largest)
    rendered: list[RenderedImage] = []
    for preset in ordered:
        size = fit_within(*full, preset.max_width, preset.max_height)
        if current.size != size:
            current = current.resize(size, Image.Resampling.LANCZOS)
        for image_format in preset.formats:
            rendered.append(
                RenderedImage(
                    preset=preset.name,
                    format=image_format,
                    width=size[0],
                    height=size[1],
                    quality=preset.quality,
                    data=encode(current, image_format, preset.quality, preset.chroma_subsampling),
                )
            )
    return rendered
