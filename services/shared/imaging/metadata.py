"""What an original says about itself: EXIF, XMP, IPTC and its ICC profile's name.

Read from the image ingest has just proven whole (``decode.inspect_image``), in the
sandboxed worker, from the blocks Pillow already holds in memory: nothing is read
twice. Every block is hostile until cleaned: each is parsed on its own, and one that
is malformed in any way contributes no fields and never fails the upload. Text comes
out as bounded, printable Unicode (no NUL, no control or bidirectional-override
characters); numbers come out finite and within what a camera can mean, or not at all.

GPS is read whenever the file has it; whether it is kept is the tenant's choice,
made by the catalog (TenantSettings.keep_gps).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import struct
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any
from xml.etree import ElementTree

from PIL import Image, ImageCms, ImageFile, IptcImagePlugin

from services.shared.asset_metadata import AssetMetadata, GpsPosition

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_KEYWORD",
    "MAX_KEYWORDS",
    "MAX_SHORT",
    "MAX_XMP_BYTES",
    "AssetMetadata",
    "GpsPosition",
    "read_metadata",
]

MAX_SHORT = 256
MAX_DESCRIPTION = 2000
MAX_KEYWORDS = 64
MAX_KEYWORD = 64
# An XMP packet in a JPEG fits one APP1 segment (64 KiB); anything far larger is not
# worth parsing for a dozen short fields.
MAX_XMP_BYTES = 1 << 20
MAX_ICC_BYTES = 16 << 20

# What a malformed block makes Pillow's parsers, expat and littlecms raise. The image
# itself is already decoded when these run, so none of them can hide a bad image.
_MALFORMED: tuple[type[BaseException], ...] = (
    SyntaxError,  # ElementTree.ParseError too
    ValueError,  # UnicodeDecodeError too
    TypeError,
    KeyError,
    IndexError,
    EOFError,
    OSError,
    struct.error,
    ZeroDivisionError,
    OverflowError,
    ImageCms.PyCMSError,
)

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_EARLIEST_YEAR = 1800
_LATEST_YEAR = 2999
_MAX_OFFSET_MINUTES = 18 * 60

# EXIF 2.32 tags.
_IFD_EXIF = 0x8769
_IFD_GPS = 0x8825
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_IMAGE_DESCRIPTION, _ARTIST, _COPYRIGHT = 0x010E, 0x013B, 0x8298
_EXPOSURE_TIME, _F_NUMBER, _ISO = 0x829A, 0x829D, 0x8827
_DATE_TIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
_FOCAL_LENGTH, _LENS_MODEL = 0x920A, 0xA434

_NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "exifEX": "http://cipa.jp/exif/1.0/",
    "aux": "http://ns.adobe.com/exif/1.0/aux/",
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

_Fields = dict[str, Any]


_FIELD_NAMES = tuple(f.name for f in fields(AssetMetadata))


def read_metadata(image: Image.Image) -> AssetMetadata:
    """Everything the image's metadata blocks say that AssetMetadata holds.

    Where blocks disagree, the capture time and camera facts come from EXIF first, the
    descriptive fields from XMP first (it carries Unicode), then IPTC, then EXIF.
    """
    with warnings.catch_warnings():
        # Pillow warns about each tag it skips in a damaged block; skipping is the answer.
        warnings.simplefilter("ignore")
        exif = _guarded(_exif_fields, image)
        xmp = _guarded(_xmp_fields, image)
        iptc = _guarded(_iptc_fields, image)
        profile = _guarded(_profile_fields, image)
    merged: _Fields = {}
    for source in (exif, xmp, iptc, profile):
        for name, value in source.items():
            merged.setdefault(name, value)
    # The time and its offset are one reading: both from the first block that has a time.
    for source in (exif, xmp, iptc):
        if "capture_time" in source:
            merged["capture_time"] = source["capture_time"]
            merged["capture_time_offset"] = source.get("capture_time_offset", "")
            break
    for name in ("title", "description", "creator", "copyright", "keywords"):
        for source in (xmp, iptc, exif):
            if name in source:
                merged[name] = source[name]
                break
    return AssetMetadata(**{k: v for k, v in merged.items() if k in _FIELD_NAMES})


def _guarded(read: Callable[[Image.Image], _Fields], image: Image.Image) -> _Fields:
    """One block's fields, or none when the block is malformed."""
    try:
        found = read(image)
    except _MALFORMED:
        return {}
    # Empty values say nothing: they must not hide another block's value.
    return {name: value for name, value in found.items() if value}


