"""Colour and geometry normalisation against independent references."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from skimage.color import deltaE_cie76, rgb2lab

from services.renderer.render import render_presets
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.hashing import hamming, perceptual_hash
from services.shared.imaging.normalize import load_srgb
from services.shared.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
PRESETS = Settings().presets
MAX_PIXELS = 50_000_000


@pytest.fixture(autouse=True, scope="module")
def _decoders() -> None:
    register_decoders()


def _littlecms_reference(name: str, size: tuple[int, int]) -> np.ndarray:
    """The file converted to sRGB by littlecms directly, then resized."""
    with Image.open(CORPUS / name) as image:
        source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    assert converted is not None
    return np.asarray(converted.resize(size, Image.Resampling.LANCZOS))


def _colour_delta_e(ours: np.ndarray, reference: np.ndarray) -> float:
    """Mean ΔE76 of the colours, compared per 4x4 block.

    JPEG's quantisation noise is per pixel and averages out over a block; a colour
    cast (a profile ignored or misapplied) does not.
    """
    height, width = (ours.shape[0] // 4) * 4, (ours.shape[1] // 4) * 4

    def blocks(pixels: np.ndarray) -> np.ndarray:
        cropped = pixels[:height, :width].astype(np.float64) / 255.0
        averaged: np.ndarray = cropped.reshape(height // 4, 4, width // 4, 4, 3).mean(axis=(1, 3))
        return averaged

    return float(deltaE_cie76(rgb2lab(blocks(ours)), rgb2lab(blocks(reference))).mean())


@pytest.mark.parametrize("name", ["jpeg_cmyk_swop_icc.jpg", "jpeg_adobergb_icc.jpg"])
def test_icc_profiled_images_match_a_direct_littlecms_conversion(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    # The colour pipeline itself, before encoding, is littlecms exactly.
    decoded, size = load_srgb(io.BytesIO(data), MAX_PIXELS)
    exact = float(
        deltaE_cie76(rgb2lab(np.asarray(decoded)), rgb2lab(_littlecms_reference(name, size))).mean()
    )
    assert exact < 0.5
    for rendition in render_presets(data, PRESETS, MAX_PIXELS).renditions:
        ours = np.asarray(Image.open(io.BytesIO(rendition.data)).convert("RGB"))
        reference = _littlecms_reference(name, (rendition.width, rendition.height))
        delta_e = _colour_delta_e(ours, reference)
        print(f"{name} {rendition.preset}: mean ΔE76 = {delta_e:.2f} (pipeline alone {exact:.2f})")
        assert delta_e < 3.0


def test_a_profile_that_changes_colours_is_applied() -> None:
    """jpeg_icc_rgb_to_gbr.jpg carries a profile that swaps channels: ignoring it shows."""
    data = (CORPUS / "jpeg_icc_rgb_to_gbr.jpg").read_bytes()
    rendered = render_presets(data, PRESETS, MAX_PIXELS).renditions
    card = next(r for r in rendered if r.preset == "card")
    ours = np.asarray(Image.open(io.BytesIO(card.data)).convert("RGB"))
    reference = _littlecms_reference("jpeg_icc_rgb_to_gbr.jpg", (card.width, card.height))
    naive = np.asarray(
        Image.open(io.BytesIO(data)).convert("RGB").resize((card.width, card.height))
    )
    assert float(deltaE_cie76(rgb2lab(ours), rgb2lab(reference)).mean()) < 3.0
    assert float(deltaE_cie76(rgb2lab(naive), rgb2lab(reference)).mean()) > 10.0


def test_the_eight_orientations_render_alike() -> None:
    hashes = []
    for orientation in range(1, 9):
        rendered = render_presets(
            (CORPUS / f"orient_Landscape_{orientation}.jpg").read_bytes(), PRESETS, MAX_PIXELS
        ).renditions
        zoom = Image.open(io.BytesIO(rendered[0].data))
        assert zoom.size == (1200, 800)
        hashes.append(perceptual_hash(zoom))
    assert max(hamming(a, b) for a in hashes for b in hashes) <= 4


def _broken_exif() -> bytes:
    """EXIF whose orientation is out of range and whose GPS IFD points past the end."""
    entries = [
        struct.pack("<HHII", 0x0112, 3, 1, 42),  # Orientation = 42 (SHORT)
        struct.pack("<HHII", 0x8825, 4, 1, 0xFFFF_FFF0),  # GPSInfo IFD far away (LONG)
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def test_broken_exif_is_ignored() -> None:
    """An out-of-range orientation and a corrupt GPS IFD never stop a render."""
    with Image.open(CORPUS / "edge_tiny_20x20.jpg") as image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", exif=_broken_exif())
    rendered = render_presets(buffer.getvalue(), PRESETS, MAX_PIXELS).renditions
    assert [(r.width, r.height) for r in rendered] == [(20, 20)] * 3
    assert all(not Image.open(io.BytesIO(r.data)).getexif() for r in rendered)


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        (
            "I;16",
            lambda: Image.fromarray(
                np.linspace(0, 65535, 64 * 48, dtype=np.uint16).reshape(48, 64)
            ),
        ),
        ("LA", lambda: Image.new("LA", (64, 48), (128, 0))),
        ("P", lambda: Image.new("P", (64, 48), 3)),
        ("1", lambda: Image.new("1", (64, 48), 1)),
        ("CMYK", lambda: Image.new("CMYK", (64, 48), (0, 255, 255, 0))),
    ],
)
def test_every_mode_becomes_rgb(mode: str, make: object) -> None:
    image = make()  # type: ignore[operator]
    assert image.mode == mode
    buffer = io.BytesIO()
    image.save(buffer, "TIFF" if mode in ("I;16", "CMYK") else "PNG")
    rendered = render_presets(buffer.getvalue(), PRESETS, MAX_PIXELS).renditions
    for rendition in rendered:
        assert Image.open(io.BytesIO(rendition.data)).mode == "RGB"
    if mode == "I;16":
        pixels = np.asarray(Image.open(io.BytesIO(rendered[0].data)).convert("L"), dtype=np.int16)
        assert pixels.min() < 20 and pixels.max() > 235, "16-bit range scaled, not clipped"
    if mode == "CMYK":
        red = np.asarray(Image.open(io.BytesIO(rendered[0].data)))[24, 32]
        assert red[0] > 200 and red[1] < 60 and red[2] < 60
