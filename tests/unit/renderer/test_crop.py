"""Cover crops: the box filled exactly, the window placed by gravity, nothing enlarged.

The test image is a corpus photo (busy, saturated wisteria) brought to 1600x1067 with a
face-like disc drawn off-centre: a saturated red rim, a skin-tone face, eyes and a mouth,
radius 150 px at (0.85, 0.3). A 400x400 cover crop reduces the photo to 600x400 and
keeps a 400 px wide window; the centre window (100..500) holds well under half of the
disc, so finding all of it in a crop means the crop went looking for it.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from services.renderer.crop import (
    Focal,
    cover_size,
    crop_cover,
    decode_boxes,
    focal_point,
    whole_size,
    window,
)
from services.renderer.render import decode_for_presets, fit_preset, preset_pixels, render_presets
from services.renderer.resample import downscale
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.metrics import psnr
from services.shared.imaging.normalize import fit_within, load_srgb
from services.shared.imaging.vips import vips
from services.shared.presets import Gravity, Preset

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
MAX_PIXELS = 50_000_000
SIZE = (1600, 1067)
PATCH: Focal = (0.85, 0.3)
RADIUS = 150
GRAVITIES: list[Gravity] = ["centre", "entropy", "attention", "focal"]


@pytest.fixture(autouse=True, scope="module")
def _decoders() -> None:
    register_decoders()


@cache
def _background() -> Image.Image:
    with Image.open(CORPUS / "photo_iphone6_gps.jpg") as photo:
        photo.draft("RGB", SIZE)
        return ImageOps.fit(photo.convert("RGB"), SIZE, Image.Resampling.LANCZOS)


@cache
def _scene() -> Image.Image:
    """The photo with the face-like disc at PATCH."""
    image = _background().copy()
    draw = ImageDraw.Draw(image)
    x, y, r = PATCH[0] * SIZE[0], PATCH[1] * SIZE[1], RADIUS

    def disc(cx: float, cy: float, radius: float, colour: tuple[int, int, int]) -> None:
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)

    disc(x, y, r, (0, 0, 0))
    disc(x, y, 0.92 * r, (230, 20, 30))
    disc(x, y, 0.7 * r, (232, 176, 140))
    for eye in (-0.3, 0.3):
        disc(x + eye * r, y - 0.25 * r, 0.14 * r, (255, 255, 255))
        disc(x + eye * r, y - 0.25 * r, 0.07 * r, (10, 10, 10))
    draw.ellipse((x - 0.3 * r, y + 0.15 * r, x + 0.3 * r, y + 0.4 * r), fill=(20, 0, 0))
    return image


def _encoded(image: Image.Image, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, quality=95)
    return buffer.getvalue()


def _array(image: Image.Image) -> NDArray[np.int16]:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _red(pixels: NDArray[np.int16]) -> NDArray[np.bool_]:
    """The disc's rim colour; the photo has none of it."""
    return (pixels[..., 0] > 180) & (pixels[..., 1] < 70) & (pixels[..., 2] < 80)


def _cover(gravity: Gravity, width: int = 400, height: int = 400) -> Preset:
    return Preset(name="crop", max_width=width, max_height=height, fit="cover", gravity=gravity)


def _pixels(data: bytes, preset: Preset, focal: Focal | None = None) -> Image.Image:
    """What the preset's renditions encode (before encoding), as render_presets makes it."""
    _, decoded, full = decode_for_presets(data, [preset], MAX_PIXELS)
    return preset_pixels(fit_preset([decoded], full, preset), full, preset, focal)


def _offset(crop: Image.Image, whole: Image.Image) -> tuple[int, int]:
    """Where `crop` sits in `whole`: the window that matches it best."""
    part, reference = _array(crop).astype(np.float32), _array(whole).astype(np.float32)
    errors = {
        (left, top): float(
            np.abs(reference[top : top + crop.height, left : left + crop.width] - part).mean()
        )
        for left in range(whole.width - crop.width + 1)
        for top in range(whole.height - crop.height + 1)
    }
    return min(errors, key=errors.__getitem__)


def _reference_whole(image: Image.Image, preset: Preset) -> Image.Image:
    """The whole image at the size the crop is cut from, resized independently (Pillow)."""
    return image.resize(whole_size(image.size, preset), Image.Resampling.LANCZOS)


