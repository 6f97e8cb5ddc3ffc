"""ThumbHash against the reference implementation's output, and the dominant colour.

The expected hashes and decoded pixels come from the reference implementation,
js/thumbhash.js of github.com/evanw/thumbhash (npm `thumbhash` 0.1.1), run by
Node.js 20 on the same RGBA pixels. The inputs are built from arithmetic or from
lossless corpus files sampled by striding, so no decoder or resampler version can
change them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from skimage.color import deltaE_cie76, rgb2lab

from services.shared.imaging.decode import flatten_to_rgb
from services.shared.imaging.placeholders import (
    THUMBHASH_MAX_BYTES,
    dominant_colour,
    format_rgb_hex,
    thumbhash_average_rgb,
    thumbhash_decode,
    thumbhash_encode,
    thumbhash_from_rgba,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
Pixels = NDArray[np.uint8]
Grid = NDArray[np.int64]


def _pattern(width: int, height: int, alpha: Callable[[Grid, Grid], Grid] | None) -> Pixels:
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    channels = [(x * 37 + y * 11) % 256, (x * x + 3 * y) % 256, (x * y * 7 + 50) % 256]
    channels.append(np.full_like(x, 255) if alpha is None else alpha(x, y))
    return np.stack(channels, axis=-1).astype(np.uint8)


def _solid(width: int, height: int, rgba: tuple[int, int, int, int]) -> Pixels:
    return np.tile(np.array(rgba, dtype=np.uint8), (height, width, 1))


def _gradient(width: int, height: int) -> Pixels:
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    channels = [x * 255 // (width - 1), y * 255 // (height - 1), (x + y) % 256, 255 + 0 * x]
    return np.stack(channels, axis=-1).astype(np.uint8)


def _strided(name: str, step: int) -> Pixels:
    with Image.open(CORPUS / name) as image:
        rgba = image.convert("RGBA")
    return np.asarray(rgba)[::step, ::step]


def _left_half_clear(x: Grid, y: Grid) -> Grid:
    return np.where(x < x.shape[1] // 2, 0, 255).astype(np.int64)


def _ramp(x: Grid, y: Grid) -> Grid:
    ramp: Grid = (x * 255) // max(x.shape[1] - 1, 1)
    return ramp


INPUTS: dict[str, Callable[[], Pixels]] = {
    "pattern 100x75": lambda: _pattern(100, 75, None),
    "pattern 41x97": lambda: _pattern(41, 97, None),
    "pattern 100x1": lambda: _pattern(100, 1, None),
    "pattern 1x100": lambda: _pattern(1, 100, None),
    "pattern 1x1": lambda: _pattern(1, 1, None),
    "pattern 100x50 half clear": lambda: _pattern(100, 50, _left_half_clear),
    "pattern 50x100 half clear": lambda: _pattern(50, 100, _left_half_clear),
    "pattern 90x90 alpha ramp": lambda: _pattern(90, 90, _ramp),
    "solid 40x30": lambda: _solid(40, 30, (200, 120, 40, 255)),
    "solid 17x83": lambda: _solid(17, 83, (12, 200, 250, 255)),
    "solid 64x64 half opaque": lambda: _solid(64, 64, (90, 60, 30, 128)),
    "gradient 100x60": lambda: _gradient(100, 60),
    "dice (RGBA) every 3rd pixel": lambda: _strided("png_rgba_dice.png", 3),
    "hopper every 2nd pixel": lambda: _strided("bmp_hopper_24bit.bmp", 2),
    "webp alpha every 10th pixel": lambda: _strided("webp_lossless_alpha.webp", 10),
    "palette tRNS every 3rd pixel": lambda: _strided("png_palette_trns.png", 3),
}

# The reference's rgbaToThumbHash of each input, in hex.
REFERENCE_HASHES = {
    "pattern 100x75": "1f080205825567643004355386359a63dd0876f7cf",
    "pattern 41x97": "1f08020b0444550623a766769c5790aaf9",
    "pattern 100x1": "171a2e8188777778888808887788908808",
    "pattern 1x100": "171a32890c08877888888778088685e5f8",
    "pattern 1x1": "44060a670008f708888788708f7088f80888707ff8000000",
    "pattern 100x50 half clear": "1f088203825887a68767c0f48a8386f7808a8888788888",
    "pattern 50x100 half clear": "1f08820300583978480c5ca7785f0d5b808a8878788888",
    "pattern 90x90 alpha ramp": "1f08820500377779b376845808d73f8df7c180878888887878",
    "solid 40x30": "9e9b02058078787887887787878887708f75894088",
    "solid 17x83": "a6830001008788e87773800d68868f8808",
    "solid 64x64 half opaque": "4f3982050008080f7777797778087ab850776f4b8978887778",
    "gradient 100x60": "5b090e1c9a808787718787888887847008f877",
    "dice (RGBA) every 3rd pixel": "5638821484246fd1d01c68b60003333a928070b77847a87605",
    "hopper every 2nd pixel": "96170a2f0650b6795e8787a1988877b76788d840590e9503",
    "webp alpha every 10th pixel": "43f8810a8024720d7878c57078f478b887878787707778",
    "palette tRNS every 3rd pixel": "5538821484246fe1d00c67c60003233a928070b77847a87605",
}

# An example hash published with ThumbHash.
PUBLISHED = "1QcSHQRnh493V4dIh4eXh1h4kJUI"
# The reference's thumbHashToRGBA of it and of some of the hashes above: the size and
# the first 128 bits of the SHA-256 of the RGBA pixels.
DECODED: list[tuple[str, tuple[int, int], str]] = [
    (PUBLISHED, (23, 32), "e73a084f2484aae39468faf77fdc0642"),
    ("HwgCCwREVQYjp2Z2nFeQqvk=", (14, 32), "4df94b423d171bf2e9eed94a255db7ee"),
    ("FxougYh3d3iIiAiId4iQiAg=", (32, 5), "e86fe4c71bcb01915b2b0db5c83f067f"),
    ("FxoyiQwIh3iIiId4CIaF5fg=", (5, 32), "4473e6b5636115cd8bc633cd1d0f6c1b"),
    ("RAYKZwAI9wiIh4hwj3CI+AiIcH/4AAAA", (32, 32), "f2f1b335d50026f6cdb4600eae7296af"),
    ("HwiCA4JYh6aHZ8D0ioOG94CKiIh4iIg=", (32, 19), "5ed6980d68ab0fec35d1ce1381b7e8ee"),
    ("HwiCAwBYOXhIDFyneF8NW4CKiHh4iIg=", (19, 32), "121a544d31d4d065c80e8f467e13b091"),
    ("HwiCBQA3d3mzdoRYCNc/jffBgIeIiIh4eA==", (32, 32), "4e0eb1749d0f2b94bad8aaf1f95abc2f"),
    ("TzmCBQAICA93d3l3eAh6uFB3b0uJeIh3eA==", (32, 32), "5549f6ea35d63147b44499abc639be72"),
    ("VjiCFIQkb9HQHGi2AAMzOpKAcLd4R6h2BQ==", (32, 26), "eb847ddd7a1d5c15750ffcf96d553c6d"),
    ("lhcKLwZQtnleh4ehmIh3t2eI2EBZDpUD", (32, 32), "a0da13c5195bc79d9d8580be160a9c65"),
    ("Q/iBCoAkcg14eMVwePR4uIeHh4dwd3g=", (32, 13), "6040cc81421d9ec5a6250238d125be7a"),
]


@pytest.mark.parametrize("label", INPUTS)
def test_encoding_matches_the_reference_bit_for_bit(label: str) -> None:
    pixels = INPUTS[label]()
    assert thumbhash_from_rgba(pixels).hex() == REFERENCE_HASHES[label]
    if min(pixels.shape[:2]) >= 7:
        # Pixels that fit need no resizing: the image gives the same hash.
        assert thumbhash_encode(Image.fromarray(pixels)).hex() == REFERENCE_HASHES[label]


def test_pixels_the_reference_refuses_are_refused() -> None:
    with pytest.raises(ValueError, match="doesn't fit"):
        thumbhash_from_rgba(np.zeros((101, 50, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 pixels"):
        thumbhash_from_rgba(np.zeros((10, 10, 3), dtype=np.uint8))


@pytest.mark.parametrize(("encoded", "size", "digest"), DECODED)
def test_decoding_matches_the_reference_pixel_for_pixel(
    encoded: str, size: tuple[int, int], digest: str
) -> None:
    decoded = thumbhash_decode(base64.b64decode(encoded))
    assert decoded.mode == "RGBA"
    assert decoded.size == size
    assert hashlib.sha256(decoded.tobytes()).hexdigest()[:32] == digest


def test_the_average_colour_is_read_from_the_header() -> None:
    assert thumbhash_average_rgb(base64.b64decode(PUBLISHED)) == (86, 82, 88)


@pytest.mark.parametrize(
    "colour", [(0, 0, 0), (255, 255, 255), (200, 120, 40), (12, 200, 250), (128, 128, 128)]
)
@pytest.mark.parametrize("size", [(40, 30), (30, 40), (1, 1), (300, 7), (500, 1), (1, 3)])
def test_a_solid_colour_decodes_to_that_colour(
    colour: tuple[int, int, int], size: tuple[int, int]
) -> None:
    encoded = thumbhash_encode(Image.new("RGB", size, colour))
    decoded = np.asarray(thumbhash_decode(encoded)).astype(np.int64)
    assert np.abs(decoded[..., :3] - np.array(colour)).max() <= 6
    assert (decoded[..., 3] == 255).all()
    assert np.abs(np.array(thumbhash_average_rgb(encoded)) - colour).max() <= 6


def _mean_lab(rgb: NDArray[np.float64]) -> NDArray[np.float64]:
    mean = rgb.reshape(-1, 3).mean(axis=0) / 255.0
    lab: NDArray[np.float64] = rgb2lab(mean.reshape(1, 1, 3))
    return lab


def _rendition(name: str) -> Image.Image:
    """The file as callers have it: RGB, alpha flattened, at most 200 px."""
    with Image.open(CORPUS / name) as image:
        image.draft("RGB", (200, 200))
        image.load()
        rgb = flatten_to_rgb(image)
        rgb.thumbnail((200, 200), Image.Resampling.LANCZOS)
    return rgb


CORPUS_IMAGES = [
    "photo_craft-beer_6000x4000.jpg",
    "photo_iphone6_gps.jpg",
    "photo_moto_g9_empty_gps.jpg",
    "photo_olympus_ep3_12mp.jpg",
    "jpeg_progressive_portrait.jpg",
    "png_rgba_dice.png",
    "webp_lossless_alpha.webp",
    "webp_lossy_denali.webp",
    "bmp_hopper_24bit.bmp",
    "edge_extreme_wide_940x2.png",
]


@pytest.mark.parametrize("name", CORPUS_IMAGES)
def test_the_decoded_placeholder_keeps_the_mean_colour(name: str) -> None:
    source = _rendition(name)
    encoded = thumbhash_encode(source)
    assert len(encoded) <= THUMBHASH_MAX_BYTES
    decoded = np.asarray(thumbhash_decode(encoded).convert("RGB"), dtype=np.float64)
    expected = _mean_lab(np.asarray(source, dtype=np.float64))
    delta_e = float(deltaE_cie76(_mean_lab(decoded), expected)[0, 0])
    header = np.array(thumbhash_average_rgb(encoded), dtype=np.float64)
    header_delta_e = float(deltaE_cie76(_mean_lab(header), expected)[0, 0])
    print(f"{name}: mean ΔE76 {delta_e:.2f}, header average {header_delta_e:.2f}")
    assert delta_e < 10
    assert header_delta_e < 10


def _aspect_flags(encoded: bytes) -> tuple[bool, bool]:
    """(has alpha, is landscape), as the format stores them."""
    return bool(encoded[2] & 0x80), bool(encoded[4] & 0x80)


@pytest.mark.parametrize(
    ("size", "landscape", "decoded_size"),
    [
        ((200, 133), True, (32, 23)),
        ((133, 200), False, (23, 32)),
        ((150, 150), False, (32, 32)),
        ((940, 2), True, (32, 5)),
        ((2, 940), False, (5, 32)),
        ((1, 1), False, (32, 32)),
        ((1200, 800), True, (32, 23)),
    ],
)
def test_any_shape_is_encoded_within_the_size_bound(
    size: tuple[int, int], landscape: bool, decoded_size: tuple[int, int]
) -> None:
    width, height = size
    image = Image.fromarray(_pattern(width, height, None)[..., :3])
    encoded = thumbhash_encode(image)
    assert 5 <= len(encoded) <= THUMBHASH_MAX_BYTES
    assert _aspect_flags(encoded) == (False, landscape)
    assert thumbhash_decode(encoded).size == decoded_size


def test_a_large_image_is_shrunk_to_100_px_first() -> None:
    large = Image.fromarray(_gradient(1200, 800)[..., :3])
    small = large.resize((100, 67), Image.Resampling.BOX)
    assert thumbhash_encode(large) == thumbhash_encode(small)


def test_transparency_sets_the_alpha_flag_and_survives_decoding() -> None:
    pixels = _pattern(100, 60, _left_half_clear)
    encoded = thumbhash_encode(Image.fromarray(pixels))
    assert _aspect_flags(encoded) == (True, True)
    alpha = np.asarray(thumbhash_decode(encoded))[..., 3].astype(np.int64)
    assert alpha[:, :8].mean() < 64
    assert alpha[:, -8:].mean() > 192


def test_opaque_rgba_is_encoded_like_rgb() -> None:
    rgb = Image.fromarray(_pattern(80, 60, None)[..., :3])
    encoded = thumbhash_encode(rgb.convert("RGBA"))
    assert encoded == thumbhash_encode(rgb)
    assert _aspect_flags(encoded) == (False, True)


@pytest.mark.parametrize("mode", ["LA", "PA", "P"])
def test_other_modes_with_transparency_keep_it(mode: str) -> None:
    pixels = _pattern(64, 48, _left_half_clear)
    image = Image.fromarray(pixels)
    if mode == "P":
        converted = image.convert("P")
        converted.info["transparency"] = converted.getpixel((0, 0))
    else:
        converted = image.convert(mode)
    assert _aspect_flags(thumbhash_encode(converted))[0]


def test_malformed_hashes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 5 bytes"):
        thumbhash_decode(b"\x01\x02")
    with pytest.raises(ValueError, match="truncated"):
        thumbhash_decode(base64.b64decode(PUBLISHED)[:10])
    with pytest.raises(ValueError, match="at least 5 bytes"):
        thumbhash_average_rgb(b"")


MAJORITY = (196, 64, 48)
MINORITY = (40, 96, 200)


def _two_colours(size: tuple[int, int], noise: float, seed: int) -> Image.Image:
    """70% MAJORITY (in two separate areas) and 30% MINORITY, with Gaussian noise."""
    width, height = size
    x = np.arange(width)[None, :].repeat(height, axis=0)
    minority = (x >= width * 0.35) & (x < width * 0.65)
    pixels = np.where(minority[..., None], MINORITY, MAJORITY).astype(np.float64)
    pixels += np.random.default_rng(seed).normal(0, noise, pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("noise", [0.0, 6.0, 18.0])
@pytest.mark.parametrize("size", [(300, 200), (40, 30), (1000, 3)])
def test_the_dominant_colour_is_the_majority(noise: float, size: tuple[int, int]) -> None:
    image = _two_colours(size, noise, seed=7)
    colour = dominant_colour(image)
    assert np.abs(np.array(colour) - MAJORITY).max() <= 8, colour
    assert dominant_colour(image) == colour
    assert dominant_colour(image.copy()) == colour
    assert dominant_colour(image.convert("RGBA")) == colour


def test_the_dominant_colour_of_a_solid_image_is_its_colour() -> None:
    assert dominant_colour(Image.new("RGB", (1, 1), (10, 20, 30))) == (10, 20, 30)
    assert dominant_colour(Image.new("RGB", (500, 80), (250, 251, 252))) == (250, 251, 252)


def test_colours_format_as_css_hex() -> None:
    assert format_rgb_hex((0, 128, 255)) == "#0080ff"
    assert format_rgb_hex((171, 205, 239)) == "#abcdef"
