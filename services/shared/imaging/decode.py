"""Opening untrusted bytes safely, orientation, and the facts ingest records.

Everything here is a plain function over files or Pillow images. Callers run it in a
worker process (see ``services.shared.sandbox``): a hostile file can at worst kill
that worker, never the service.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, UnidentifiedImageError
from pillow_heif import register_heif_opener

from services.shared.errors import InvalidImage
from services.shared.imaging.formats import (
    ACCEPTED,
    PILLOW_FORMATS,
    corrupt_format,
    describe_non_image,
)
from services.shared.imaging.hashing import perceptual_hash

__all__ = [
    "ImageFacts",
    "apply_orientation",
    "exif_orientation",
    "flatten_to_rgb",
    "inspect_image",
    "open_untrusted",
    "register_decoders",
]

EXIF_ORIENTATION_TAG = 0x0112
# Orientation -> Pillow transposes that undo it (EXIF 2.3, tag 0x0112).
_TRANSPOSES: dict[int, tuple[Image.Transpose, ...]] = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
# A draft decode at least this large is plenty for a 32x32 perceptual hash.
_HASH_DRAFT = (256, 256)


def register_decoders() -> None:
    """Register the HEIF decoder (pillow-heif); idempotent."""
    register_heif_opener()
    # Truncated data must fail, never decode as grey: Pillow's default, made explicit.
    ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ImageFacts:
    pillow_format: str
    width: int  # after EXIF orientation
    height: int
    frame_count: int
    perceptual_hash: int

    @property
    def content_type(self) -> str:
        return ACCEPTED[self.pillow_format].mime

    @property
    def wire_format(self) -> int:
        return ACCEPTED[self.pillow_format].wire


def open_untrusted(source: Path | BinaryIO, max_pixels: int) -> Image.Image:
    """Identify an image from its bytes with the accepted decoders only.

    Checks the pixel count from the header, before any pixel is decoded. Raises
    InvalidImage with a reason naming what is wrong.
    """
    head = _head(source)
    if not head:
        raise InvalidImage("empty upload: no bytes received", reason="IMAGE_EMPTY")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=PILLOW_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(_declared_pixels(source), max_pixels) from None
    except UnidentifiedImageError:
        claimed = corrupt_format(head)
        if claimed:
            raise InvalidImage(
                f"corrupt {claimed}: it starts like one but its header cannot be read",
                reason="IMAGE_CORRUPT",
            ) from None
        raise InvalidImage(describe_non_image(head), reason="IMAGE_FORMAT_UNSUPPORTED") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise InvalidImage(f"corrupt image header: {error}", reason="IMAGE_CORRUPT") from None
    if image.format not in ACCEPTED:
        raise InvalidImage(
            f"{image.format} images are not accepted", reason="IMAGE_FORMAT_UNSUPPORTED"
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has no pixels ({width}x{height})", reason="IMAGE_CORRUPT")
    if width * height > max_pixels:
        raise _too_large(width * height, max_pixels)
    return image


def _head(source: Path | BinaryIO) -> bytes:
    if isinstance(source, Path):
        with source.open("rb") as handle:
            return handle.read(4096)
    position = source.tell()
    head = source.read(4096)
    source.seek(position)
    return head


def _declared_pixels(source: Path | BinaryIO) -> int:
    """Pixel count from the header, for the message; 0 when it cannot be read."""
    try:
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source, formats=PILLOW_FORMATS) as image:
                return int(image.size[0] * image.size[1])
    except Exception:
        return 0


def _too_large(pixels: int, max_pixels: int) -> InvalidImage:
    limit = f"{max_pixels / 1e6:g} MP"
    if pixels:
        message = f"image is {pixels / 1e6:.1f} MP, limit is {limit}"
    else:
        message = f"image is larger than the limit of {limit}"
    return InvalidImage(
        message,
        reason="IMAGE_TOO_LARGE",
        metadata={"pixels": pixels, "max_pixels": max_pixels},
    )


def exif_orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8; anything missing, broken or out of range counts as 1."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    for transpose in _TRANSPOSES.get(orientation, ()):
        image = image.transpose(transpose)
    return image


def oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    width, height = size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def flatten_to_rgb(
    image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """RGB with any transparency composited onto `background`."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, background)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def _decode_proof(image: Image.Image, label: str) -> None:
    """Decode the first frame fully; truncation and garbage surface here."""
    try:
        image.load()
    except OSError as error:
        text = str(error)
        if "truncated" in text or "broken data stream" in text or "unexpected end" in text.lower():
            raise InvalidImage(
                f"truncated {label}: the data ends before the image does",
                reason="IMAGE_TRUNCATED",
            ) from None
        raise InvalidImage(f"corrupt {label}: {text}", reason="IMAGE_CORRUPT") from None
    except (ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError) as error:
        raise InvalidImage(f"corrupt {label}: {error}", reason="IMAGE_CORRUPT") from None
    except Image.DecompressionBombError as error:
        raise InvalidImage(str(error), reason="IMAGE_TOO_LARGE") from None


def inspect_image(path: Path, max_pixels: int) -> ImageFacts:
    """Validate an upload and compute what ingest records about it.

    The first frame is decoded completely (a JPEG at reduced DCT scale, which still
    reads every scan, so truncation is caught), then oriented and hashed.
    """
    register_decoders()
    with open_untrusted(path, max_pixels) as image:
        pillow_format = image.format or ""
        label = ACCEPTED[pillow_format].label
        orientation = exif_orientation(image)
        width, height = oriented_size(image.size, orientation)
        frame_count = int(getattr(image, "n_frames", 1) or 1)
        if pillow_format in ("JPEG", "MPO"):
            image.draft("L", _HASH_DRAFT)
        _decode_proof(image, label)
        oriented = apply_orientation(
            flatten_to_rgb(image) if image.mode != "L" else image, orientation
        )
        return ImageFacts(
            pillow_format=pillow_format,
            width=width,
            height=height,
            frame_count=frame_count,
            perceptual_hash=perceptual_hash(oriented),
        )