def _patch_share(rendition: Image.Image, preset: Preset) -> float:
    """How much of the disc's rim a rendition holds, against the whole image at its scale;
    0 when the rim touches the rendition's edge (the disc is cut)."""
    mask = _red(_array(rendition))
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0
    if xs.min() == 0 or ys.min() == 0:
        return 0.0
    if xs.max() == rendition.width - 1 or ys.max() == rendition.height - 1:
        return 0.0
    return float(mask.sum() / _red(_array(_reference_whole(_scene(), preset))).sum())


def _rendered(data: bytes, preset: Preset, focal: Focal | None = None) -> Image.Image:
    (rendition,) = render_presets(data, [preset], MAX_PIXELS, focal).renditions
    assert (rendition.width, rendition.height) == (preset.max_width, preset.max_height)
    return Image.open(io.BytesIO(rendition.data))


def test_attention_keeps_the_salient_patch() -> None:
    # A JPEG original: decoded at a reduced DCT scale, the crop taken from that decode.
    data = _encoded(_scene(), "JPEG")
    assert _patch_share(_rendered(data, _cover("attention")), _cover("attention")) > 0.9
    # The centre window cuts the disc: the test image does ask the crop to look.
    assert _patch_share(_rendered(data, _cover("centre")), _cover("centre")) == 0.0


def test_focal_at_the_patch_keeps_it_and_without_a_point_is_attention() -> None:
    data = _encoded(_scene(), "JPEG")
    assert _patch_share(_rendered(data, _cover("focal"), PATCH), _cover("focal")) > 0.9
    assert _patch_share(_rendered(data, _cover("focal"), (0.2, 0.5)), _cover("focal")) == 0.0
    png = _encoded(_scene())
    no_point = _array(_pixels(png, _cover("focal")))
    assert np.array_equal(no_point, _array(_pixels(png, _cover("attention"))))


@pytest.mark.parametrize(
    ("box", "focal", "expected"),
    [
        # 400x400 from 1600x1067: the whole image at 600x400, windows left 0..200.
        ((400, 400), (0.1, 0.5), (0, 0)),  # clamped at the left edge
        ((400, 400), (0.4, 0.9), (40, 0)),
        ((400, 400), (0.5, 0.5), (100, 0)),
        ((400, 400), (0.62, 0.1), (172, 0)),
        ((400, 400), (0.97, 0.5), (200, 0)),  # clamped at the right edge
        # 400x100: the whole image at 400x267, windows top 0..167.
        ((400, 100), (0.5, 0.05), (0, 0)),
        ((400, 100), (0.5, 0.3), (0, 30)),
        ((400, 100), (0.5, 0.6), (0, 110)),
        ((400, 100), (0.5, 1.0), (0, 167)),
    ],
)
def test_the_focal_window_follows_the_point(
    box: tuple[int, int], focal: Focal, expected: tuple[int, int]
) -> None:
    preset = _cover("focal", *box)
    crop = _pixels(_encoded(_scene()), preset, focal)
    assert crop.size == box
    assert _offset(crop, _reference_whole(_scene(), preset)) == expected


def test_centre_is_the_exact_middle() -> None:
    data = _encoded(_scene())
    preset = _cover("centre")
    crop = _pixels(data, preset)
    # Independent references: Pillow's resize of the whole image, sliced; libvips'
    # own thumbnail with a centre crop.
    sliced = _array(_reference_whole(_scene(), preset))[:, 100:500]
    assert psnr(sliced.astype(np.uint8), _array(crop).astype(np.uint8)) >= 40
    thumbnail: Any = vips().Image.thumbnail_buffer(data, 400, height=400, crop="centre")
    reference = np.ndarray(
        buffer=thumbnail.write_to_memory(), dtype=np.uint8, shape=(400, 400, thumbnail.bands)
    )
    assert psnr(reference, _array(crop).astype(np.uint8)) >= 40
    # An odd spare width: 600 - 401 = 199, the extra pixel left on the right.
    odd = _cover("centre", 401, 400)
    assert _offset(_pixels(data, odd), _reference_whole(_scene(), odd)) == (99, 0)


@pytest.mark.parametrize(("side", "columns"), [("left", (0, 500)), ("right", (1100, 1600))])
def test_entropy_keeps_the_detailed_side(side: str, columns: tuple[int, int]) -> None:
    """The photo blurred flat except one band of columns: the window moves to the band."""
    image = _background().filter(ImageFilter.GaussianBlur(25))
    band = (columns[0], 0, columns[1], SIZE[1])
    image.paste(_background().crop(band), band[:2])
    preset = _cover("entropy")
    left, _ = _offset(_pixels(_encoded(image), preset), _reference_whole(image, preset))
    assert left < 50 if side == "left" else left > 150


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