# Cleaning ----------------------------------------------------------------------------


def clean_text(value: object, limit: int = MAX_SHORT, *, multiline: bool = False) -> str:
    """Printable text of at most `limit` characters; "" for anything not text.

    Bytes are read as UTF-8 (invalid sequences become U+FFFD). Control characters
    (NUL included) and bidirectional overrides go; a multi-line field keeps its line
    breaks, any other field gets spaces instead.
    """
    if isinstance(value, bytes | bytearray):
        text = bytes(value[: limit * 4]).decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value[: limit * 4]
    else:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    if not multiline:
        text = text.replace("\n", " ")
    kept = "".join(
        c
        for c in text
        if c == "\n" or (unicodedata.category(c) not in ("Cc", "Cs") and c not in _BIDI_CONTROLS)
    )
    return kept.strip()[:limit].strip()


def _exif_text(value: object, limit: int = MAX_SHORT, *, multiline: bool = False) -> str:
    # Pillow reads EXIF ASCII as Latin-1; writers put UTF-8 there: take the bytes back.
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    return clean_text(value, limit, multiline=multiline)


def _keywords(values: Iterable[object]) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        keyword = clean_text(value, MAX_KEYWORD)
        if keyword and keyword not in found:
            found.append(keyword)
        if len(found) == MAX_KEYWORDS:
            break
    return tuple(found)


def _first(value: object) -> object:
    """A tag holding several values (an ISO pair, a rational list) stands for its first."""
    if isinstance(value, tuple | list):
        return value[0] if value else None
    return value


def _number(value: object, low: float, high: float) -> float:
    """A finite number with low < value <= high; 0.0 (absent) for anything else."""
    value = _first(value)
    if isinstance(value, bool) or value is None:
        return 0.0
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return 0.0
    return number if math.isfinite(number) and low < number <= high else 0.0


# Capture time ------------------------------------------------------------------------

_EXIF_TIME = re.compile(r"\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_ISO_TIME = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_IPTC_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})$")
_IPTC_TIME = re.compile(r"(\d{2})(\d{2})(\d{2})([+-]\d{4})?$")
_OFFSET = re.compile(r"\s*([+-])(\d{2}):?(\d{2})\s*$")


def _offset(text: str | None) -> tuple[dt.timezone, str] | None:
    """An offset from UTC as a zone and as `+HH:MM`; None when absent or absurd."""
    if not text:
        return None
    if text.strip() == "Z":
        return dt.UTC, "+00:00"
    match = _OFFSET.match(text)
    if match is None:
        return None
    sign, hours, minutes = match[1], int(match[2]), int(match[3])
    total = hours * 60 + minutes
    if minutes >= 60 or total > _MAX_OFFSET_MINUTES:
        return None
    delta = dt.timedelta(minutes=-total if sign == "-" else total)
    return dt.timezone(delta), f"{sign}{hours:02d}:{minutes:02d}"


def _capture(parts: Iterable[str | None], offset_text: str | None) -> _Fields:
    """capture_time (UTC) and its offset from date and time parts; nothing when the
    date is not one (month 13, year 0000, a camera's blank clock)."""
    year, month, day, hour, minute, second = ([int(p) if p else 0 for p in parts] + [0] * 6)[:6]
    if not _EARLIEST_YEAR <= year <= _LATEST_YEAR:
        return {}
    try:
        local = dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return {}
    zone = _offset(offset_text)
    if zone is None:
        # No offset: the local time is read as UTC (AssetMetadata.capture_time).
        return {"capture_time": local.replace(tzinfo=dt.UTC)}
    return {
        "capture_time": local.replace(tzinfo=zone[0]).astimezone(dt.UTC),
        "capture_time_offset": zone[1],
    }


