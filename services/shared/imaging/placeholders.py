"""Placeholders shown while an image loads: a ThumbHash and a dominant colour.

ThumbHash (Evan Wallace, https://evanw.github.io/thumbhash/) stores an image's
average colour, approximate aspect ratio and the lowest DCT frequencies of its
luminance, two chroma channels and alpha in at most 25 bytes, from which a client
draws a blurred preview. `thumbhash_from_rgba` and `thumbhash_decode` port the
reference `rgbaToThumbHash` and `thumbHashToRGBA` (js/thumbhash.js) so that other
implementations read the same bytes and draw the same pixels; `thumbhash_encode`
brings any Pillow image to the pixels the former takes.

The ports do the reference's float64 operations in its order (sums accumulate
strictly left to right, cosines of the same arguments), round as JavaScript's
`Math.round` (halves up, not to even) and truncate as `Uint8Array`; only the loops
over pixels are vectorised. Cosines come from a port of fdlibm's, which V8 (so
Node.js) uses for `Math.cos`: the C library's cosine differs from it in the last
bit for about 3% of the arguments used here, enough to flip a stored nibble now
and then.
"""

from __future__ import annotations

import math
import struct
from functools import cache
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from services.shared.imaging.decode import flatten_to_rgb
from services.shared.imaging.normalize import fit_within

__all__ = [
    "THUMBHASH_MAX_BYTES",
    "dominant_colour",
    "format_rgb_hex",
    "thumbhash_average_rgb",
    "thumbhash_decode",
    "thumbhash_encode",
    "thumbhash_from_rgba",
]

RGB = tuple[int, int, int]
Array = NDArray[np.float64]
_Value = TypeVar("_Value", float, Array)

THUMBHASH_MAX_BYTES = 25  # with alpha: 6 header bytes, 14 + 5 + 5 + 14 AC nibbles
_ENCODE_SIDE = 100  # the reference refuses anything larger
_MIN_SIDE = 7  # the most DCT frequencies along an axis
_DECODE_SIDE = 32
_DOMINANT_SIDE = 64
_DOMINANT_PALETTE = 8
_SAME_COLOUR = 48.0  # RGB distance under which two palette entries are one colour


def _js_round(value: float) -> int:
    """JavaScript's Math.round: the nearest integer, halves towards +infinity."""
    floor = math.floor(value)
    return floor + 1 if value - floor >= 0.5 else floor


def _js_round_all(values: Array) -> NDArray[np.int64]:
    floor = np.floor(values)
    return (floor + (values - floor >= 0.5)).astype(np.int64)


def _running_sum(values: Array) -> Array:
    """Sums along the last axis added strictly left to right, like the reference's
    `+=` loops (`np.sum` adds pairwise, which changes the last bits)."""
    total: Array = np.add.accumulate(values, axis=-1)[..., -1]
    return total


def _high_word(x: float) -> int:
    return int.from_bytes(struct.pack("<d", x)[4:], "little", signed=True)


