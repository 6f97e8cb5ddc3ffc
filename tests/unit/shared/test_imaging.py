"""Image inspection over the whole corpus, and the perceptual hash against imagehash."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

from services.quality.compare import compare_renditions
from services.renderer.render import render_presets
from services.shared.errors import InvalidImage
from services.shared.imaging.decode import (
    exif_orientation,
    inspect_image,
    open_untrusted,
    register_decoders,
)
from services.shared.imaging.formats import describe_non_image, format_from_name, format_name
from services.shared.imaging.hashing import format_hash, hamming, parse_hash, perceptual_hash
from services.shared.imaging.normalize import load_srgb
from services.shared.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())
MAX_PIXELS = 50_000_000


@pytest.fixture(autouse=True, scope="module")
def _decoders() -> None:
    register_decoders()


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


# -- Damaged files: one guarded path, never anything but InvalidImage --------------------

EXPECTED_REASON = {
    "invalid_truncated": "IMAGE_TRUNCATED",
    "invalid_garbage_after_header": "IMAGE_CORRUPT",
}
DAMAGED = [e for e in MANIFEST if e["category"] in EXPECTED_REASON]


def _frames(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(4)
    return [
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(count)
    ]


def _multi_frame(pillow_format: str, **options: Any) -> bytes:
    frames = _frames(4)
    buffer = io.BytesIO()
    frames[0].save(buffer, pillow_format, save_all=True, append_images=frames[1:], **options)
    return buffer.getvalue()


def _refusal(call: Callable[[], object]) -> InvalidImage:
    with pytest.raises(InvalidImage) as refused:
        call()
    return refused.value


@pytest.mark.parametrize("entry", DAMAGED, ids=lambda e: e["file"])
def test_damaged_files_are_refused_by_every_reader(entry: dict[str, Any]) -> None:
    """Ingest (inspect_image), the renderer (render_presets) and quality
    (compare_renditions) refuse a damaged original with the same reason."""
    path = CORPUS / entry["file"]
    data = path.read_bytes()
    expected = EXPECTED_REASON[entry["category"]]
    readers: list[Callable[[], object]] = [
        lambda: inspect_image(path, MAX_PIXELS),
        lambda: load_srgb(io.BytesIO(data), MAX_PIXELS),
        lambda: render_presets(data, Settings().presets, MAX_PIXELS),
        lambda: compare_renditions(data, [], MAX_PIXELS),
    ]
    for read in readers:
        refusal = _refusal(read)
        assert refusal.reason == expected, refusal.message
        assert ("truncated" if expected == "IMAGE_TRUNCATED" else "corrupt") in refusal.message


@pytest.mark.parametrize(
    ("pillow_format", "options"),
    [
        ("GIF", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("WEBP", {"lossless": True}),
        ("PNG", {}),  # APNG
    ],
)
def test_a_multi_frame_file_cut_anywhere_is_truncated(
    pillow_format: str, options: dict[str, Any], tmp_path: Path
) -> None:
    """Cut at 60 points from the first bytes to the last few: every cut is refused
    IMAGE_TRUNCATED, whether Pillow fails at open, counting frames (IndexError,
    struct.error, TypeError), decoding, or not at all (a GIF whose later frames are
    missing decodes its first frame fine). A TIFF's last 9 bytes are spared: Pillow's
    TIFF writer pads up to 8 bytes that no directory refers to after its last value.
    A PNG or WebP also loses just its last byte, a GIF its last two (the last frame's
    block terminator and the trailer: a GIF missing only its trailer is whole)."""
    data = _multi_frame(pillow_format, **options)
    path = tmp_path / "cut"
    ends = list(np.linspace(40, len(data) - 9, 60).astype(int))
    if pillow_format != "TIFF":
        ends.append(len(data) - (2 if pillow_format == "GIF" else 1))
    for end in ends:
        cut = data[:end]
        path.write_bytes(cut)
        refusal = _refusal(lambda: inspect_image(path, MAX_PIXELS))
        assert refusal.reason == "IMAGE_TRUNCATED", (end, refusal.message)
        refusal = _refusal(lambda: load_srgb(io.BytesIO(cut), MAX_PIXELS))  # noqa: B023
        assert refusal.reason == "IMAGE_TRUNCATED", (end, refusal.message)
    assert inspect_image(_written(tmp_path / "whole", data), MAX_PIXELS).frame_count == 4


def test_a_gif_without_its_trailer_is_whole(tmp_path: Path) -> None:
    data = _multi_frame("GIF")
    assert data.endswith(b"\x00;")
    facts = inspect_image(_written(tmp_path / "no-trailer.gif", data[:-1]), MAX_PIXELS)
    assert facts.frame_count == 4


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _flipped_png() -> bytes:
    buffer = io.BytesIO()
    _frames(1)[0].save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[data.index(b"IDAT") + 4 + len(data) // 2] ^= 0xFF
    return bytes(data)


def test_a_decode_error_is_never_taken_for_broken_exif() -> None:
    """Reading a PNG's EXIF decodes it (an eXIf chunk may follow IDAT): on corrupt data
    that decode error propagates, it is not answered as "orientation 1"."""
    image = open_untrusted(io.BytesIO(_flipped_png()), MAX_PIXELS)
    with pytest.raises(OSError, match="data stream"):
        exif_orientation(image)


def test_a_corrupt_png_is_refused_whatever_was_read_before(tmp_path: Path) -> None:
    """The proof decodes its own freshly opened image: metadata read earlier by
    anyone (here: the image already "loaded" by a swallowed getexif) changes nothing."""
    data = _flipped_png()
    earlier = open_untrusted(io.BytesIO(data), MAX_PIXELS)
    with contextlib.suppress(OSError):
        earlier.getexif()  # the old order: EXIF first, its decode error swallowed
    path = _written(tmp_path / "flipped.png", data)
    assert _refusal(lambda: inspect_image(path, MAX_PIXELS)).reason == "IMAGE_CORRUPT"
    assert _refusal(lambda: load_srgb(io.BytesIO(data), MAX_PIXELS)).reason == "IMAGE_CORRUPT"


@pytest.mark.parametrize(
    "name",
    [
        "gif_animated_rotating_earth.gif",
        "webp_animated_loop3.webp",
        "tiff_adobe_deflate.tif",
        "png_rgba_dice.png",
        "png_trns_rgb16.png",
        "jpeg_mpo_3ds_stereo.jpg",
        "bmp_hopper_24bit.bmp",
    ],
)
def test_flipped_bits_raise_nothing_but_invalid_image(name: str) -> None:
    """A seeded handful of bit flips per file: each copy is accepted or refused with
    an IMAGE_ reason; no other exception escapes the guarded path."""
    original = (CORPUS / name).read_bytes()
    rng = np.random.default_rng(15)
    reasons = []
    for _ in range(25):
        data = bytearray(original)
        for position in rng.integers(0, len(data), 3):
            data[position] ^= 1 << int(rng.integers(0, 8))
        try:
            load_srgb(io.BytesIO(bytes(data)), MAX_PIXELS)
            reasons.append("accepted")
        except InvalidImage as refused:
            reasons.append(refused.reason)
    assert all(r == "accepted" or r.startswith("IMAGE_") for r in reasons), reasons
    assert len(reasons) == 25
