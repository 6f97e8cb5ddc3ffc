"""Scoring renditions against their original: plain functions, run in a worker process.

The reference for a rendition is the original decoded in full, oriented, in sRGB,
and resized to the rendition's size with Lanczos; the rendition is compared with
it (PSNR, SSIM, perceptual-hash distance).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from services.shared.imaging.decode import inspect_image
from services.shared.imaging.metrics import Scores, score
from services.shared.imaging.normalize import load_srgb

__all__ = ["ComparedImage", "RenditionBytes", "compare_images", "compare_renditions"]


@dataclass(frozen=True)
class RenditionBytes:
    preset: str
    data: bytes


@dataclass(frozen=True)
class ComparedImage:
    pillow_format: str
    width: int
    height: int
    size_bytes: int
    perceptual_hash: int


def _reference(original: Image.Image, size: tuple[int, int]) -> Image.Image:
    return original if original.size == size else original.resize(size, Image.Resampling.LANCZOS)


def compare_renditions(
    original: bytes, renditions: Sequence[RenditionBytes], max_pixels: int
) -> list[Scores]:
    """Scores of each rendition against the resized original, in order."""
    reference, _ = load_srgb(io.BytesIO(original), max_pixels)
    scores = []
    for rendition in renditions:
        candidate, _ = load_srgb(io.BytesIO(rendition.data), max_pixels)
        scores.append(score(_reference(reference, candidate.size), candidate))
    return scores


def compare_images(
    reference_path: Path, candidate_path: Path, max_pixels: int
) -> tuple[ComparedImage, ComparedImage, Scores, bool]:
    """Validate both uploads, then score the candidate against the reference.

    Returns both images' facts, the scores and whether the reference was resized.
    """
    described = []
    for path in (reference_path, candidate_path):
        facts = inspect_image(path, max_pixels)
        described.append(
            ComparedImage(
                facts.pillow_format,
                facts.width,
                facts.height,
                path.stat().st_size,
                facts.perceptual_hash,
            )
        )
    reference, _ = load_srgb(reference_path, max_pixels)
    candidate, _ = load_srgb(candidate_path, max_pixels)
    resized = reference.size != candidate.size
    scores = score(_reference(reference, candidate.size), candidate)
    return described[0], described[1], scores, resized
