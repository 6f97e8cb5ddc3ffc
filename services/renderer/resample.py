"""Lanczos-3 downscaling of decoded pixels, done by libvips.

Pillow's resampler is portable C without SIMD: on this kind of machine it spends
30-55 ms taking a half-scale decode of a 12-16 MP photo to 1200 px. libvips' `reduce`
runs the same Lanczos-3 kernel with vector instructions in about a fifth of that,
with pixels within 0.1-0.4 dB PSNR of Pillow's against an exact resize of the full
decode (bench/render.py measures the whole job; tests/unit/renderer check the
quality). Decoding, colour handling and encoding stay with Pillow: only the
resampling, the largest CPU cost after the decode, moves.

libvips is loaded lazily, in the worker process that renders, and told to use one
thread: the renderer already runs one worker process per core.
"""

from __future__ import annotations

from PIL import Image

from services.shared.imaging.vips import vips as _vips

__all__ = ["downscale"]

# Pillow modes libvips can take as plain interleaved 8-bit bands.
_BANDS = {"L": 1, "RGB": 3}
# libvips refuses reductions whose Lanczos window would exceed 2000 taps (a factor of
# about 333); beyond this factor, rare and cheap (the output is tiny), Pillow's
# resampler, the same kernel, does the work.
_MAX_VIPS_FACTOR = 100.0


def downscale(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` reduced to exactly `size` with a Lanczos-3 kernel; never enlarges.

    Raises ValueError when `size` is larger than the image in either direction.
    """
    width, height = size
    if not (0 < width <= image.width and 0 < height <= image.height):
        raise ValueError(f"cannot downscale {image.width}x{image.height} to {width}x{height}")
    if image.size == size:
        return image
    bands = _BANDS.get(image.mode)
    factor = max(image.width / width, image.height / height)
    if bands is None or factor > _MAX_VIPS_FACTOR:
        return image.resize(size, Image.Resampling.LANCZOS)
    vips = _vips()
    source = vips.Image.new_from_memory(image.tobytes(), image.width, image.height, bands, "uchar")
    reduced = source.reduce(image.width / width, image.height / height, kernel="lanczos3")
    if (reduced.width, reduced.height) != size:
        raise RuntimeError(
            f"libvips reduced {image.size} to {reduced.width}x{reduced.height}, not {size}"
        )
    return Image.frombuffer(image.mode, size, reduced.write_to_memory(), "raw", image.mode, 0, 1)
