"""Reading an original's metadata (services/shared/imaging/metadata.py).

The corpus photos are checked against a second EXIF reader (exifread) as the oracle;
hostile blocks (cut, lying about their sizes, not XML, entity bombs, NUL and broken
UTF-8, NaN and zero-denominator rationals) must each give a result, never an error.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import exifread
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, TiffImagePlugin, UnidentifiedImageError

from services.shared.imaging.decode import inspect_image, register_decoders
from services.shared.imaging.metadata import (
    MAX_DESCRIPTION,
    MAX_KEYWORD,
    MAX_KEYWORDS,
    MAX_SHORT,
    AssetMetadata,
    clean_text,
    read_metadata,
)

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
MAX_PIXELS = 50_000_000
R = TiffImagePlugin.IFDRational


def _open(data: bytes) -> Image.Image:
    register_decoders()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _jpeg(*, exif: bytes = b"", xmp: bytes = b"", icc: bytes = b"", app13: bytes = b"") -> bytes:
    """A small JPEG carrying these blocks (APP13 spliced in raw after SOI).

    Its JFIF header gives the density, as most encoders write it: Pillow then leaves the
    EXIF alone when opening it, so only the metadata reader parses a damaged one.
    """
    out = io.BytesIO()
    options: dict[str, Any] = {"exif": exif, "xmp": xmp, "dpi": (72, 72)}
    if icc:
        options["icc_profile"] = icc
    Image.new("RGB", (16, 12), (90, 120, 200)).save(out, "JPEG", **options)
    data = out.getvalue()
    if app13:
        segment = b"\xff\xed" + struct.pack(">H", len(app13) + 2) + app13
        data = data[:2] + segment + data[2:]
    return data


def _photoshop(iptc: bytes) -> bytes:
    """An APP13 payload holding one IPTC-NAA resource (0x0404)."""
    padded = iptc + b"\x00" * (len(iptc) % 2)
    return b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + padded


def _iptc(*records: tuple[int, bytes]) -> bytes:
    return b"".join(
        b"\x1c\x02" + bytes([dataset]) + struct.pack(">H", len(value)) + value
        for dataset, value in records
    )


# The corpus, against exifread -------------------------------------------------------


def _oracle(path: Path) -> dict[str, Any]:
    """exifread's reading of the file's EXIF (the TIFF structure in its APP1)."""
    data = path.read_bytes()
    start = data.find(b"Exif\x00\x00")
    tags = exifread.process_file(io.BytesIO(data[start + 6 :]), details=False)
    return {name: tag.values for name, tag in tags.items() if hasattr(tag, "values")}


def _ratio(value: Any) -> float:
    first = value[0] if isinstance(value, list) else value
    if first.denominator == 0:
        return math.nan
    return float(Fraction(first.numerator, first.denominator))


def _position(oracle: dict[str, Any], key: str, ref: str) -> float:
    parts = [_ratio([part]) for part in oracle[f"GPS GPS{key}"]]
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    return -degrees if str(oracle[f"GPS GPS{key}Ref"]).strip() in ("S", "W") else degrees


@pytest.mark.parametrize(
    "name",
    ["photo_iphone6_gps.jpg", "photo_olympus_ep3_12mp.jpg", "photo_moto_g9_empty_gps.jpg"],
)
def test_camera_facts_match_the_oracle(name: str) -> None:
    path = CORPUS / name
    oracle = _oracle(path)
    found = read_metadata(_open(path.read_bytes()))

    assert found.camera_make == str(oracle["Image Make"]).strip()
    assert found.camera_model == str(oracle["Image Model"]).strip()
    taken = dt.datetime.strptime(str(oracle["EXIF DateTimeOriginal"]), "%Y:%m:%d %H:%M:%S")
    assert found.capture_time == taken.replace(tzinfo=dt.UTC)
    assert found.capture_time_offset == ""
    assert found.exposure_time_seconds == pytest.approx(_ratio(oracle["EXIF ExposureTime"]))
    assert found.f_number == pytest.approx(_ratio(oracle["EXIF FNumber"]))
    assert found.focal_length_mm == pytest.approx(_ratio(oracle["EXIF FocalLength"]))
    assert found.iso == oracle["EXIF ISOSpeedRatings"][0]
    assert found.orientation == oracle["Image Orientation"][0]
    assert found.lens == str(oracle.get("EXIF LensModel", "")).strip()


def test_gps_position_matches_the_oracle() -> None:
    path = CORPUS / "photo_iphone6_gps.jpg"
    oracle = _oracle(path)
    gps = read_metadata(_open(path.read_bytes())).gps
    assert gps is not None
    assert gps.latitude == pytest.approx(_position(oracle, "Latitude", "N"), abs=1e-9)
    assert gps.longitude == pytest.approx(_position(oracle, "Longitude", "E"), abs=1e-9)
    assert gps.altitude_meters == pytest.approx(_ratio(oracle["GPS GPSAltitude"]))
    assert (round(gps.latitude, 2), round(gps.longitude, 2)) == (40.45, -3.72)  # N40 26', W3 43'


def test_a_gps_block_of_zero_denominators_is_no_position() -> None:
    path = CORPUS / "photo_moto_g9_empty_gps.jpg"
    oracle = _oracle(path)
    assert all(math.isnan(_ratio([part])) for part in oracle["GPS GPSLatitude"])
    assert read_metadata(_open(path.read_bytes())).gps is None


def test_the_other_corpus_blocks() -> None:
    portrait = read_metadata(_open((CORPUS / "jpeg_progressive_portrait.jpg").read_bytes()))
    assert portrait.keywords == ("Marie Curie", "Pierre Curie")  # XMP dc:subject and IPTC
    denali = read_metadata(_open((CORPUS / "webp_lossy_denali.webp").read_bytes()))
    assert denali.title == "Denali National Park and Preserve"
    assert denali.creator == "NPS / David Restivo"
    for name, profile in (
        ("jpeg_adobergb_icc.jpg", "Adobe RGB (1998)"),
        ("heic_iphone.heic", "Display P3"),
    ):
        image = _open((CORPUS / name).read_bytes())
        described = ImageCms.getProfileDescription(
            ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        )
        assert read_metadata(image).color_profile == described.strip() == profile


def test_ingest_records_the_metadata_of_the_bytes_it_proved() -> None:
    facts = inspect_image(CORPUS / "photo_iphone6_gps.jpg", MAX_PIXELS)
    assert facts.metadata.camera_model == "iPhone 6" and facts.metadata.gps is not None
    assert inspect_image(CORPUS / "png_rgba_dice.png", MAX_PIXELS).metadata == AssetMetadata()


# Blocks we write, to know what they say ---------------------------------------------


def _exif(
    base: dict[int, Any], camera: dict[int, Any] | None = None, gps: dict[int, Any] | None = None
) -> bytes:
    exif = Image.Exif()
    for tag, value in base.items():
        exif[tag] = value
    for pointer, values in ((0x8769, camera), (0x8825, gps)):
        ifd = exif.get_ifd(pointer)
        for tag, value in (values or {}).items():
            ifd[tag] = value
    return exif.tobytes()


def test_exif_offset_time_makes_the_capture_time_utc() -> None:
    exif = _exif({}, {0x9003: "2021:06:01 10:00:00", 0x9011: "+05:30"})
    found = read_metadata(_open(_jpeg(exif=exif)))
    assert found.capture_time == dt.datetime(2021, 6, 1, 4, 30, tzinfo=dt.UTC)
    assert found.capture_time_offset == "+05:30"


XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
  xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmlns:aux="http://ns.adobe.com/exif/1.0/aux/"
  photoshop:DateCreated="2020-02-29T23:30:00-01:00" aux:Lens="Summicron 35">
 <dc:title><rdf:Alt><rdf:li xml:lang="fr">Titre</rdf:li>
  <rdf:li xml:lang="x-default">Zürich at night</rdf:li></rdf:Alt></dc:title>
 <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Line one
line two</rdf:li></rdf:Alt></dc:description>
 <dc:creator><rdf:Seq><rdf:li>Ana</rdf:li><rdf:li>Bo</rdf:li></rdf:Seq></dc:creator>
 <dc:rights><rdf:Alt><rdf:li xml:lang="x-default">© Ana</rdf:li></rdf:Alt></dc:rights>
 <dc:subject><rdf:Bag><rdf:li>night</rdf:li><rdf:li>city</rdf:li><rdf:li>night</rdf:li></rdf:Bag>
 </dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"""


