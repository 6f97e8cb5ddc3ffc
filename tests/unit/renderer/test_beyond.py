"""What the renderer adds beyond plain renditions (R9.1-R9.3): placeholders for every
accepted image, quality chosen for an SSIM target, WebP and AVIF outputs."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from skimage.color import deltaE_cie76, rgb2lab

from services.renderer.render import _probe, encode, encode_for_ssim, render_presets
from services.renderer.resample import downscale
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.metrics import luma, score, ssim
from services.shared.imaging.normalize import fit_within, load_srgb
from services.shared.imaging.placeholders import (
    THUMBHASH_MAX_BYTES,
    dominant_colour,
    format_rgb_hex,
    thumbhash_decode,
    thumbhash_encode,
)
from services.shared.presets import Preset
from services.shared.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())
ACCEPTED = [e for e in MANIFEST if e["expect"] == "accept"]
PHOTOS = [e["file"] for e in MANIFEST if e["category"] == "photo"]
PRESETS = Settings().presets
MAX_PIXELS = 50_000_000


@pytest.fixture(autouse=True, scope="module")
def _decoders() -> None:
    register_decoders()


def _mean_lab(rgb: NDArray[np.float64]) -> NDArray[np.float64]:
    mean = rgb.reshape(-1, 3).mean(axis=0) / 255.0
    lab: NDArray[np.float64] = rgb2lab(mean.reshape(1, 1, 3))
    return lab


def _sized(name: str, box: int) -> Image.Image:
    """A corpus photo as the renderer holds it before encoding a preset of `box` px."""
    image, full = load_srgb(
        io.BytesIO((CORPUS / name).read_bytes()), MAX_PIXELS, boxes=[(box, box)]
    )
    return downscale(image, fit_within(*full, box, box))


def _decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


# -- R9.1 placeholders ------------------------------------------------------------------


@pytest.mark.parametrize("entry", ACCEPTED, ids=lambda e: e["file"])
def test_every_accepted_image_gets_a_placeholder_with_its_mean_colour(
    entry: dict[str, Any],
) -> None:
    data = (CORPUS / entry["file"]).read_bytes()
    rendering = render_presets(data, PRESETS, MAX_PIXELS)
    thumbhash = base64.b64decode(rendering.thumbhash, validate=True)
    assert 5 <= len(thumbhash) <= THUMBHASH_MAX_BYTES
    assert re.fullmatch(r"#[0-9a-f]{6}", rendering.dominant_color)

    # The image's mean colour: oriented, in sRGB, transparency on white, as rendered.
    original, _ = load_srgb(io.BytesIO(data), MAX_PIXELS)
    expected = _mean_lab(np.asarray(original, dtype=np.float64))
    decoded = np.asarray(thumbhash_decode(thumbhash).convert("RGB"), dtype=np.float64)
    delta_e = float(deltaE_cie76(_mean_lab(decoded), expected)[0, 0])
    print(f"{entry['file']}: ΔE76 of the decoded ThumbHash's mean colour {delta_e:.2f}")
    assert delta_e < 10


def test_the_placeholder_comes_from_the_smallest_presets_pixels() -> None:
    data = (CORPUS / "photo_iphone6_gps.jpg").read_bytes()
    rendering = render_presets(data, PRESETS, MAX_PIXELS)
    # The renderer's chain: one scaled decode, then zoom -> card -> thumb with Lanczos-3.
    image, full = load_srgb(io.BytesIO(data), MAX_PIXELS, boxes=[(1200, 1200)])
    for box in (1200, 400, 100):
        image = downscale(image, fit_within(*full, box, box))
    assert image.size == (rendering.renditions[-1].width, rendering.renditions[-1].height)
    assert base64.b64decode(rendering.thumbhash) == thumbhash_encode(image)
    assert rendering.dominant_color == format_rgb_hex(dominant_colour(image))


# -- R9.2 quality targets -----------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize(("box", "chroma"), [(1200, "4:2:0"), (400, "4:4:4"), (100, "4:4:4")])
@pytest.mark.parametrize("target", [0.95, 0.98])
def test_the_chosen_quality_is_the_smallest_that_reaches_the_target(
    name: str, box: int, chroma: str, target: float
) -> None:
    image = _sized(name, box)
    data, quality, scores = encode_for_ssim(image, "jpeg", target, chroma)
    assert scores.ssim >= target
    # The reported scores are those of the bytes returned, measured from scratch.
    measured = score(image, _decoded(data))
    assert scores.ssim == pytest.approx(measured.ssim, abs=1e-12)
    assert scores.psnr_db == pytest.approx(measured.psnr_db, abs=1e-9)
    assert scores.hash_distance == measured.hash_distance
    # One quality lower misses the target: nothing smaller of this kind would do.
    reference = luma(np.asarray(image))
    if quality > 1:
        lower = _decoded(encode(image, "jpeg", quality - 1, chroma))
        assert ssim(reference, luma(np.asarray(lower))) < target
    # The stored file is the progressive optimised one, as at a fixed quality.
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.format == "JPEG" and stored.info.get("progressive")
    assert data == encode(image, "jpeg", quality, chroma)


@pytest.mark.parametrize("entry", ACCEPTED[::3], ids=lambda e: e["file"])
@pytest.mark.parametrize("chroma", ["4:2:0", "4:4:4"])
def test_the_cheap_jpeg_probe_decodes_to_the_stored_pixels(
    entry: dict[str, Any], chroma: str
) -> None:
    image, _ = load_srgb(io.BytesIO((CORPUS / entry["file"]).read_bytes()), MAX_PIXELS)
    image.thumbnail((400, 400), Image.Resampling.LANCZOS)
    for quality in (1, 17, 50, 83, 99, 100):
        probe = np.asarray(_decoded(_probe(image, "jpeg", quality, chroma)))
        stored = np.asarray(_decoded(encode(image, "jpeg", quality, chroma)))
        assert np.array_equal(probe, stored), (quality, chroma)


def test_an_unreachable_target_uses_quality_100_and_says_how_far_it_got() -> None:
    noise = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    data, quality, scores = encode_for_ssim(Image.fromarray(noise), "jpeg", 0.99999, "4:2:0")
    assert quality == 100
    assert 0.9 < scores.ssim < 0.99999
    assert data == encode(Image.fromarray(noise), "jpeg", 100, "4:2:0")


def test_a_preset_with_a_target_records_quality_target_and_scores() -> None:
    presets = [
        Preset(name="zoom", max_width=1200, max_height=1200, min_ssim=0.95),
        Preset(name="thumb", max_width=100, max_height=100, chroma_subsampling="4:4:4"),
    ]
    data = (CORPUS / "photo_craft-beer_6000x4000.jpg").read_bytes()
    zoom, thumb = render_presets(data, presets, MAX_PIXELS).renditions
    assert zoom.min_ssim == 0.95 and zoom.scores is not None
    assert zoom.scores.ssim >= 0.95 and zoom.scores.psnr_db > 25
    assert 1 <= zoom.quality < 85, "a busy photo at 0.95 needs less than q85"
    fixed = render_presets(data, [presets[0].model_copy(update={"min_ssim": 0.0})], MAX_PIXELS)
    assert len(zoom.data) < len(fixed.renditions[0].data)
    # A fixed-quality preset measures nothing: no time is spent on scores it did not ask for.
    assert (thumb.quality, thumb.min_ssim, thumb.scores) == (85, 0.0, None)


def test_default_presets_keep_their_fixed_quality() -> None:
    rendered = render_presets(
        (CORPUS / "photo_olympus_ep3_12mp.jpg").read_bytes(), PRESETS, MAX_PIXELS
    ).renditions
    assert [(r.quality, r.min_ssim, r.scores) for r in rendered] == [(85, 0.0, None)] * 3


# -- R9.3 WebP and AVIF -------------------------------------------------------------------

MODERN = [
    Preset(name="zoom", max_width=1200, max_height=1200),
    Preset(
        name="card",
        max_width=400,
        max_height=400,
        formats=["jpeg", "webp", "avif"],
        chroma_subsampling="4:4:4",
    ),
]


@pytest.mark.parametrize(
    "name", ["photo_iphone6_gps.jpg", "png_rgba_dice.png", "orient_Landscape_6.jpg"]
)
def test_webp_and_avif_renditions_decode_to_the_preset_size(name: str) -> None:
    rendered = render_presets((CORPUS / name).read_bytes(), MODERN, MAX_PIXELS).renditions
    assert [(r.preset, r.format) for r in rendered] == [
        ("zoom", "jpeg"),
        ("card", "jpeg"),
        ("card", "webp"),
        ("card", "avif"),
    ]
    card_jpeg = _decoded(rendered[1].data)
    for rendition in rendered[1:]:
        with Image.open(io.BytesIO(rendition.data)) as image:
            assert image.format == rendition.format.upper()
            assert image.size == (rendition.width, rendition.height)
            assert not image.getexif(), "no metadata in any format"
        assert rendition.content_type == f"image/{rendition.format}"
        # The same pixels under each encoding: the three look alike.
        alike = score(card_jpeg, _decoded(rendition.data))
        assert alike.psnr_db > 30 and alike.hash_distance <= 4, (rendition.format, alike)


def test_a_target_applies_to_every_format_of_the_preset() -> None:
    targeted = [MODERN[1].model_copy(update={"min_ssim": 0.97})]
    data = (CORPUS / "photo_olympus_ep3_12mp.jpg").read_bytes()
    rendered = render_presets(data, targeted, MAX_PIXELS).renditions
    assert [r.format for r in rendered] == ["jpeg", "webp", "avif"]
    for rendition in rendered:
        assert rendition.scores is not None and rendition.scores.ssim >= 0.97, rendition.format
        assert rendition.min_ssim == 0.97