# EXIF ----------------------------------------------------------------------------------


def _exif_fields(image: Image.Image) -> _Fields:
    exif = image.getexif()
    found: _Fields = {
        "camera_make": _exif_text(exif.get(_MAKE)),
        "camera_model": _exif_text(exif.get(_MODEL)),
        "description": _exif_text(exif.get(_IMAGE_DESCRIPTION), MAX_DESCRIPTION, multiline=True),
        "creator": _exif_text(exif.get(_ARTIST)),
        "copyright": _exif_text(exif.get(_COPYRIGHT)),
    }
    orientation = exif.get(_ORIENTATION)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        found["orientation"] = orientation
    found.update(_guarded_ifd(_camera_fields, exif, _IFD_EXIF))
    found.update(_guarded_ifd(_gps_fields, exif, _IFD_GPS))
    return found


def _guarded_ifd(
    read: Callable[[Mapping[int, Any]], _Fields], exif: Image.Exif, tag: int
) -> _Fields:
    """A sub-directory's fields; a malformed one loses only its own."""
    try:
        return read(exif.get_ifd(tag))
    except _MALFORMED:
        return {}


def _camera_fields(ifd: Mapping[int, Any]) -> _Fields:
    iso = _number(ifd.get(_ISO), 0, 10_000_000)
    original = ifd.get(_DATE_TIME_ORIGINAL)
    match = _EXIF_TIME.match(original) if isinstance(original, str) else None
    offset = ifd.get(_OFFSET_TIME_ORIGINAL)
    return {
        "lens": _exif_text(ifd.get(_LENS_MODEL)),
        # Longer than a day, or an aperture wider than f/0.5, is no camera's.
        "exposure_time_seconds": _number(ifd.get(_EXPOSURE_TIME), 0, 86_400),
        "f_number": _number(ifd.get(_F_NUMBER), 0.5, 1_000),
        "iso": int(iso) if iso >= 1 else 0,
        "focal_length_mm": _number(ifd.get(_FOCAL_LENGTH), 0, 100_000),
        **(_capture(match.groups(), offset if isinstance(offset, str) else None) if match else {}),
    }


def _degrees(value: object, ref: object, limit: float, negative: str) -> float | None:
    """Degrees, minutes and seconds (rationals) as signed degrees; None unless finite
    and within +-limit."""
    if not isinstance(value, tuple | list) or not 1 <= len(value) <= 3:
        return None
    try:
        parts = [float(part) for part in value]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    if not all(math.isfinite(p) and p >= 0 for p in parts):
        return None
    degrees = 0.0
    for scale, part in zip((1.0, 60.0, 3600.0), parts, strict=False):
        degrees += part / scale
    if degrees > limit:
        return None
    text = ref.decode("latin-1") if isinstance(ref, bytes) else ref
    return -degrees if isinstance(text, str) and text.strip().upper() == negative else degrees


def _gps_fields(ifd: Mapping[int, Any]) -> _Fields:
    latitude = _degrees(ifd.get(2), ifd.get(1), 90, "S")
    longitude = _degrees(ifd.get(4), ifd.get(3), 180, "W")
    if latitude is None or longitude is None:
        return {}
    # Altitude 0 is indistinguishable from absent (the message's field is plain).
    altitude = _number(ifd.get(6), -1, 100_000)
    below = ifd.get(5)
    if below in (1, b"\x01"):
        altitude = -altitude if altitude <= 12_000 else 0.0
    return {"gps": GpsPosition(latitude, longitude, altitude)}


# XMP -----------------------------------------------------------------------------------


def _xmp_packet(image: Image.Image) -> bytes | None:
    """The raw XMP packet, wherever the format's plugin keeps it."""
    for key in ("xmp", "XML:com.adobe.xmp"):
        packet = image.info.get(key)
        if isinstance(packet, str):
            return packet.encode("utf-8", "replace")
        if isinstance(packet, bytes | bytearray):
            return bytes(packet)
    return None