def _from_high_word(high: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<q", high << 32))[0]
    return value


# fdlibm's polynomial coefficients and pi/2 in pieces (k_cos.c, k_sin.c, e_rem_pio2.c).
_C = (
    4.16666666666666019037e-02,
    -1.38888888888741095749e-03,
    2.48015872894767294178e-05,
    -2.75573143513906633035e-07,
    2.08757232129817482790e-09,
    -1.13596475577881948265e-11,
)
_S = (
    -1.66666666666666324348e-01,
    8.33333333332248946124e-03,
    -1.98412698298579493134e-04,
    2.75573137070700676789e-06,
    -2.50507602534068634195e-08,
    1.58969099521155010221e-10,
)
_INVPIO2 = 6.36619772367581382433e-01
_PIO2_1, _PIO2_1T = 1.57079632673412561417e00, 6.07710050650619224932e-11
_PIO2_2, _PIO2_2T = 6.07710050630396597660e-11, 2.02226624879595063154e-21
_PIO2_3, _PIO2_3T = 2.02226624871116645580e-21, 8.47842766036889956997e-32
# High words of n * pi / 2, n = 1..32.
_NPIO2_HW = (
    0x3FF921FB, 0x400921FB, 0x4012D97C, 0x401921FB, 0x401F6A7A, 0x4022D97C,
    0x4025FDBB, 0x402921FB, 0x402C463A, 0x402F6A7A, 0x4031475C, 0x4032D97C,
    0x40346B9C, 0x4035FDBB, 0x40378FDB, 0x403921FB, 0x403AB41B, 0x403C463A,
    0x403DD85A, 0x403F6A7A, 0x40407E4C, 0x4041475C, 0x4042106C, 0x4042D97C,
    0x4043A28C, 0x40446B9C, 0x404534AC, 0x4045FDBB, 0x4046C6CB, 0x40478FDB,
    0x404858EB, 0x404921FB,
)  # fmt: skip


def _kernel_cos(x: float, y: float) -> float:
    ix = _high_word(x) & 0x7FFFFFFF
    if ix < 0x3E400000 and int(x) == 0:
        return 1.0
    z = x * x
    c1, c2, c3, c4, c5, c6 = _C
    r = z * (c1 + z * (c2 + z * (c3 + z * (c4 + z * (c5 + z * c6)))))
    if ix < 0x3FD33333:
        return 1.0 - (0.5 * z - (z * r - x * y))
    qx = 0.28125 if ix > 0x3FE90000 else _from_high_word(ix - 0x00200000)
    return (1.0 - qx) - ((0.5 * z - qx) - (z * r - x * y))


def _kernel_sin(x: float, y: float) -> float:
    ix = _high_word(x) & 0x7FFFFFFF
    if ix < 0x3E400000 and int(x) == 0:
        return x
    z = x * x
    v = z * x
    s1, s2, s3, s4, s5, s6 = _S
    r = s2 + z * (s3 + z * (s4 + z * (s5 + z * s6)))
    return x - ((z * (0.5 * y - v * r) - y) - v * s1)


def _rem_pio2(x: float) -> tuple[int, float, float]:
    """x = n * pi/2 + (y0 + y1), for 0 <= x <= 2**19 * pi/2."""
    ix = _high_word(x)
    if ix < 0x4002D97C:  # x < 3pi/4
        if ix != 0x3FF921FB:
            z = x - _PIO2_1
            y0 = z - _PIO2_1T
            return 1, y0, (z - y0) - _PIO2_1T
        z = (x - _PIO2_1) - _PIO2_2
        y0 = z - _PIO2_2T
        return 1, y0, (z - y0) - _PIO2_2T
    n = int(x * _INVPIO2 + 0.5)
    fn = float(n)
    r = x - fn * _PIO2_1
    w = fn * _PIO2_1T
    y0 = r - w
    if n >= 32 or ix == _NPIO2_HW[n - 1]:
        exponent = ix >> 20
        if exponent - ((_high_word(y0) >> 20) & 0x7FF) > 16:
            t = r
            w = fn * _PIO2_2
            r = t - w
            w = fn * _PIO2_2T - ((t - r) - w)
            y0 = r - w
            if exponent - ((_high_word(y0) >> 20) & 0x7FF) > 49:
                t = r
                w = fn * _PIO2_3
                r = t - w
                w = fn * _PIO2_3T - ((t - r) - w)
                y0 = r - w
    return n, y0, (r - y0) - w


def _js_cos(x: float) -> float:
    """fdlibm's cosine (`Math.cos` in V8), for 0 <= x <= 2**19 * pi/2."""
    if not 0 <= x <= 823549.6:
        raise ValueError(f"cosine argument out of range: {x}")
    if _high_word(x) <= 0x3FE921FB:  # x <= pi/4
        return _kernel_cos(x, 0.0)
    n, y0, y1 = _rem_pio2(x)
    quadrant = n & 3
    if quadrant == 0:
        return _kernel_cos(y0, y1)
    if quadrant == 1:
        return -_kernel_sin(y0, y1)
    if quadrant == 2:
        return -_kernel_cos(y0, y1)
    return _kernel_sin(y0, y1)


@cache
def _encode_cosines(size: int, frequency: int) -> Array:
    # cos(PI / w * cx * (x + 0.5)), the operations in the reference's order.
    return np.array([_js_cos(math.pi / size * frequency * (i + 0.5)) for i in range(size)])


@cache
def _decode_cosines(size: int, frequency: int) -> Array:
    # cos(PI / w * (x + 0.5) * cx): the decoder multiplies in another order.
    return np.array([_js_cos(math.pi / size * (i + 0.5) * frequency) for i in range(size)])


def _triangle(nx: int, ny: int) -> list[tuple[int, int]]:
    """The (cx, cy) frequencies a channel keeps, in the order they are stored."""
    return [(cx, cy) for cy in range(ny) for cx in range(nx) if cx * ny < nx * (ny - cy)]


def _encode_channel(channel: Array, nx: int, ny: int) -> tuple[float, list[float], float]:
    height, width = channel.shape
    terms = _triangle(nx, ny)
    products = np.stack(
        [
            (channel * _encode_cosines(width, cx)[None, :]) * _encode_cosines(height, cy)[:, None]
            for cx, cy in terms
        ]
    ).reshape(len(terms), -1)
    factors = _running_sum(products) / (width * height)
    dc = float(factors[0])
    ac = factors[1:]
    scale = float(np.max(np.abs(ac))) if ac.size else 0.0
    if scale:
        ac = 0.5 + 0.5 / scale * ac
    return dc, ac.tolist(), scale


def _encode_size(width: int, height: int) -> tuple[int, int]:
    size = fit_within(width, height, _ENCODE_SIDE, _ENCODE_SIDE)
    if min(size) >= _MIN_SIDE:
        return size
    scale = _ENCODE_SIDE / max(width, height)
    return max(_MIN_SIDE, round(width * scale)), max(_MIN_SIDE, round(height * scale))


def thumbhash_encode(image: Image.Image) -> bytes:
    """The ThumbHash of an (oriented) image of any size and mode, alpha included.

    The image is fitted into 100x100 first (the reference refuses larger input),
    keeping the aspect ratio, with BOX: an area average keeps the mean colour and
    does not ring, and the hash keeps seven frequencies at most, so a sharper filter
    buys nothing. One difference from feeding the image to the reference as it is:
    a side under 7 px is stretched to 7. The DCT takes up to 7 frequencies per axis
    and on fewer pixels they alias (a 1 px high strip decodes as stripes); the sizes
    stored for the aspect ratio come out the same, but for rounding at a few sizes
    under 30 px.
    """
    if image.mode not in ("RGB", "RGBA"):
        has_alpha = image.mode in ("LA", "PA", "La", "RGBa") or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    size = _encode_size(image.width, image.height)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BOX)
    return thumbhash_from_rgba(np.asarray(image.convert("RGBA"), dtype=np.uint8))