def test_xmp_fields_win_over_iptc_and_exif() -> None:
    iptc = _photoshop(_iptc((5, b"IPTC title"), (25, b"iptc-keyword"), (80, b"Someone")))
    exif = _exif({0x010E: "EXIF description", 0x013B: "EXIF artist"})
    found = read_metadata(_open(_jpeg(exif=exif, xmp=XMP.encode(), app13=iptc)))
    assert found.title == "Zürich at night"
    assert found.description == "Line one\nline two"
    assert found.creator == "Ana, Bo"
    assert found.copyright == "© Ana"
    assert found.keywords == ("night", "city")
    assert found.lens == "Summicron 35"
    assert found.capture_time == dt.datetime(2020, 3, 1, 0, 30, tzinfo=dt.UTC)
    assert found.capture_time_offset == "-01:00"


def test_iptc_fields_and_date_when_there_is_no_xmp() -> None:
    iptc = _photoshop(
        _iptc(
            (5, b"Hafen"),
            (25, b"boats"),
            (25, b"harbour"),
            (80, b"Kim"),
            (116, b"(c) Kim"),
            (120, "Möwen\r\nim Hafen".encode()),
            (55, b"20190704"),
            (60, b"181500+0200"),
        )
    )
    found = read_metadata(_open(_jpeg(app13=iptc)))
    assert (found.title, found.creator, found.copyright) == ("Hafen", "Kim", "(c) Kim")
    assert found.description == "Möwen\nim Hafen"
    assert found.keywords == ("boats", "harbour")
    assert found.capture_time == dt.datetime(2019, 7, 4, 16, 15, tzinfo=dt.UTC)
    assert found.capture_time_offset == "+02:00"


