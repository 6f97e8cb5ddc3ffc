"""libvips' Lanczos-3 reduction: exact sizes, never enlarging, Pillow-grade pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from services.renderer.render import render_presets
from services.renderer.resample import downscale
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.metrics import psnr
from services.shared.imaging.normalize import fit_within, load_srgb
from services.shared.presets import Preset

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
MAX_PIXELS = 50_000_000


@pytest.fixture(autouse=True, scope="module")
def _decoders() -> None:
    register_decoders()


def _noise(width: int, height: int, mode: str, seed: int = 0) -> Image.Image:
    bands = len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, bands), dtype=np.uint8)
    return Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode=mode)


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(1, 600),
    height=st.integers(1, 600),
    box=st.integers(1, 700),
    mode=st.sampled_from(["RGB", "L"]),
)
def test_output_has_exactly_the_fitted_size_and_the_mode(
    width: int, height: int, box: int, mode: str
) -> None:
    source = _noise(width, height, mode)
    size = fit_within(width, height, box, box)
    reduced = downscale(source, size)
    assert reduced.size == size
    assert reduced.mode == mode


def test_other_modes_are_reduced_too() -> None:
    reduced = downscale(_noise(90, 60, "RGBA"), (30, 20))
    assert (reduced.size, reduced.mode) == ((30, 20), "RGBA")


@pytest.mark.parametrize("size", [(201, 100), (200, 101), (0, 50)])
def test_it_never_enlarges_or_makes_an_empty_image(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="cannot downscale"):
        downscale(_noise(200, 100, "RGB"), size)


@pytest.mark.parametrize("name", ["photo_moto_g9_empty_gps.jpg", "photo_craft-beer_6000x4000.jpg"])
def test_pixels_match_pillows_lanczos(name: str) -> None:
    """Same kernel as Pillow's exact resize: the two agree far beyond what JPEG keeps."""
    image, full = load_srgb(
        io.BytesIO((CORPUS / name).read_bytes()), MAX_PIXELS, boxes=[(1200, 1200)]
    )
    for box in (1200, 400):
        size = fit_within(*full, box, box)
        ours = np.asarray(downscale(image, size))
        pillow = np.asarray(image.resize(size, Image.Resampling.LANCZOS))
        assert psnr(pillow, ours) > 45


def test_presets_that_do_not_nest_are_each_made_from_an_image_that_covers_them() -> None:
    """Ordering by area does not make every preset fit inside the one before it: a
    1000x10 strip is larger than a 50x150 tile, yet the tile is taller. Each must come
    from an image at least its size, never from an enlarged smaller one."""
    source = io.BytesIO()
    _noise(800, 800, "RGB", seed=3).save(source, "PNG")
    presets = [
        Preset(name="strip", max_width=1000, max_height=10),
        Preset(name="tile", max_width=50, max_height=150),
    ]
    rendering = render_presets(source.getvalue(), presets, MAX_PIXELS)
    sizes = {r.preset: (r.width, r.height) for r in rendering.renditions}
    assert sizes == {"strip": (10, 10), "tile": (50, 50)}