@pytest.mark.parametrize(
    ("source", "box", "expected"),
    [((300, 200), (400, 400), (200, 200)), ((500, 300), (400, 400), (300, 300))],
)
def test_an_image_smaller_than_the_box_keeps_its_scale(
    source: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]
) -> None:
    image = _noise(*source)
    preset = _cover("centre", *box)
    crop = _pixels(_encoded(image), preset)
    # Not resampled at all: exactly the centre window of the original's pixels.
    left, top = (source[0] - expected[0]) // 2, (source[1] - expected[1]) // 2
    window_pixels = _array(image)[top : top + expected[1], left : left + expected[0]]
    assert np.array_equal(_array(crop), window_pixels)
    (rendition,) = render_presets(_encoded(image), [preset], MAX_PIXELS).renditions
    assert (rendition.width, rendition.height) == expected


@settings(max_examples=120, deadline=None)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    box_width=st.integers(1, 400),
    box_height=st.integers(1, 400),
    gravity=st.sampled_from(GRAVITIES),
    focal=st.none() | st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_no_crop_ever_upscales_and_each_keeps_the_box_aspect(
    width: int,
    height: int,
    box_width: int,
    box_height: int,
    gravity: Gravity,
    focal: Focal | None,
) -> None:
    preset = _cover(gravity, box_width, box_height)
    full = (width, height)
    whole = whole_size(full, preset)
    assert whole[0] <= width and whole[1] <= height
    crop = crop_cover(downscale(_noise(*full), whole), cover_size(full, preset), gravity, focal)
    out_width, out_height = crop.size
    assert 1 <= out_width <= min(box_width, width) and 1 <= out_height <= min(box_height, height)
    # The box's aspect within a pixel: either side is within one of what the other gives.
    assert (
        abs(out_height - out_width * box_height / box_width) <= 1
        or abs(out_width - out_height * box_width / box_height) <= 1
    )


@cache
def _scene_jpeg() -> bytes:
    return _encoded(_scene(), "JPEG")


@settings(max_examples=40, deadline=None)
@given(box_width=st.integers(1, 1700), box_height=st.integers(1, 1200))
def test_the_decode_is_reduced_yet_covers_every_cover_box(box_width: int, box_height: int) -> None:
    preset = _cover("centre", box_width, box_height)
    decoded, full = load_srgb(io.BytesIO(_scene_jpeg()), MAX_PIXELS, boxes=decode_boxes(preset))
    needed = whole_size(full, preset)
    assert decoded.width >= needed[0] and decoded.height >= needed[1]
    if needed[0] * 2 <= full[0] and needed[1] * 2 <= full[1]:
        assert decoded.width < full[0], "a DCT-scaled decode, not a full-size pass"


def test_inside_presets_are_unchanged_beside_cover_ones() -> None:
    data = _encoded(_scene(), "JPEG")
    zoom = Preset(name="zoom", max_width=1200, max_height=1200)
    thumb = Preset(name="thumb", max_width=200, max_height=200)
    alone = render_presets(data, [zoom], MAX_PIXELS).renditions
    beside = render_presets(data, [zoom, _cover("attention"), thumb], MAX_PIXELS).renditions
    assert [r.preset for r in beside] == ["zoom", "crop", "thumb"]
    assert beside[0].data == alone[0].data
    # The thumbnail comes after the crop yet is the whole image: a later preset is
    # reduced from a whole image, never from an earlier preset's window.
    assert (beside[2].width, beside[2].height) == fit_within(*SIZE, 200, 200)
    reference = _array(_scene().resize((200, 133), Image.Resampling.LANCZOS))
    thumbnail = _array(Image.open(io.BytesIO(beside[2].data)))
    # About 28 dB after q85 JPEG on this busy photo; made from a square window it would
    # be about 11.
    assert psnr(reference.astype(np.uint8), thumbnail.astype(np.uint8)) > 24


def test_window_geometry() -> None:
    assert window((600, 400), (401, 400), None) == (99, 0)
    assert window((600, 400), (400, 400), (0.0, 0.0)) == (0, 0)
    assert window((600, 400), (400, 400), (1.0, 1.0)) == (200, 0)
    assert window((600, 400), (400, 100), (0.5, 0.5)) == (100, 150)
    assert focal_point(-0.5, 1.5) == (0.0, 1.0)
    assert focal_point(float("nan"), 0.5) is None
    assert cover_size((300, 200), _cover("centre")) == (200, 200)
    assert cover_size((6000, 4000), _cover("centre")) == (400, 400)
    assert whole_size((6000, 4000), _cover("centre")) == (600, 400)