def parse_xmp(packet: bytes) -> ElementTree.Element | None:
    """The packet's XML, or None when it is too large, declares a DTD or is not XML.

    A DTD is refused outright (XMP never needs one): without it no entity can expand
    (billion laughs) or point outside the packet, so the standard library's parser
    is safe on what is left.
    """
    if len(packet) > MAX_XMP_BYTES:
        return None
    body = packet.strip(b"\x00 \t\r\n")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        return None
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None


def _xmp_value(element: ElementTree.Element) -> list[str]:
    """A property element's values: its text, or its rdf:Alt/Bag/Seq items (the
    x-default language first)."""
    items = element.findall("rdf:Alt/rdf:li", _NS)
    items.sort(key=lambda item: item.get(_XML_LANG) != "x-default")
    items += element.findall("rdf:Bag/rdf:li", _NS) + element.findall("rdf:Seq/rdf:li", _NS)
    if items:
        return [item.text or "" for item in items]
    return [element.text or ""] if element.text and element.text.strip() else []


def _xmp_properties(root: ElementTree.Element) -> dict[str, list[str]]:
    """Each property of every rdf:Description, as attribute or element, by
    `{namespace}name`; the first seen wins."""
    found: dict[str, list[str]] = {}
    for description in root.iter(f"{{{_NS['rdf']}}}Description"):
        for name, value in description.attrib.items():
            found.setdefault(name, [value])
        for child in description:
            values = _xmp_value(child)
            if values:
                found.setdefault(child.tag, values)
    return found


def _xmp_fields(image: Image.Image) -> _Fields:
    packet = _xmp_packet(image)
    root = None if packet is None else parse_xmp(packet)
    if root is None:
        return {}
    properties = _xmp_properties(root)

    def get(prefix: str, name: str) -> list[str]:
        return properties.get(f"{{{_NS[prefix]}}}{name}", [])

    found: _Fields = {
        "title": clean_text(next(iter(get("dc", "title")), "")),
        "description": clean_text(
            next(iter(get("dc", "description")), ""), MAX_DESCRIPTION, multiline=True
        ),
        "creator": clean_text(", ".join(get("dc", "creator")[:MAX_KEYWORDS])),
        "copyright": clean_text(next(iter(get("dc", "rights")), "")),
        "keywords": _keywords(get("dc", "subject")),
        "lens": clean_text(next(iter(get("exifEX", "LensModel") or get("aux", "Lens")), "")),
    }
    for prefix, name in (("exif", "DateTimeOriginal"), ("photoshop", "DateCreated")):
        match = _ISO_TIME.match(next(iter(get(prefix, name)), ""))
        if match:
            found.update(_capture(match.groups()[:6], match[7]))
            break
    return found


# IPTC ----------------------------------------------------------------------------------


def _iptc_fields(image: Image.Image) -> _Fields:
    if not isinstance(image, ImageFile.ImageFile):
        return {}  # an image made from the decoded one (a PNG colour key) has no IPTC
    info = IptcImagePlugin.getiptcinfo(image)
    if not info:
        return {}

    def values(dataset: int) -> list[bytes]:
        value = info.get((2, dataset))
        items = value if isinstance(value, list) else [value]
        return [item for item in items if isinstance(item, bytes)]

    def one(dataset: int) -> bytes:
        return next(iter(values(dataset)), b"")

    found: _Fields = {
        "title": clean_text(one(5)),
        "description": clean_text(one(120), MAX_DESCRIPTION, multiline=True),
        "creator": clean_text(b", ".join(values(80)[:MAX_KEYWORDS])),
        "copyright": clean_text(one(116)),
        "keywords": _keywords(values(25)),
    }
    date = _IPTC_DATE.match(one(55).decode("ascii", "replace"))
    if date:
        time = _IPTC_TIME.match(one(60).decode("ascii", "replace"))
        clock = time.groups()[:3] if time else (None, None, None)
        found.update(_capture((*date.groups(), *clock), time[4] if time else None))
    return found


# Colour profile ------------------------------------------------------------------------


def _profile_fields(image: Image.Image) -> _Fields:
    icc = image.info.get("icc_profile")
    if not isinstance(icc, bytes) or not icc or len(icc) > MAX_ICC_BYTES:
        return {}
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return {"color_profile": clean_text(ImageCms.getProfileDescription(profile))}
