"""Opening untrusted bytes safely, orientation, and the facts ingest records.

Everything here is a plain function over files or Pillow images. Callers run it in a
worker process (see ``services.shared.sandbox``): a hostile file can at worst kill
that worker, never the service.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFile, UnidentifiedImageError
from pillow_heif import register_heif_opener

from services.shared.errors import InvalidImage
from services.shared.imaging.containers import is_cut, png_header
from services.shared.imaging.formats import (
    ACCEPTED,
    PILLOW_FORMATS,
    corrupt_format,
    describe_non_image,
)
from services.shared.imaging.hashing import perceptual_hash
from services.shared.imaging.metadata import AssetMetadata, read_metadata
from services.shared.imaging.vips import vips

__all__ = [
    "Decoded",
    "ImageFacts",
    "apply_orientation",
    "decode_untrusted",
    "exif_orientation",
    "fit_within",
    "flatten_to_rgb",
    "inspect_image",
    "open_untrusted",
    "oriented_size",
    "register_decoders",
    "wide_grey_to_8bit",
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
# Formats whose EXIF Pillow parses when the file is opened, before any pixel.
_EXIF_AT_OPEN = ("JPEG", "MPO")
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
    metadata: AssetMetadata = field(default_factory=AssetMetadata)

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
        raise _unreadable_header(source, head, None) from None
    except MemoryError:
        raise
    except Exception as error:  # any plugin's failure on a damaged header, whatever its type
        raise _unreadable_header(source, head, error) from None
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


def _unreadable_header(
    source: Path | BinaryIO, head: bytes, error: Exception | None
) -> InvalidImage:
    claimed = corrupt_format(head)
    if claimed and is_cut(_all_bytes(source)):
        return InvalidImage(
            f"truncated {claimed}: the data ends before the image does", reason="IMAGE_TRUNCATED"
        )
    if error is not None:
        return InvalidImage(f"corrupt image header: {error}", reason="IMAGE_CORRUPT")
    if claimed:
        return InvalidImage(
            f"corrupt {claimed}: it starts like one but its header cannot be read",
            reason="IMAGE_CORRUPT",
        )
    return InvalidImage(describe_non_image(head), reason="IMAGE_FORMAT_UNSUPPORTED")


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
    """EXIF orientation 1-8; anything missing, broken or out of range counts as 1.

    JPEG's EXIF is parsed from APP1 when the file is opened, so it is read without
    decoding (the draft scale depends on it). Any other format may keep its EXIF after
    the pixels (a PNG's eXIf chunk can follow IDAT, and Pillow then decodes the image
    to reach it), so the image is decoded first, outside the ``try``: a decode error
    propagates and is never taken for broken EXIF.
    """
    if image.format not in _EXIF_AT_OPEN:
        image.load()
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # broken EXIF (any parse error) is ignored, as viewers do
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


def fit_within(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Size that fits the box, keeps the aspect ratio, never upscales, never hits 0 px."""
    scale = min(max_width / width, max_height / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def wide_grey_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit greys: scale to 8 bits (Pillow's convert would clip)."""
    pixels = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
    scaled = np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


@dataclass(frozen=True)
class Decoded:
    """An untrusted image proven whole: its first frame decoded, nothing left to read.

    `image` is that frame as stored (before orientation); a PNG colour key (tRNS on a
    grey or RGB image) is already an alpha channel. `size` is the stored size of the
    full image (a JPEG may be decoded at a reduced DCT scale).
    """

    image: Image.Image
    pillow_format: str
    size: tuple[int, int]
    orientation: int
    frame_count: int

    @property
    def oriented_size(self) -> tuple[int, int]:
        return oriented_size(self.size, self.orientation)


# Words Pillow's decoders and libtiff use when the data stops early.
_CUT_WORDS = re.compile(
    r"truncated|unexpected end|premature end|end of (file|data|stream)"
    r"|not enough data|requires a buffer of|buffer is not large enough|read error on strip",
    re.IGNORECASE,
)


def _refusal(label: str, error: BaseException, cut: bool) -> InvalidImage:
    text = str(error) or type(error).__name__
    if cut or isinstance(error, (EOFError, struct.error)) or _CUT_WORDS.search(text):
        return InvalidImage(
            f"truncated {label}: the data ends before the image does", reason="IMAGE_TRUNCATED"
        )
    return InvalidImage(f"corrupt {label}: {text}", reason="IMAGE_CORRUPT")


@contextmanager
def _untrusted(label: str, data: bytes) -> Iterator[None]:
    """Every read of an untrusted image (header fields, frames, EXIF, pixels) runs in
    here: whatever a decoder raises, of any type, becomes an InvalidImage naming the
    problem. Nothing is swallowed: an error here always refuses the image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidImage(str(error), reason="IMAGE_TOO_LARGE") from None
    except MemoryError:
        raise  # the sandbox answers IMAGE_TOO_LARGE
    except Exception as error:  # a decoder's failure on these bytes, whatever its type
        raise _refusal(label, error, is_cut(data)) from None


def _tiff_strips_inside(image: Image.Image, length: int) -> bool:
    """Whether the current TIFF directory's strips or tiles lie inside the file."""
    tags = getattr(image, "tag_v2", {})
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):  # strips, tiles
        offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
        if offsets is None or counts is None:
            continue
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        counts = counts if isinstance(counts, tuple) else (counts,)
        if any(int(o) + int(c) > length for o, c in zip(offsets, counts, strict=False)):
            return False
    return True


def _count_frames(image: Image.Image, data: bytes) -> int:
    """The frame count; for TIFF, also that every directory's data is in the file."""
    frames = int(getattr(image, "n_frames", 1) or 1)
    if image.format == "TIFF":
        for index in range(frames):
            image.seek(index)
            if not _tiff_strips_inside(image, len(data)):
                raise EOFError("TIFF strip data lies past the end of the file")
        image.seek(0)
    return frames


def _colour_key_as_alpha(image: Image.Image, data: bytes, label: str) -> Image.Image:
    """A PNG colour key (tRNS on a grey or RGB image) as an alpha channel.

    Pixels equal to the key are transparent. The comparison is made at the file's own
    bit depth: a 1-4 bit grey key is scaled as Pillow scaled the samples, a 16-bit grey
    key is compared with the 16-bit samples, and a 16-bit RGB key with the 16-bit
    samples that Pillow reduces to 8 bits (so libvips reads those). Pillow's own use
    of ``info["transparency"]`` is exact only for 8-bit samples, so the key is always
    taken out of ``info``.
    """
    header = png_header(data)
    if header is None or header.colour_type not in (0, 2):
        return image
    info = {key: value for key, value in image.info.items() if key != "transparency"}
    image.info = info
    trns, depth = header.trns, header.bit_depth
    transparent: NDArray[np.bool_] | None = None
    if header.colour_type == 0 and trns is not None and len(trns) >= 2:
        key = int.from_bytes(trns[:2], "big")
        samples = np.asarray(image)
        if key < (1 << depth):
            if image.mode == "1":
                transparent = samples == bool(key)
            elif depth == 16:
                transparent = samples == key
            else:
                transparent = samples == key * (255 // ((1 << depth) - 1))
    elif header.colour_type == 2 and trns is not None and len(trns) >= 6:
        key3 = struct.unpack(">HHH", trns[:6])
        if depth == 8:
            transparent = (np.asarray(image) == np.array(key3)).all(axis=2)
        else:
            with _untrusted(label, data):
                transparent = _rgb16_key(data, key3, image.size)
    if transparent is None or not transparent.any():
        return image
    alpha = Image.fromarray(np.where(transparent, 0, 255).astype(np.uint8), mode="L")
    if header.colour_type == 0:
        grey = wide_grey_to_8bit(image) if depth == 16 else image.convert("L")
        keyed = Image.merge("LA", (grey, alpha))
    else:
        keyed = Image.merge("RGBA", (*image.split(), alpha))
    keyed.info = info
    return keyed


def _rgb16_key(data: bytes, key: tuple[int, int, int], size: tuple[int, int]) -> NDArray[np.bool_]:
    """Which pixels of a 16-bit RGB PNG equal `key`, compared on the 16-bit samples
    (Pillow has no 16-bit RGB mode), read by libvips."""
    # Pillow has already decoded these bytes whole: libvips need not be stricter.
    loaded = vips().Image.pngload_buffer(bytes(data), access="sequential")
    width, height = size
    if (loaded.width, loaded.height) != size or loaded.format != "ushort":
        raise ValueError(f"libvips read the PNG as {loaded.width}x{loaded.height} {loaded.format}")
    if loaded.bands == 4:  # libvips applies the key itself: tRNS becomes an alpha band
        alpha = np.frombuffer((loaded[3] == 0).write_to_memory(), dtype=np.uint8)
        return alpha.reshape(height, width) > 0
    if loaded.bands != 3:
        raise ValueError(f"libvips read a 16-bit RGB PNG as {loaded.bands} bands")
    samples = np.frombuffer(loaded.write_to_memory(), dtype=np.uint16).reshape(height, width, 3)
    matched: NDArray[np.bool_] = (samples == np.array(key)).all(axis=2)
    return matched


def _all_bytes(source: Path | BinaryIO) -> bytes:
    if isinstance(source, Path):
        return source.read_bytes()
    position = source.tell()
    source.seek(0)
    data = source.read()
    source.seek(position)
    return data


def decode_untrusted(
    source: Path | BinaryIO,
    max_pixels: int,
    *,
    draft_mode: str = "RGB",
    boxes: Sequence[tuple[int, int]] = (),
) -> Decoded:
    """Open untrusted bytes, prove them whole and decode the first frame: the one path
    by which ingest, the renderer and quality read an image.

    Everything is read inside one guard, in an order that makes the proof independent
    of the metadata: the frames are counted, then (a JPEG only, whose EXIF was parsed
    at open) the DCT scale is chosen, then the first frame is decoded in full, and only
    then is the orientation read. With `boxes`, a JPEG is decoded at the smallest DCT
    scale whose output still covers the image fitted into each box. A file whose
    container says it is cut (see ``containers.is_cut``) is refused even when its
    first frame decodes.
    """
    # Read once into memory: the containers are checked on these bytes, and the image
    # keeps no file descriptor open however long it lives.
    data = _all_bytes(source)
    image = open_untrusted(io.BytesIO(data), max_pixels)
    pillow_format = image.format or ""
    label = ACCEPTED[pillow_format].label
    with _untrusted(label, data):
        size = image.size
        frames = _count_frames(image, data)
        if boxes and pillow_format in _EXIF_AT_OPEN:
            turned = exif_orientation(image) in (5, 6, 7, 8)
            full = (size[1], size[0]) if turned else size
            fitted = [fit_within(*full, *box) for box in boxes]
            target = (max(w for w, _ in fitted), max(h for _, h in fitted))
            image.draft(draft_mode, (target[1], target[0]) if turned else target)
        image.load()
        orientation = exif_orientation(image)
        if is_cut(data):
            raise EOFError("the container ends early")
    # Pixels in memory from here on: only a 16-bit RGB key reads the bytes again, in
    # its own guard, so a mistake in this code is not taken for a corrupt file.
    decoded = _colour_key_as_alpha(image, data, label) if pillow_format == "PNG" else image
    return Decoded(decoded, pillow_format, size, orientation, frames)


def inspect_image(path: Path, max_pixels: int) -> ImageFacts:
    """Validate an upload and compute what ingest records about it.

    The first frame is decoded completely (a JPEG at reduced DCT scale, which still
    reads every scan, so truncation is caught), then oriented and hashed. Its metadata
    is read from the same opened image, once it is proven whole.
    """
    register_decoders()
    decoded = decode_untrusted(path, max_pixels, draft_mode="L", boxes=[_HASH_DRAFT])
    image = decoded.image
    oriented = apply_orientation(
        flatten_to_rgb(image) if image.mode != "L" else image, decoded.orientation
    )
    width, height = decoded.oriented_size
    return ImageFacts(
        pillow_format=decoded.pillow_format,
        width=width,
        height=height,
        frame_count=decoded.frame_count,
        perceptual_hash=perceptual_hash(oriented),
        metadata=read_metadata(image),
    )