# Hostile blocks ----------------------------------------------------------------------

IPHONE_EXIF = _open((CORPUS / "photo_iphone6_gps.jpg").read_bytes()).info["exif"]


def _lying_tiff() -> bytes:
    """A TIFF header whose directory claims 65535 entries, a Make of 4 GiB at an offset
    past any file, and an Exif IFD pointer far outside the block."""
    entries = [
        struct.pack("<HHII", 0x010F, 2, 0xFFFFFFFF, 0x7FFFFFF0),
        struct.pack("<HHII", 0x8769, 4, 1, 0xFFFFFF00),
        struct.pack("<HHII", 0x8825, 4, 1, 8),  # GPS IFD pointing back at IFD0
    ]
    return b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 0xFFFF) + b"".join(entries)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol9;</dc:title>
</rdf:Description></rdf:RDF></x:xmpmeta>"""

HOSTILE = {
    "truncated exif": {"exif": IPHONE_EXIF[: len(IPHONE_EXIF) // 3]},
    "exif cut inside its header": {"exif": b"Exif\x00\x00II*\x00\x08"},
    "exif that is not tiff": {"exif": b"Exif\x00\x00" + b"\xab" * 200},
    "exif with huge counts and offsets": {"exif": _lying_tiff()},
    "xmp that is not xml": {"xmp": b"<x:xmpmeta><rdf:RDF>unclosed & <<<"},
    "xmp of binary noise": {"xmp": bytes(range(256)) * 4},
    "billion laughs xmp": {"xmp": BILLION_LAUGHS},
    "external entity xmp": {
        "xmp": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    },
    "iptc with a bad record marker": {"app13": _photoshop(b"\x1d\x02\x05\x00\x04oops")},
    "iptc with an absurd length": {"app13": _photoshop(b"\x1c\x02\x05\x84\xff\xff\xff\xffab")},
    "icc profile of garbage": {"icc": b"\x00\x00\x02\x00garbage" * 50},
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_malformed_block_gives_a_result_not_an_error(name: str, tmp_path: Path) -> None:
    data = _jpeg(**HOSTILE[name])
    found = read_metadata(_open(data))
    assert isinstance(found, AssetMetadata)
    # What a damaged block still says legibly may be kept, always as clean text.
    for text in (found.title, found.camera_make, found.camera_model, found.description):
        assert not any(ord(c) < 32 and c != "\n" for c in text)
    assert found.color_profile == ""
    # The whole ingest path accepts the image: its metadata never refuses an upload.
    path = tmp_path / "upload"
    path.write_bytes(data)
    assert inspect_image(path, MAX_PIXELS).width == 16


def test_nul_and_invalid_utf8_come_out_as_clean_text() -> None:
    exif = _exif({0x010F: "Can\x00onXX", 0x0110: "EOS\n5D"}).replace(b"XX", b"\xff\xfe")
    iptc = _photoshop(
        _iptc(
            (5, b"Z\x00\xfcrich\x01"),
            (25, b"\x00\x00"),
            (25, b"ok\xc3"),
            (80, "Ana\u202egnp.exe".encode()),
        )
    )
    found = read_metadata(_open(_jpeg(exif=exif, app13=iptc)))
    assert found.camera_make == "Canon\ufffd\ufffd"
    assert found.camera_model == "EOS 5D"
    assert found.creator == "Anagnp.exe"
    assert found.title == "Z\ufffdrich"
    assert found.keywords == ("ok\ufffd",)
    for text in (found.camera_make, found.camera_model, found.title):
        text.encode("utf-8")  # valid Unicode, no lone surrogates
        assert not any(ord(c) < 32 for c in text)


def test_nan_zero_denominator_and_absurd_numbers_are_dropped() -> None:
    exif = _exif(
        {0x0112: 42},
        {
            0x829D: R(0, 0),  # f-number NaN
            0x829A: R(1, 0),  # exposure 1/0
            0x920A: R(10**9, 1),  # a focal length of a thousand kilometres
            0x8827: 10**8,  # ISO past any sensor
            0x9003: "0000:00:00 00:00:00",  # a camera with its clock unset
        },
        {1: "N", 2: (R(0, 0), R(0, 0), R(0, 0)), 3: "E", 4: (R(10, 1), R(0, 1), R(0, 1))},
    )
    found = read_metadata(_open(_jpeg(exif=exif)))
    assert found == AssetMetadata()


def test_a_position_outside_the_earth_is_dropped() -> None:
    exif = _exif(
        {}, None, {1: "N", 2: (R(95, 1), R(0, 1), R(0, 1)), 3: "W", 4: (R(3, 1), R(0, 1), R(0, 1))}
    )
    assert read_metadata(_open(_jpeg(exif=exif))).gps is None


def test_text_fields_are_bounded() -> None:
    iptc = _photoshop(
        _iptc(
            (5, b"t" * 5000),
            (120, b"d" * 5000),
            *((25, b"k%03d" % i + b"x" * 100) for i in range(100)),
        )
    )
    found = read_metadata(_open(_jpeg(app13=iptc)))
    assert len(found.title) == MAX_SHORT
    assert len(found.description) == MAX_DESCRIPTION
    assert len(found.keywords) == MAX_KEYWORDS
    assert all(len(k) == MAX_KEYWORD for k in found.keywords)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"plain", "plain"),
        (b"\x00\x00Canon\x00", "Canon"),
        (b"bad \xc3\x28 utf8", "bad \ufffd( utf8"),
        ("tab\there\r\nnext", "tab here next"),
        ("rlo\u202eevil", "rloevil"),
        (42, ""),
        (None, ""),
    ],
)
def test_clean_text(value: object, expected: str) -> None:
    assert clean_text(value) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    block=st.sampled_from(["exif", "xmp", "app13"]),
    cut=st.integers(min_value=0, max_value=len(IPHONE_EXIF)),
    noise=st.binary(max_size=64),
    position=st.integers(min_value=0, max_value=len(IPHONE_EXIF)),
)
def test_any_damage_to_a_block_gives_a_result(
    block: str, cut: int, noise: bytes, position: int
) -> None:
    """Real blocks cut anywhere and overwritten with noise anywhere."""
    sources = {
        "exif": IPHONE_EXIF,
        "xmp": XMP.encode(),
        "app13": _photoshop(_iptc((5, b"title"), (25, b"k"), (55, b"20200101"))),
    }
    original = sources[block]
    damaged = original[:position] + noise + original[position + len(noise) :]
    damaged = damaged[: max(cut, 6)] if block == "exif" else damaged[:cut]
    try:
        image = _open(_jpeg(**{block: damaged}))
    except UnidentifiedImageError:
        # Pillow refuses the whole file (an APP segment cut inside its header): ingest
        # answers "not an image" before any metadata is read.
        assume(False)
    assert isinstance(read_metadata(image), AssetMetadata)
