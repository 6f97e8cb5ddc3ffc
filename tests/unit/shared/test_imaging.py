"""Image inspection over the whole corpus, and the perceptual hash against imagehash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imagehash
import pytest
from PIL import Image, ImageOps

from services.shared.errors import InvalidImage
from services.shared.imaging.decode import inspect_image
from services.shared.imaging.formats import describe_non_image, format_from_name, format_name
from services.shared.imaging.hashing import format_hash, hamming, parse_hash, perceptual_hash

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())
MAX_PIXELS = 50_000_000


@pytest.mark.parametrize(
    "entry", [e for e in MANIFEST if e["expect"] == "accept"], ids=lambda e: e["file"]
)
def test_accepted_corpus_images_are_inspected_with_their_oriented_size(
    entry: dict[str, Any],
) -> None:
    facts = inspect_image(CORPUS / entry["file"], MAX_PIXELS)
    assert (facts.width, facts.height) == tuple(entry["oriented_size"])
    assert facts.frame_count == entry["frames"]
    assert facts.pillow_format == entry["format"]


@pytest.mark.parametrize(
    "entry", [e for e in MANIFEST if e["expect"] == "reject"], ids=lambda e: e["file"]
)
def test_rejected_corpus_files_are_refused_with_a_reason(entry: dict[str, Any]) -> None:
    with pytest.raises(InvalidImage) as refused:
        inspect_image(CORPUS / entry["file"], MAX_PIXELS)
    assert refused.value.reason.startswith("IMAGE_")
    assert refused.value.reason != "IMAGE_INVALID"


def test_refusal_messages_name_the_problem() -> None:
    messages = {}
    for name in (
        "invalid_truncated_60pct.jpg",
        "invalid_html_404.jpg",
        "invalid_bomb_9643x10328.jpg",
    ):
        with pytest.raises(InvalidImage) as refused:
            inspect_image(CORPUS / name, MAX_PIXELS)
        messages[name] = refused.value.message
    assert "truncated JPEG" in messages["invalid_truncated_60pct.jpg"]
    assert "HTML" in messages["invalid_html_404.jpg"]
    assert messages["invalid_bomb_9643x10328.jpg"] == "image is 99.6 MP, limit is 50 MP"


@pytest.mark.parametrize(
    "name",
    [e["file"] for e in MANIFEST if e["category"] in ("photo", "exif_orientation")],
)
def test_perceptual_hash_matches_imagehash_phash(name: str) -> None:
    with Image.open(CORPUS / name) as image:
        oriented = ImageOps.exif_transpose(image.convert("RGB"))
    expected = int(str(imagehash.phash(oriented)), 16)
    assert perceptual_hash(oriented) == expected
    # The draft decode ingest uses gives the same hash as the full decode.
    assert inspect_image(CORPUS / name, MAX_PIXELS).perceptual_hash == expected


def test_eight_orientations_of_one_picture_hash_alike() -> None:
    hashes = {
        inspect_image(CORPUS / f"orient_Landscape_{n}.jpg", MAX_PIXELS).perceptual_hash
        for n in range(1, 9)
    }
    first = next(iter(hashes))
    assert all(hamming(first, other) <= 4 for other in hashes)


def test_hash_helpers_round_trip() -> None:
    value = 0xF00D_CAFE_0123_4567
    assert parse_hash(format_hash(value)) == value
    assert format_hash(1) == "0000000000000001"
    assert hamming(0, (1 << 64) - 1) == 64
    with pytest.raises(ValueError, match="16 hex digits"):
        parse_hash("abc")


def test_format_names_round_trip() -> None:
    for name in ("jpeg", "png", "webp", "gif", "tiff", "bmp", "avif", "heif"):
        assert format_name(format_from_name(name)) == name


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"<?xml version='1.0'?><root/>", "looks like XML"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"<!DOCTYPE html><html>", "looks like HTML"),
        (b"%PDF-1.7\n", "PDF"),
        (b"just some words in a text file\n", "looks like text"),
        (bytes(range(256)), "not an image in an accepted format"),
    ],
)
def test_non_images_are_described(head: bytes, expected: str) -> None:
    assert expected in describe_non_image(head)
