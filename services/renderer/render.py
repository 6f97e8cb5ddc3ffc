"""Making renditions: plain functions over bytes, run in a worker process.

One decode per job, at the smallest JPEG DCT scale that still covers every preset;
then orientation and sRGB; then the presets, largest first, each reduced with
Lanczos-3 (libvips, see resample.py) from the smallest whole image made so far that
covers it, and a `cover` preset then cropped to its box (crop.py). Each preset is
encoded in each of its formats,
at its fixed quality or, when it sets `min_ssim`, at the smallest quality whose
SSIM against the resized image reaches the target. Last, the placeholder (ThumbHash
and dominant colour) is taken from the smallest preset's pixels.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from services.renderer.crop import Focal, cover_size, crop_cover, decode_boxes, whole_size
from services.renderer.resample import downscale
from services.shared.imaging.hashing import hamming, perceptual_hash
from services.shared.imaging.metrics import Scores, SsimReference, luma, psnr
from services.shared.imaging.normalize import load_srgb
from services.shared.imaging.placeholders import dominant_colour, format_rgb_hex, thumbhash_encode
from services.shared.presets import Preset

__all__ = [
    "EXTENSIONS",
    "QUALITY_RANGE",
    "RenderedImage",
    "Rendering",
    "decode_for_presets",
    "encode",
    "encode_for_ssim",
    "fit_preset",
    "preset_pixels",
    "render_presets",
]

EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
MIME_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif"}
# Every quality the encoders take: bisection over all of it probes at most 7 of them.
QUALITY_RANGE = (1, 100)


@dataclass(frozen=True)
class RenderedImage:
    preset: str
    format: str  # jpeg | webp | avif
    width: int
    height: int
    quality: int
    data: bytes
    seconds: float = 0.0  # resize + encode (+ quality search) of this rendition
    min_ssim: float = 0.0  # the target the quality was chosen for; 0: the preset's fixed one
    # Measured against the resized image while choosing the quality; None at a fixed one.
    scores: Scores | None = None

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return MIME_TYPES[self.format]


@dataclass(frozen=True)
class Rendering:
    """Everything one job makes: the renditions, largest preset first, and the
    asset's placeholder."""

    renditions: list[RenderedImage]
    thumbhash: str  # base64, as GetAsset returns it
    dominant_color: str  # "#rrggbb"


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


def _probe(image: Image.Image, image_format: str, quality: int, chroma: str) -> bytes:
    """An encoding that decodes to exactly the pixels `encode` gives, as cheaply as can be.

    For JPEG that is baseline without Huffman optimisation: progressive scans and
    optimised Huffman tables only re-code the same quantised coefficients without
    loss, so the pixels are identical (a unit test checks it over the corpus) at a
    fraction of the encode and decode time. WebP and AVIF are encoded as stored.
    """
    if image_format != "jpeg":
        return encode(image, image_format, quality, chroma)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, subsampling=_JPEG_SUBSAMPLING[chroma])
    return buffer.getvalue()


def _decode_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


@dataclass(frozen=True)
class _Trial:
    quality: int
    ssim: float
    decoded: Image.Image
    data: bytes


