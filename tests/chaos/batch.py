"""The batch of a seed: distinct images in mixed formats, a few poison, a few crashers.

Drawn from `random.Random(seed)` like the schedule, so a seed names its batch too.

- normal: JPEG, PNG (RGB, RGBA, grey, palette), WebP, GIF, TIFF, BMP of 200-640 px,
  each distinct (its own gradient, shapes and noise), each rendered in well under a second;
- poison: a valid JPEG larger than the renderer's pixel cap (`RENDERER_MAX_PIXELS`, below
  ingest's): it decodes at ingest and fails in the renderer on every attempt, a content
  failure, so it must end as a poison job (`retries_exhausted`);
- crasher: a valid JPEG whose renderer is SIGKILLed each time it starts rendering it
  (see inject.CrashWatcher), so it must end as a poison job (`delivery_limit`).
"""

from __future__ import annotations

import enum
import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tests.chaos.schedule import Profile

__all__ = ["RENDERER_MAX_PIXELS", "Item", "Kind", "make_batch"]

# The renderer of a chaos run refuses originals above this many pixels; ingest takes
# up to its default (50 MP). Poison images lie between the two.
RENDERER_MAX_PIXELS = 3_000_000


class Kind(enum.Enum):
    NORMAL = "normal"
    POISON = "poison"
    CRASHER = "crasher"


@dataclass(frozen=True)
class Item:
    index: int
    tenant: int  # index into the run's tenants
    kind: Kind
    format: str
    data: bytes

    @property
    def filename(self) -> str:
        extension = {"JPEG": "jpg", "TIFF": "tif"}.get(self.format, self.format.lower())
        return f"chaos-{self.index:04d}.{extension}"


# Format and Pillow mode of normal images, with their weights.
_NORMAL = (
    (("JPEG", "RGB"), 6),
    (("PNG", "RGB"), 2),
    (("PNG", "RGBA"), 1),
    (("PNG", "L"), 1),
    (("PNG", "P"), 1),
    (("WEBP", "RGB"), 2),
    (("WEBP", "RGBA"), 1),
    (("GIF", "P"), 2),
    (("TIFF", "RGB"), 2),
    (("BMP", "RGB"), 1),
)


def _picture(rng: random.Random, width: int, height: int) -> Image.Image:
    """A smooth gradient with a few shapes and mild noise: photo-like enough to encode
    realistically, and never the same twice. Large pictures are drawn at most 640 px
    wide and scaled up, which keeps a batch quick to make."""
    scale = max(1, -(-max(width, height) // 640))
    small_w, small_h = -(-width // scale), -(-height // scale)
    noise = np.random.default_rng(rng.getrandbits(64))
    y, x = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    base = noise.uniform(0, 255, 3).astype(np.float32)
    slope = (noise.uniform(-0.4, 0.4, (2, 3)) * (640 / max(small_w, small_h))).astype(np.float32)
    pixels = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    pixels += noise.normal(0, 3, pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 6)):
        x0, y0 = rng.randrange(small_w), rng.randrange(small_h)
        x1, y1 = x0 + rng.randint(10, small_w // 2), y0 + rng.randint(10, small_h // 2)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    return image if scale == 1 else image.resize((width, height), Image.Resampling.BILINEAR)


def _encode(image: Image.Image, fmt: str, mode: str, rng: random.Random) -> bytes:
    if mode == "RGBA":
        alpha = Image.linear_gradient("L").resize(image.size).rotate(rng.randrange(360))
        image = image.convert("RGBA")
        image.putalpha(alpha)
    elif mode == "L":
        image = image.convert("L")
    elif mode == "P":
        image = image.quantize(rng.choice((16, 64, 256)), Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, fmt, quality=rng.randint(70, 95), progressive=rng.random() < 0.3)
    elif fmt == "WEBP":
        image.save(buffer, fmt, quality=rng.randint(60, 90), lossless=rng.random() < 0.2)
    elif fmt == "TIFF":
        image.save(buffer, fmt, compression=rng.choice(("tiff_deflate", "tiff_lzw", "raw")))
    elif fmt == "PNG":
        image.save(buffer, fmt, compress_level=1)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def _jpeg(rng: random.Random, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    _picture(rng, width, height).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def make_batch(seed: int, profile: Profile) -> list[Item]:
    """The seed's uploads in the order they are sent; poison and crashers spread out."""
    rng = random.Random(f"batch-{seed}")
    count = profile.uploads
    # Poison early (their give-ups, ~14 s after upload, then fall inside the fault
    # window), crashers in the first half.
    poison = rng.sample(range(max(count // 3, profile.poison)), profile.poison)
    crashers = rng.sample(
        [i for i in range(max(count // 2, profile.poison + profile.crashers)) if i not in poison],
        profile.crashers,
    )
    kinds = dict.fromkeys(poison, Kind.POISON) | dict.fromkeys(crashers, Kind.CRASHER)
    formats = [f for f, _ in _NORMAL]
    weights = [w for _, w in _NORMAL]
    items = []
    for index in range(count):
        kind = kinds.get(index, Kind.NORMAL)
        tenant = rng.randrange(profile.tenants)
        if kind is Kind.POISON:
            # Just over the renderer's cap, far under ingest's.
            width = rng.randint(2000, 2400)
            height = RENDERER_MAX_PIXELS // width + rng.randint(50, 300)
            items.append(Item(index, tenant, kind, "JPEG", _jpeg(rng, width, height)))
        elif kind is Kind.CRASHER:
            # Large enough that a render lasts long after its attempt is opened.
            items.append(Item(index, tenant, kind, "JPEG", _jpeg(rng, 1800, 1350)))
        else:
            fmt, mode = rng.choices(formats, weights)[0]
            width, height = rng.randint(200, 640), rng.randint(160, 480)
            data = _encode(_picture(rng, width, height), fmt, mode, rng)
            items.append(Item(index, tenant, kind, fmt, data))
    return items
