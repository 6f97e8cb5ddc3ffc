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

from imagepipe.v1 import common_pb2
from services.shared.imaging.hashing import hamming, perceptual_hash

__all__ = ["GOOD_PSNR_DB", "Scores", "SsimReference", "luma", "psnr", "score", "ssim"]

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

    def message(self) -> common_pb2.QualityScores:
        """The wire form: an infinite PSNR as the flag (psnr_db is then meaningless)."""
        infinite = math.isinf(self.psnr_db)
        return common_pb2.QualityScores(
            psnr_db=self.psnr_db,
            psnr_infinite=infinite,
            ssim=self.ssim,
            hash_distance=self.hash_distance,
        )


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


# Output rows computed per band: a band's intermediates (three quantities of about
# 48 x 1200 doubles) stay in the CPU cache instead of streaming whole images through
# memory for every tap, which makes SSIM of a 1200 px image about twice as fast; the
# quality search computes it several times per rendition.
_BAND_ROWS = 48


class _BandFilter:
    """Separable Gaussian filter over bands of rows, keeping only the positions where
    the window fits. Works on stacks (..., rows, width): several quantities share one
    pass. The kernel is symmetric, so mirrored taps are added before the multiply."""

    def __init__(self, stack: tuple[int, ...], width: int) -> None:
        self.kernel = _kernel()
        self.taps = len(self.kernel)
        self.cols = width - self.taps + 1
        self._vertical: Array = np.empty((*stack, _BAND_ROWS, width))
        self._vertical_pair: Array = np.empty_like(self._vertical)
        self._horizontal_pair: Array = np.empty((*stack, _BAND_ROWS, self.cols))

    def __call__(self, source: Array, out: Array) -> None:
        """Filter `source` (..., n + taps - 1, width) into `out` (..., n, cols)."""
        kernel, taps, cols = self.kernel, self.taps, self.cols
        half = taps // 2
        n = out.shape[-2]
        v, v_pair = self._vertical[..., :n, :], self._vertical_pair[..., :n, :]
        np.multiply(source[..., half : half + n, :], kernel[half], out=v)
        for k in range(half):
            mirror = taps - 1 - k
            np.add(source[..., k : k + n, :], source[..., mirror : mirror + n, :], out=v_pair)
            v_pair *= kernel[k]
            v += v_pair
        h_pair = self._horizontal_pair[..., :n, :]
        np.multiply(v[..., half : half + cols], kernel[half], out=out)
        for k in range(half):
            mirror = taps - 1 - k
            np.add(v[..., k : k + cols], v[..., mirror : mirror + cols], out=h_pair)
            h_pair *= kernel[k]
            out += h_pair


def _filter_valid(values: Array) -> Array:
    """Gaussian filter of a 2-D array, keeping only positions where the window fits."""
    band_filter = _BandFilter((), values.shape[1])
    rows = values.shape[0] - band_filter.taps + 1
    filtered: Array = np.empty((rows, band_filter.cols))
    for start in range(0, rows, _BAND_ROWS):
        n = min(_BAND_ROWS, rows - start)
        band_filter(values[start : start + n + band_filter.taps - 1], filtered[start : start + n])
    return filtered


class SsimReference:
    """SSIM of candidates against one fixed greyscale reference (values 0..255).

    A quality search scores several encodings of the same image: the reference's
    local means and variances are filtered once here, so each candidate costs three
    filters instead of five, computed band by band together with the SSIM map.
    `SsimReference(x)(y)` is exactly `ssim(x, y)`.
    """

    def __init__(self, reference: Array) -> None:
        self._reference = reference
        self._windowed = min(reference.shape) >= len(_kernel())
        if self._windowed:
            self._mu_x = _filter_valid(reference)
            self._xx = _filter_valid(reference * reference) - self._mu_x * self._mu_x

    def __call__(self, candidate: Array) -> float:
        reference = self._reference
        if reference.shape != candidate.shape:
            raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
        if not self._windowed:
            # Smaller than the window: one window over the whole image.
            mu_x, mu_y = reference.mean(), candidate.mean()
            var_x, var_y = reference.var(), candidate.var()
            cov = float(((reference - mu_x) * (candidate - mu_y)).mean())
            return float(
                ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2))
                / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
            )
        band_filter = _BandFilter((3,), reference.shape[1])
        taps = band_filter.taps
        rows, cols = self._mu_x.shape
        # Per band: candidate, its square and its product with the reference, filtered.
        source: Array = np.empty((3, _BAND_ROWS + taps - 1, reference.shape[1]))
        filtered: Array = np.empty((3, _BAND_ROWS, cols))
        total = 0.0
        for start in range(0, rows, _BAND_ROWS):
            n = min(_BAND_ROWS, rows - start)
            m = n + taps - 1
            x, y = reference[start : start + m], candidate[start : start + m]
            band = source[:, :m]
            band[0] = y
            np.multiply(y, y, out=band[1])
            np.multiply(x, y, out=band[2])
            out = filtered[:, :n]
            band_filter(band, out)
            mu_x, xx = self._mu_x[start : start + n], self._xx[start : start + n]
            mu_y = out[0]
            yy = out[1] - mu_y * mu_y
            xy = out[2] - mu_x * mu_y
            ssim_map = ((2 * mu_x * mu_y + _C1) * (2 * xy + _C2)) / (
                (mu_x * mu_x + mu_y * mu_y + _C1) * (xx + yy + _C2)
            )
            total += float(ssim_map.sum())
        return total / float(rows * cols)


def ssim(reference: Array, candidate: Array) -> float:
    """SSIM of two greyscale float arrays of the same shape (values 0..255)."""
    return SsimReference(reference)(candidate)


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