def encode_for_ssim(
    image: Image.Image, image_format: str, min_ssim: float, chroma: str = "4:2:0"
) -> tuple[bytes, int, Scores]:
    """The smallest-quality encoding whose SSIM against `image` reaches `min_ssim`.

    Bisection over the encoder quality, assuming SSIM grows with it; only a quality
    whose measured SSIM reaches the target is ever chosen, so the target holds even
    where that assumption does not. When even quality 100 misses the target, quality
    100 is used and the SSIM it reached is reported. Returns the bytes, the quality
    and the scores (PSNR, SSIM on luma, perceptual-hash distance) of what is returned.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    reference: NDArray[np.uint8] = np.asarray(rgb)
    measure = SsimReference(luma(reference))

    def trial(quality: int) -> _Trial:
        data = _probe(rgb, image_format, quality, chroma)
        decoded = _decode_rgb(data)
        return _Trial(quality, measure(luma(np.asarray(decoded))), decoded, data)

    lo, hi = QUALITY_RANGE
    best: _Trial | None = None  # the lowest quality seen to reach the target
    while lo < hi:
        current = trial((lo + hi) // 2)
        if current.ssim >= min_ssim:
            hi, best = current.quality, current
        else:
            lo = current.quality + 1
    if best is None or best.quality != lo:
        best = trial(lo)  # only when nothing below 100 reached the target
    data = encode(rgb, image_format, best.quality, chroma) if image_format == "jpeg" else best.data
    scores = Scores(
        psnr_db=psnr(reference, np.asarray(best.decoded)),
        ssim=best.ssim,
        hash_distance=hamming(perceptual_hash(rgb), perceptual_hash(best.decoded)),
    )
    return data, best.quality, scores


def decode_for_presets(
    data: bytes, presets: Sequence[Preset], max_pixels: int
) -> tuple[list[Preset], Image.Image, tuple[int, int]]:
    """The presets largest first (by the whole image each needs), the original decoded
    once for all of them (oriented, sRGB, at the smallest JPEG DCT scale covering every
    preset) and its full size."""
    boxes = [box for preset in presets for box in decode_boxes(preset)]
    image, full = load_srgb(io.BytesIO(data), max_pixels, boxes=boxes)

    def needs(preset: Preset) -> tuple[int, int]:
        width, height = whole_size(full, preset)
        return width * height, preset.max_width * preset.max_height

    return sorted(presets, key=needs, reverse=True), image, full


def fit_preset(made: Sequence[Image.Image], full: tuple[int, int], preset: Preset) -> Image.Image:
    """The whole image reduced for `preset` (whole_size: the rendition itself for
    `inside`, the image a `cover` window is cut from): the smallest whole image made so
    far (the decode, then each larger preset's) that covers that size, reduced to it
    with Lanczos-3. Chaining keeps each reduction small; taking only images that cover
    the size means nothing is ever enlarged, whatever the presets' shapes."""
    width, height = whole_size(full, preset)
    covering = [image for image in made if image.width >= width and image.height >= height]
    source = min(covering, key=lambda image: image.width * image.height)
    return downscale(source, (width, height))


def preset_pixels(
    whole: Image.Image, full: tuple[int, int], preset: Preset, focal: Focal | None = None
) -> Image.Image:
    """The pixels `preset`'s renditions encode and are measured against: `whole` (from
    fit_preset) for `inside`, its window by the preset's gravity for `cover`."""
    if preset.fit == "inside":
        return whole
    return crop_cover(whole, cover_size(full, preset), preset.gravity, focal)


def render_presets(
    data: bytes, presets: Sequence[Preset], max_pixels: int, focal: Focal | None = None
) -> Rendering:
    """Every preset and format of one original, from a single decode, and its
    placeholder. `focal` is the asset's focal point, for presets with gravity `focal`."""
    ordered, decoded, full = decode_for_presets(data, presets, max_pixels)
    # Whole images only: a later preset is never reduced from an earlier one's crop.
    made = [decoded]
    rendered: list[RenderedImage] = []
    for preset in ordered:
        started = time.perf_counter()
        whole = fit_preset(made, full, preset)
        made.append(whole)
        current = preset_pixels(whole, full, preset, focal)
        for image_format in preset.formats:
            scores: Scores | None = None
            quality = preset.quality
            if preset.min_ssim > 0:
                encoded, quality, scores = encode_for_ssim(
                    current, image_format, preset.min_ssim, preset.chroma_subsampling
                )
            else:
                encoded = encode(current, image_format, quality, preset.chroma_subsampling)
            rendered.append(
                RenderedImage(
                    preset=preset.name,
                    format=image_format,
                    width=current.width,
                    height=current.height,
                    quality=quality,
                    data=encoded,
                    seconds=time.perf_counter() - started,
                    min_ssim=preset.min_ssim,
                    scores=scores,
                )
            )
            started = time.perf_counter()
    # The smallest preset's whole image (a thumbnail with the default presets): plenty
    # for a hash of at most 100 px and a 64 px colour count, and never a crop, so the
    # placeholder has the asset's own aspect ratio.
    smallest = min(made, key=lambda image: image.width * image.height)
    return Rendering(
        renditions=rendered,
        thumbhash=base64.b64encode(thumbhash_encode(smallest)).decode("ascii"),
        dominant_color=format_rgb_hex(dominant_colour(smallest)),
    )
