"""Cover crops: the preset's box filled exactly, the part kept chosen by its gravity.

A `cover` rendition is made in two steps, both on the reduced decode (never a
full-size pass): the whole image is reduced until it just covers the box (one side
equal to the box's, the other at least the box's), then a box-sized window is cut
from it. Nothing is ever enlarged: an image smaller than the box in either
direction keeps its scale, and the window is the largest one with the box's aspect
ratio that it holds (a 300x200 original in a 400x400 box gives 200x200).

Gravity places the window:
- ``centre``: the middle; when the spare width (height) is odd the extra pixel is
  left on the right (bottom), as libvips' centre crop does;
- ``focal``: centred on the asset's focal point, clamped inside the image; without
  a focal point, as ``attention``;
- ``entropy`` / ``attention``: libvips' smartcrop (the most detailed window; the one
  with the most skin tone, saturation and edges).

The sizes here come from the original's full oriented size, not from the decode's,
so a rendition's size never depends on the DCT scale the decode happened to use.
"""

from __future__ import annotations

import math

from PIL import Image

from services.shared.imaging.normalize import fit_within
from services.shared.imaging.vips import vips
from services.shared.presets import Gravity, Preset

__all__ = [
    "Focal",
    "cover_size",
    "crop_cover",
    "decode_boxes",
    "focal_point",
    "whole_size",
    "window",
]

# A focal point (x, y), each 0..1 of the oriented image from the left and top edges.
Focal = tuple[float, float]

# A side longer than any image can have (an image has at most max_pixels pixels, and
# far fewer than this): a box this long in one direction leaves only the other side
# constraining, which turns a cover box into the two `inside` boxes it is the larger of.
_UNBOUNDED = 1 << 40
# Pillow modes libvips takes as plain interleaved 8-bit bands.
_BANDS = {"L": 1, "RGB": 3}


def decode_boxes(preset: Preset) -> list[tuple[int, int]]:
    """The `inside` boxes the decode must cover for `preset` (see load_srgb's `boxes`).

    Reducing to cover (w, h) is reducing to fit (w, unbounded) or (unbounded, h),
    whichever is larger; the decode covers both, so it covers the cover size.
    """
    if preset.fit == "cover":
        return [(preset.max_width, _UNBOUNDED), (_UNBOUNDED, preset.max_height)]
    return [(preset.max_width, preset.max_height)]


def whole_size(full: tuple[int, int], preset: Preset) -> tuple[int, int]:
    """The size the whole image is reduced to for `preset`: the rendition itself for
    `inside`, the image the window is cut from for `cover`. Never larger than `full`.

    Computed exactly as the decode computes its target (fit_within over the same
    boxes), so the decode always covers it.
    """
    fitted = [fit_within(*full, *box) for box in decode_boxes(preset)]
    return max(w for w, _ in fitted), max(h for _, h in fitted)


def cover_size(full: tuple[int, int], preset: Preset) -> tuple[int, int]:
    """The size of a `cover` rendition of an image whose full size is `full`.

    The box itself when the image covers it; otherwise the box shrunk until the image
    holds it (its aspect ratio kept within a pixel), at the image's own scale.
    """
    width, height = full
    box_width, box_height = preset.max_width, preset.max_height
    fits = min(width / box_width, height / box_height)
    scaled = whole_size(full, preset)
    if fits >= 1:
        size = (box_width, box_height)
    else:
        size = (max(1, round(box_width * fits)), max(1, round(box_height * fits)))
    # Only floating-point rounding could make the whole reduction a pixel short.
    return min(size[0], scaled[0]), min(size[1], scaled[1])


def focal_point(x: float, y: float) -> Focal | None:
    """A request's focal point as the crop uses it: clamped into 0..1 (a window is
    clamped inside the image anyway, so a point past an edge means that edge); None
    when either coordinate is not a number, so the crop falls back to attention."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    return min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)


def window(size: tuple[int, int], crop: tuple[int, int], focal: Focal | None) -> tuple[int, int]:
    """The top-left corner of a `crop`-sized window in an image of `size`: centred on
    `focal` (fractions of the image) and clamped inside it, or the centre window
    (spare odd pixel right and bottom) when there is no focal point."""
    width, height = size
    crop_width, crop_height = crop
    if focal is None:
        return (width - crop_width) // 2, (height - crop_height) // 2
    left = round(focal[0] * width - crop_width / 2)
    top = round(focal[1] * height - crop_height / 2)
    return min(max(left, 0), width - crop_width), min(max(top, 0), height - crop_height)


def crop_cover(
    whole: Image.Image, size: tuple[int, int], gravity: Gravity, focal: Focal | None = None
) -> Image.Image:
    """A `size` window of `whole` (the image reduced to cover it), placed by `gravity`."""
    width, height = size
    if not (0 < width <= whole.width and 0 < height <= whole.height):
        raise ValueError(f"cannot crop {whole.width}x{whole.height} to {width}x{height}")
    if whole.size == size:
        return whole
    if gravity == "centre" or (gravity == "focal" and focal is not None):
        left, top = window(whole.size, size, focal if gravity == "focal" else None)
        return whole.crop((left, top, left + width, top + height))
    return _smartcrop(whole, size, "entropy" if gravity == "entropy" else "attention")


def _smartcrop(image: Image.Image, size: tuple[int, int], interesting: str) -> Image.Image:
    """libvips' smartcrop over Pillow pixels.

    The pixels cross to libvips as one copy of the reduced image (a few hundred KB for
    the default presets, well under a millisecond) and come back as the window only;
    libvips analyses a further-shrunk copy itself.
    """
    if image.mode not in _BANDS:
        image = image.convert("RGB")
    pyvips = vips()
    source = pyvips.Image.new_from_memory(
        image.tobytes(), image.width, image.height, _BANDS[image.mode], "uchar"
    )
    cropped = source.smartcrop(size[0], size[1], interesting=interesting)
    if (cropped.width, cropped.height) != size:
        raise RuntimeError(
            f"libvips cropped {image.size} to {cropped.width}x{cropped.height}, not {size}"
        )
    return Image.frombuffer(image.mode, size, cropped.write_to_memory(), "raw", image.mode, 0, 1)
