"""PSNR, SSIM and perceptual-hash distance between two images of the same size.

- PSNR over all RGB samples, data range 255; identical images give +inf.
- SSIM (Wang et al. 2004) on luma (BT.601), Gaussian window sigma 1.5 truncated at
  3.5 sigma (11 taps), K1 = 0.01, K2 = 0.03, population covariances, averaged over
  the positions where the window fits; the same numbers as scikit-image's
  `structural_similarity(gaussian_weights=True, use_sample_covariance=False)`.
  Images smaller than the window use one window over the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from services.shared.imaging.hashing import hamming, perceptual_hash

__all__ = ["GOOD_PSNR_DB", "Scores", "luma", "psnr", "score", "ssim"]

GOOD_PSNR_DB = 30.0
_SIGMA = 1.5
_TRUNCATE = 3.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Scores:
    psnr_db: float  # math.inf for identical images
    ssim: float
    hash_distance: int

    @property
    def good(self) -> bool:
        return self.psnr_db > GOOD_PSNR_DB


def _as_array(image: Image.Image) -> NDArray[np.uint8]:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def psnr(reference: NDArray[np.uint8], candidate: NDArray[np.uint8]) -> float:
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    difference = reference.astype(np.float64) - candidate.astype(np.float64)
    mse = float(np.mean(difference * difference))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def luma(rgb: NDArray[np.uint8]) -> Array:
    pixels = rgb.astype(np.float64)
    return pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114


@cache
def _kernel() -> Array:
    radius = int(_TRUNCATE * _SIGMA + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights: Array = np.exp(-(x * x) / (2 * _SIGMA * _SIGMA))
    normalised: Array = weights / weights.sum()
    return normalised


def _filter_valid(values: Array) -> Array:
    """Separable Gaussian filter, keeping only positions where the window fits."""
    kernel = _kernel()
    taps = len(kernel)
    rows = values.shape[0] - taps + 1
    cols = values.shape[1] - taps + 1
    vertical = sum(kernel[k] * values[k : k + rows, :] for k in range(taps))
    filtered: Array = np.asarray(sum(kernel[k] * vertical[:, k : k + cols] for k in range(taps)))
    return filtered


def ssim(reference: Array, candidate: Array) -> float:
    """SSIM of two greyscale float arrays of the same shape (values 0..255)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    if min(reference.shape) < len(_kernel()):
        mu_x, mu_y = reference.mean(), candidate.mean()
        var_x, var_y = reference.var(), candidate.var()
        cov = float(((reference - mu_x) * (candidate - mu_y)).mean())
        return float(
            ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2))
            / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
        )
    mu_x = _filter_valid(reference)
    mu_y = _filter_valid(candidate)
    xx = _filter_valid(reference * reference) - mu_x * mu_x
    yy = _filter_valid(candidate * candidate) - mu_y * mu_y
    xy = _filter_valid(reference * candidate) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _C1) * (2 * xy + _C2)) / (
        (mu_x * mu_x + mu_y * mu_y + _C1) * (xx + yy + _C2)
    )
    return float(ssim_map.mean())


def score(reference: Image.Image, candidate: Image.Image) -> Scores:
    """Scores of `candidate` against `reference` (same size, any modes)."""
    if reference.size != candidate.size:
        raise ValueError(f"sizes differ: {reference.size} vs {candidate.size}")
    ref, cand = _as_array(reference), _as_array(candidate)
    return Scores(
        psnr_db=psnr(ref, cand),
        ssim=ssim(luma(ref), luma(cand)),
        hash_distance=hamming(perceptual_hash(reference), perceptual_hash(candidate)),
    )
