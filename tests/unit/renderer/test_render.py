"""Rendering every accepted corpus image: sizes, aspect, metadata, colour, quality."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from services.renderer.render import render_presets
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.metrics import psnr
from services.shared.imaging.normalize import fit_within, load_srgb
from services.shared.presets import Preset
from services.shared.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())
ACCEPTED = [e for e in MANIFEST if e["expect"] == "accept"]
PRESETS = Settings().presets
MAX_PIXELS = 50_000_000


@pytest.fixture(autouse=True, scope="module")
def _decoders() -> None:
    register_decoders()


@pytest.mark.parametrize("entry", ACCEPTED, ids=lambda e: e["file"])
def test_every_accepted_image_renders_every_preset(entry: dict[str, Any]) -> None:
    width, height = entry["oriented_size"]
    rendering = render_presets((CORPUS / entry["file"]).read_bytes(), PRESETS, MAX_PIXELS)
    rendered = rendering.renditions
    assert [r.preset for r in rendered] == ["zoom", "card", "thumb"]
    for image in rendered:
        box = next(p for p in PRESETS if p.name == image.preset)
        assert (image.width, image.height) == fit_within(
            width, height, box.max_width, box.max_height
        )
        assert abs(image.width * height / width - image.height) <= 1
        with Image.open(io.BytesIO(image.data)) as decoded:
            assert decoded.format == "JPEG" and decoded.mode == "RGB"
            assert decoded.size == (image.width, image.height)
            assert not decoded.getexif(), "renditions carry no EXIF"
            assert decoded.info.get("progressive") or decoded.info.get("progression")


def test_sizes_never_round_to_zero_or_upscale() -> None:
    assert fit_within(940, 2, 100, 100) == (100, 1)
    assert fit_within(1, 1, 100, 100) == (1, 1)
    assert fit_within(20, 4000, 400, 400) == (2, 400)
    assert fit_within(300, 200, 1200, 1200) == (300, 200)


def test_transparent_pixels_become_white() -> None:
    rendered = render_presets(
        (CORPUS / "png_rgba_dice.png").read_bytes(), PRESETS, MAX_PIXELS
    ).renditions
    with Image.open(CORPUS / "png_rgba_dice.png") as original:
        alpha = np.asarray(original.getchannel("A"))
    zoom = np.asarray(Image.open(io.BytesIO(rendered[0].data)).convert("RGB"), dtype=np.int16)
    # JPEG rings inside any 16x16 block (a 4:2:0 MCU) that holds an edge: look only
    # at blocks that are transparent throughout.
    height, width = alpha.shape
    blocks = [
        zoom[y : y + 16, x : x + 16]
        for y in range(0, height - 15, 16)
        for x in range(0, width - 15, 16)
        if (alpha[y : y + 16, x : x + 16] == 0).all()
    ]
    assert len(blocks) > 20
    # These pixels are (0, 0, 0, 0) in the PNG: black if flattening were wrong.
    assert min(float(block.mean()) for block in blocks) >= 252
    assert min(int(block.min()) for block in blocks) >= 240


@pytest.mark.parametrize("name", [e["file"] for e in MANIFEST if e["category"] == "photo"])
def test_reduced_scale_decode_costs_under_a_third_of_a_db(name: str) -> None:
    """Zoom PSNR against an exact Lanczos resize of the full decode, both encoded at
    q85: ours (DCT-scaled decode) within 0.3 dB of the naive full-decode path."""
    data = (CORPUS / name).read_bytes()
    full, size = load_srgb(io.BytesIO(data), MAX_PIXELS)
    target = fit_within(*size, 1200, 1200)
    exact_image = full.resize(target, Image.Resampling.LANCZOS)
    exact = np.asarray(exact_image)
    zoom_only = [Preset(name="zoom", max_width=1200, max_height=1200)]
    ours = render_presets(data, zoom_only, MAX_PIXELS).renditions[0]
    buffer = io.BytesIO()
    exact_image.save(buffer, "JPEG", quality=85, progressive=True, optimize=True)
    ours_db = psnr(exact, np.asarray(Image.open(io.BytesIO(ours.data)).convert("RGB")))
    naive_db = psnr(exact, np.asarray(Image.open(buffer).convert("RGB")))
    print(f"{name}: zoom {ours_db:.2f} dB, naive path {naive_db:.2f} dB")
    assert ours_db >= naive_db - 0.3, (ours_db, naive_db)
