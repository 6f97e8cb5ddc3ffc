"""The accepted input formats and how to name what we refuse.

Only these Pillow decoders are ever tried (``Image.open(..., formats=PILLOW_FORMATS)``);
MPO is reported by the JPEG decoder itself. HEIC/HEIF comes from pillow-heif.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagepipe.v1 import common_pb2

__all__ = [
    "ACCEPTED",
    "PILLOW_FORMATS",
    "AcceptedFormat",
    "corrupt_format",
    "describe_non_image",
    "format_from_name",
    "format_name",
]


@dataclass(frozen=True)
class AcceptedFormat:
    pillow_name: str
    wire: int  # common_pb2.ImageFormat value
    mime: str
    label: str


ACCEPTED: dict[str, AcceptedFormat] = {
    f.pillow_name: f
    for f in (
        AcceptedFormat("JPEG", common_pb2.IMAGE_FORMAT_JPEG, "image/jpeg", "JPEG"),
        AcceptedFormat("MPO", common_pb2.IMAGE_FORMAT_JPEG, "image/jpeg", "JPEG (MPO)"),
        AcceptedFormat("PNG", common_pb2.IMAGE_FORMAT_PNG, "image/png", "PNG"),
        AcceptedFormat("WEBP", common_pb2.IMAGE_FORMAT_WEBP, "image/webp", "WebP"),
        AcceptedFormat("GIF", common_pb2.IMAGE_FORMAT_GIF, "image/gif", "GIF"),
        AcceptedFormat("TIFF", common_pb2.IMAGE_FORMAT_TIFF, "image/tiff", "TIFF"),
        AcceptedFormat("BMP", common_pb2.IMAGE_FORMAT_BMP, "image/bmp", "BMP"),
        AcceptedFormat("AVIF", common_pb2.IMAGE_FORMAT_AVIF, "image/avif", "AVIF"),
        AcceptedFormat("HEIF", common_pb2.IMAGE_FORMAT_HEIF, "image/heif", "HEIC/HEIF"),
    )
}
# Decoders Image.open may try; MPO is not a separate decoder (JPEG returns it).
PILLOW_FORMATS = tuple(name for name in ACCEPTED if name != "MPO")

# Signatures of accepted formats: bytes that start like one but do not open are corrupt.
_ACCEPTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
# Leading bytes of things people upload by mistake, to say what they are.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"8BPS", "a Photoshop document (PSD is not accepted)"),
    (b"\x00\x00\x01\x00", "an icon file (ICO is not accepted)"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream (not accepted)"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 file (not accepted)"),
    (b"RIFF", "a RIFF file that is not a valid WebP"),
    (b"{", "JSON"),
    (b"[", "JSON"),
)


def corrupt_format(head: bytes) -> str | None:
    """The accepted format these bytes claim to be, when they start like one."""
    for signature, label in _ACCEPTED_SIGNATURES:
        if head.startswith(signature):
            return label
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return "WebP"
    return None


def describe_non_image(head: bytes) -> str:
    """Say what some bytes that no accepted decoder identifies look like."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (b"<svg" in text[:1024] and text.startswith(b"<")):
        return "SVG is a vector format; only raster images are accepted"
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:512]:
        return "not an image: looks like HTML"
    if text.startswith(b"<?xml") or text.startswith(b"<"):
        return "not an image: looks like XML"
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return f"not an accepted image: looks like {what}"
    if head[4:8] == b"ftyp":
        return "not an accepted image: an ISO media file (video or unsupported HEIF brand)"
    if _mostly_text(head):
        return "not an image: looks like text"
    return "not an image in an accepted format (JPEG, PNG, WebP, GIF, TIFF, BMP, AVIF, HEIC)"


def _mostly_text(head: bytes) -> bool:
    sample = head[:512]
    if not sample:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    return printable / len(sample) > 0.95


_FORMAT_PREFIX = "IMAGE_FORMAT_"


def format_name(wire: int) -> str:
    """`IMAGE_FORMAT_JPEG` -> `jpeg` (the name stored in the catalog and in configs)."""
    return common_pb2.ImageFormat.Name(wire).removeprefix(_FORMAT_PREFIX).lower()  # type: ignore[arg-type]


def format_from_name(name: str) -> int:
    """`jpeg` -> IMAGE_FORMAT_JPEG; ValueError for unknown names."""
    return int(common_pb2.ImageFormat.Value(_FORMAT_PREFIX + name.upper()))
