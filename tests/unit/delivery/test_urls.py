"""The delivery URL scheme: grammar, canonical string, signature, versions."""

from __future__ import annotations

import pytest

from imagepipe.delivery import (
    canonical_string,
    delivery_path,
    parse_path,
    parse_query,
    preset_version,
    sign,
    signed_url,
    verify,
)

TENANT = "6f1c2b1e-0000-4000-8000-000000000001"
ASSET = "6f1c2b1e-0000-4000-8000-000000000002"
PATH = f"/v1/{TENANT}/{ASSET}/card.webp"


def test_signature_matches_openssl() -> None:
    # printf '%s' "$CANONICAL" | openssl dgst -sha256 -hmac s -binary | basenc --base64url | tr -d =
    canonical = canonical_string(PATH, version="0123456789abcdef", expires=100, key_id="00ff" * 4)
    assert canonical == PATH + "?v=0123456789abcdef&e=100&k=00ff00ff00ff00ff"
    assert sign("s", canonical) == "9W-j8pDIaLB-A3OP7onSQP-JDw1zBV6KuU_CasFwEyg"


def test_signed_url_verifies_and_round_trips() -> None:
    url = signed_url(
        "https://img.example.com/", PATH, version="0123456789abcdef", key_id="ab" * 8, secret="x"
    )
    assert url.startswith("https://img.example.com" + PATH + "?v=0123456789abcdef&k=abab")
    query = dict(pair.split("=") for pair in url.split("?")[1].split("&"))
    parsed = parse_query(query)
    assert parsed is not None and parsed.signature is not None
    canonical = canonical_string(PATH, version=parsed.version, expires=None, key_id=parsed.key_id)
    assert verify("x", canonical, parsed.signature)
    assert not verify("y", canonical, parsed.signature)
    assert not verify("x", canonical + "&", parsed.signature)


def test_unsigned_url_has_only_its_version() -> None:
    assert signed_url("http://h", PATH, version="0" * 16) == "http://h" + PATH + "?v=" + "0" * 16
    with pytest.raises(ValueError, match="together"):
        signed_url("http://h", PATH, key_id="ab" * 8)


@pytest.mark.parametrize(
    ("image_format", "suffix"), [(None, ""), ("jpeg", ".jpg"), ("webp", ".webp"), ("avif", ".avif")]
)
def test_paths_round_trip(image_format: str | None, suffix: str) -> None:
    path = delivery_path(TENANT, ASSET, "card", image_format)
    assert path == f"/v1/{TENANT}/{ASSET}/card{suffix}"
    parsed = parse_path(path)
    assert parsed is not None and parsed.format == image_format and parsed.path == path


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/{TENANT}/{ASSET}/card.png",
        f"/v1/{TENANT}/{ASSET}/card.jpeg",
        f"/v1/{TENANT.upper()}/{ASSET}/card",
        f"/v1/{TENANT}/{ASSET}/Card",
        f"/v1/{TENANT}/{ASSET}/card/",
        f"/v1/{TENANT}/{ASSET}/../card",
        f"/v2/{TENANT}/{ASSET}/card",
        f"/v1/{TENANT.replace('-', '')}xxxx/{ASSET}/card",
        "/v1/x/y/z",
    ],
)
def test_non_canonical_paths_are_refused(path: str) -> None:
    assert parse_path(path) is None


@pytest.mark.parametrize(
    "query",
    [{"v": "0123"}, {"e": "-1"}, {"e": "1e9"}, {"k": "ABABABABABABABAB"}, {"s": "short"}],
)
def test_malformed_parameters_are_refused(query: dict[str, str]) -> None:
    assert parse_query(query) is None


def test_preset_version_changes_with_any_format() -> None:
    base = preset_version([("jpeg", "1" * 16), ("avif", "2" * 16)])
    assert base == preset_version([("avif", "2" * 16), ("jpeg", "1" * 16)])
    assert base != preset_version([("jpeg", "1" * 16), ("avif", "3" * 16)])
    assert len(base) == 16