def thumbhash_from_rgba(pixels: NDArray[np.uint8]) -> bytes:
    """The reference `rgbaToThumbHash` of (height, width, 4) RGBA pixels, both sides
    at most 100, RGB not premultiplied: the same bytes, bit for bit."""
    if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
        raise ValueError(f"expected (height, width, 4) uint8 pixels, not {pixels.shape}")
    height, width = pixels.shape[:2]
    if not 0 < width <= _ENCODE_SIDE or not 0 < height <= _ENCODE_SIDE:
        raise ValueError(f"{width}x{height} doesn't fit in 100x100")
    rgba = pixels.astype(np.float64)
    alpha = rgba[..., 3] / 255
    weight = alpha / 255
    average_alpha = float(_running_sum(alpha.ravel()))
    average = [float(_running_sum((weight * rgba[..., c]).ravel())) for c in range(3)]
    if average_alpha:
        average = [value / average_alpha for value in average]
    has_alpha = average_alpha < width * height

    # Fewer luminance frequencies when alpha needs the room.
    l_limit = 5 if has_alpha else 7
    lx = max(1, _js_round(l_limit * width / max(width, height)))
    ly = max(1, _js_round(l_limit * height / max(width, height)))

    # LPQA, with the colour composited over the average colour.
    r, g, b = (average[c] * (1 - alpha) + weight * rgba[..., c] for c in range(3))
    l_dc, l_ac, l_scale = _encode_channel((r + g + b) / 3, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _encode_channel((r + g) / 2 - b, 3, 3)
    q_dc, q_ac, q_scale = _encode_channel(r - g, 3, 3)

    is_landscape = width > height
    header24 = (
        _js_round(63 * l_dc)
        | (_js_round(31.5 + 31.5 * p_dc) << 6)
        | (_js_round(31.5 + 31.5 * q_dc) << 12)
        | (_js_round(31 * l_scale) << 18)
        | (int(has_alpha) << 23)
    )
    header16 = (
        (ly if is_landscape else lx)
        | (_js_round(63 * p_scale) << 3)
        | (_js_round(63 * q_scale) << 9)
        | (int(is_landscape) << 15)
    )
    packed = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    factors = l_ac + p_ac + q_ac
    if has_alpha:
        a_dc, a_ac, a_scale = _encode_channel(alpha, 5, 5)
        packed.append(_js_round(15 * a_dc) | (_js_round(15 * a_scale) << 4))
        factors += a_ac
    nibbles = _js_round_all(15 * np.array(factors, dtype=np.float64)).tolist()
    if len(nibbles) % 2:
        nibbles.append(0)
    packed.extend(low | (high << 4) for low, high in zip(nibbles[::2], nibbles[1::2], strict=True))
    return bytes(value & 255 for value in packed)


def _header(thumbhash: bytes) -> tuple[int, int, bool]:
    if len(thumbhash) < 5:
        raise ValueError(f"a ThumbHash has at least 5 bytes, not {len(thumbhash)}")
    header24 = thumbhash[0] | (thumbhash[1] << 8) | (thumbhash[2] << 16)
    header16 = thumbhash[3] | (thumbhash[4] << 8)
    has_alpha = bool(header24 >> 23)
    if has_alpha and len(thumbhash) < 6:
        raise ValueError("a ThumbHash with alpha has at least 6 bytes")
    return header24, header16, has_alpha


def _read_factors(
    thumbhash: bytes, start: int, channels: list[tuple[list[tuple[int, int]], float]]
) -> list[list[float]]:
    """Each channel's AC factors, scaled: one nibble per term after the DC one."""
    nibbles = [(byte >> shift) & 15 for byte in thumbhash[start:] for shift in (0, 4)]
    needed = sum(len(terms) - 1 for terms, _ in channels)
    if len(nibbles) < needed:
        raise ValueError(f"a truncated ThumbHash: {len(thumbhash)} bytes")
    factors: list[list[float]] = []
    for terms, scale in channels:
        factors.append([(nibble / 7.5 - 1) * scale for nibble in nibbles[: len(terms) - 1]])
        nibbles = nibbles[len(terms) - 1 :]
    return factors


def _lpq_to_rgb(lum: _Value, p: _Value, q: _Value) -> tuple[_Value, _Value, _Value]:
    """The reference's LPQ to RGB, for one colour or for every pixel at once."""
    b = lum - 2 / 3 * p
    r = (3 * lum - b + q) / 2
    return r, r - q, b


def thumbhash_decode(thumbhash: bytes) -> Image.Image:
    """The RGBA placeholder a ThumbHash describes, 32 px on its longer side."""
    header24, header16, has_alpha = _header(thumbhash)
    l_dc = (header24 & 63) / 63
    p_dc = ((header24 >> 6) & 63) / 31.5 - 1
    q_dc = ((header24 >> 12) & 63) / 31.5 - 1
    l_scale = ((header24 >> 18) & 31) / 31
    p_scale = ((header16 >> 3) & 63) / 63
    q_scale = ((header16 >> 9) & 63) / 63
    is_landscape = bool(header16 >> 15)
    l_max = 5 if has_alpha else 7
    stored_x = l_max if is_landscape else header16 & 7
    stored_y = header16 & 7 if is_landscape else l_max
    if not stored_x or not stored_y:
        raise ValueError("not a ThumbHash: its luminance size is zero")
    lx, ly = max(3, stored_x), max(3, stored_y)
    a_dc = (thumbhash[5] & 15) / 15 if has_alpha else 1.0
    a_scale = (thumbhash[5] >> 4) / 15 if has_alpha else 0.0

    # Chroma is boosted 1.25x, the reference's compensation for quantisation.
    channels = [
        (_triangle(lx, ly), l_scale),
        (_triangle(3, 3), p_scale * 1.25),
        (_triangle(3, 3), q_scale * 1.25),
    ]
    if has_alpha:
        channels.append((_triangle(5, 5), a_scale))
    factors = _read_factors(thumbhash, 6 if has_alpha else 5, channels)

    ratio = stored_x / stored_y
    width = _js_round(_DECODE_SIDE if ratio > 1 else _DECODE_SIDE * ratio)
    height = _js_round(_DECODE_SIDE / ratio if ratio > 1 else _DECODE_SIDE)

    def cosines(cx: int, cy: int) -> tuple[Array, Array]:
        """fx[cx] along a row and fy[cy] * 2 down a column, as the reference has them."""
        return _decode_cosines(width, cx)[None, :], _decode_cosines(height, cy)[:, None] * 2

    lum, p, q, a = (np.full((height, width), value) for value in (l_dc, p_dc, q_dc, a_dc))
    for factor, (cx, cy) in zip(factors[0], channels[0][0][1:], strict=True):
        fx, fy2 = cosines(cx, cy)
        lum += factor * fx * fy2
    for p_factor, q_factor, (cx, cy) in zip(
        factors[1], factors[2], channels[1][0][1:], strict=True
    ):
        fx, fy2 = cosines(cx, cy)
        f = fx * fy2
        p += p_factor * f
        q += q_factor * f
    if has_alpha:
        for factor, (cx, cy) in zip(factors[3], channels[3][0][1:], strict=True):
            fx, fy2 = cosines(cx, cy)
            a += factor * fx * fy2

    # Uint8Array stores by truncating.
    rgba = np.maximum(0, 255 * np.minimum(1, np.stack([*_lpq_to_rgb(lum, p, q), a], axis=-1)))
    return Image.fromarray(rgba.astype(np.uint8))


def thumbhash_average_rgb(thumbhash: bytes) -> RGB:
    """The average colour stored in a ThumbHash's header, 0-255 (alpha ignored).

    The reference's `thumbHashToAverageRGBA` times 255, rounded as JavaScript does."""
    header24, _, _ = _header(thumbhash)
    lum = (header24 & 63) / 63
    p = ((header24 >> 6) & 63) / 31.5 - 1
    q = ((header24 >> 12) & 63) / 31.5 - 1
    rgb = _lpq_to_rgb(lum, p, q)
    red, green, blue = (_js_round(255 * max(0.0, min(1.0, value))) for value in rgb)
    return red, green, blue


def dominant_colour(image: Image.Image) -> RGB:
    """The colour covering most of the image.

    Transparency is flattened onto white, the image shrunk to fit 64x64 (area
    average), and median cut splits its colours into 8 palette entries. A flat area
    with noise lands in several entries, so each entry joins the group of the first
    more populous entry within RGB distance 48, if any; the group with the most
    pixels wins and the pixel-weighted mean of its entries is returned. Every step
    is deterministic.
    """
    rgb = flatten_to_rgb(image)
    size = fit_within(rgb.width, rgb.height, _DOMINANT_SIDE, _DOMINANT_SIDE)
    small = rgb.resize(size, Image.Resampling.BOX) if size != rgb.size else rgb
    paletted = small.quantize(
        _DOMINANT_PALETTE, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    palette = paletted.getpalette() or []
    counts = np.bincount(np.asarray(paletted).ravel()).tolist()
    used = sorted((index for index, count in enumerate(counts) if count), key=lambda i: -counts[i])
    groups: list[tuple[RGB, int, list[float]]] = []  # seed colour, pixels, weighted sum
    for index in used:
        count = counts[index]
        colour = (palette[3 * index], palette[3 * index + 1], palette[3 * index + 2])
        for position, (seed, pixels, total) in enumerate(groups):
            if math.dist(seed, colour) <= _SAME_COLOUR:
                summed = [t + count * c for t, c in zip(total, colour, strict=True)]
                groups[position] = (seed, pixels + count, summed)
                break
        else:
            groups.append((colour, count, [float(count * c) for c in colour]))
    _, pixels, total = max(groups, key=lambda group: group[1])
    red, green, blue = (round(t / pixels) for t in total)
    return red, green, blue


def format_rgb_hex(colour: RGB) -> str:
    """CSS hex notation, e.g. "#1a2b3c"."""
    red, green, blue = colour
    return f"#{red:02x}{green:02x}{blue:02x}"
