"""PSNR and SSIM checked against scikit-image as an independent implementation."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from services.quality.compare import RenditionBytes, compare_renditions
from services.renderer.render import render_presets
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.metrics import luma, psnr, score, ssim
from services.shared.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "corpus"


def _pair(seed: int, shape: tuple[int, ...], noise: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(np.int16) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(
        np.uint8
    )
    return a, b


@pytest.mark.parametrize(
    ("shape", "noise"), [((64, 80, 3), 3), ((300, 200, 3), 25), ((11, 40, 3), 60)]
)
def test_psnr_and_ssim_match_scikit_image(shape: tuple[int, ...], noise: int) -> None:
    a, b = _pair(7, shape, noise)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)
    expected = structural_similarity(
        luma(a),
        luma(b),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(luma(a), luma(b)) == pytest.approx(expected, abs=1e-9)


def test_ssim_on_a_real_photo_matches_scikit_image() -> None:
    with Image.open(CORPUS / "webp_lossy_denali.webp") as image:
        reference = np.asarray(image.convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(reference).save(buffer, "JPEG", quality=40)
    candidate = np.asarray(Image.open(buffer).convert("RGB"))
    expected = structural_similarity(
        luma(reference),
        luma(candidate),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(luma(reference), luma(candidate)) == pytest.approx(expected, abs=1e-9)


def test_identical_images_have_infinite_psnr_and_unit_ssim() -> None:
    image = Image.open(CORPUS / "bmp_hopper_24bit.bmp").convert("RGB")
    result = score(image, image.copy())
    assert math.isinf(result.psnr_db) and result.good
    assert result.ssim == pytest.approx(1.0)
    assert result.hash_distance == 0


def test_tiny_images_use_one_window() -> None:
    a, b = _pair(3, (2, 5, 3), 10)
    value = ssim(luma(a), luma(b))
    assert -1.0 <= value <= 1.0
    assert ssim(luma(a), luma(a)) == pytest.approx(1.0)


def test_renditions_of_a_photo_score_as_good() -> None:
    register_decoders()
    data = (CORPUS / "photo_iphone6_gps.jpg").read_bytes()
    rendered = render_presets(data, Settings().presets, 50_000_000).renditions
    scores = compare_renditions(
        data, [RenditionBytes(r.preset, r.data) for r in rendered], 50_000_000
    )
    for rendition, result in zip(rendered, scores, strict=True):
        assert result.psnr_db > 30, (rendition.preset, result)
        assert result.ssim > 0.9, (rendition.preset, result)
        assert result.hash_distance <= 4
