"""The delivery URL scheme.

    <base>/v1/<tenant_id>/<asset_id>/<preset>[.<jpg|webp|avif>]
        ?v=<version>&e=<expiry>&k=<key id>&s=<signature>

- Without an extension the format is negotiated with the browser's `Accept` header.
- `v`: the version of what the URL shows (16 hex digits): a rendition's version for a
  URL with an extension, the preset's version (over every format) for a negotiated one.
  A versioned URL is immutable; without `v` the URL always shows the current bytes.
- `e`: Unix time (seconds) after which the URL stops working; absent: no expiry.
- `k`, `s`: the signing key's id and the signature, base64url without padding of
  HMAC-SHA256(secret as UTF-8, canonical string). Absent on unsigned URLs.

The canonical string is the path, then `?` and the signed parameters present, always in
the order v, e, k: `/v1/<t>/<a>/card.webp?v=0123456789abcdef&e=1767225600&k=00ff00ff00ff00ff`.
Parameters other than v, e, k and s are not signed and mean nothing to the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

__all__ = [
    "EXTENSIONS",
    "FORMATS_BY_EXTENSION",
    "DeliveryPath",
    "ParsedQuery",
    "canonical_string",
    "delivery_path",
    "parse_path",
    "parse_query",
    "preset_version",
    "sign",
    "signed_url",
    "verify",
]

# Format name (as the catalog names it) -> URL extension, and back.
EXTENSIONS: Mapping[str, str] = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
FORMATS_BY_EXTENSION: Mapping[str, str] = {ext: fmt for fmt, ext in EXTENSIONS.items()}

_PRESET = r"[a-z][a-z0-9_-]{0,31}"
_PATH = re.compile(
    r"^/v1/(?P<tenant>[0-9a-f-]{36})/(?P<asset>[0-9a-f-]{36})/"
    rf"(?P<preset>{_PRESET})(?:\.(?P<ext>jpg|webp|avif))?$"
)
_VERSION = re.compile(r"^[0-9a-f]{16}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_EXPIRY = re.compile(r"^[0-9]{1,12}$")


@dataclass(frozen=True)
class DeliveryPath:
    tenant_id: str
    asset_id: str
    preset: str
    format: str | None  # None: negotiated

    @property
    def path(self) -> str:
        return delivery_path(self.tenant_id, self.asset_id, self.preset, self.format)


@dataclass(frozen=True)
class ParsedQuery:
    version: str | None
    expires: int | None
    key_id: str | None
    signature: str | None


def delivery_path(tenant_id: str, asset_id: str, preset: str, image_format: str | None) -> str:
    """`/v1/<tenant>/<asset>/<preset>[.<ext>]`; image_format None for a negotiated URL."""
    suffix = "" if image_format is None else "." + EXTENSIONS[image_format]
    return f"/v1/{tenant_id}/{asset_id}/{preset}{suffix}"


def _canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def parse_path(path: str) -> DeliveryPath | None:
    """The parts of a delivery path; None unless it is exactly in canonical form."""
    match = _PATH.match(path)
    if match is None or not (_canonical_uuid(match["tenant"]) and _canonical_uuid(match["asset"])):
        return None
    ext = match["ext"]
    return DeliveryPath(
        match["tenant"], match["asset"], match["preset"], FORMATS_BY_EXTENSION[ext] if ext else None
    )


def parse_query(query: Mapping[str, str]) -> ParsedQuery | None:
    """The signed parameters of a query; None when one is present but malformed."""
    version = query.get("v")
    expires = query.get("e")
    key_id = query.get("k")
    signature = query.get("s")
    if version is not None and not _VERSION.match(version):
        return None
    if expires is not None and not _EXPIRY.match(expires):
        return None
    if key_id is not None and not _KEY_ID.match(key_id):
        return None
    if signature is not None and not _SIGNATURE.match(signature):
        return None
    return ParsedQuery(version, int(expires) if expires is not None else None, key_id, signature)


def canonical_string(
    path: str, *, version: str | None, expires: int | None, key_id: str | None
) -> str:
    """What a signature covers: the path and the signed parameters present, in order."""
    params = [("v", version), ("e", None if expires is None else str(expires)), ("k", key_id)]
    present = [f"{name}={value}" for name, value in params if value is not None]
    return path + ("?" + "&".join(present) if present else "")


def sign(secret: str, canonical: str) -> str:
    digest = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(secret: str, canonical: str, signature: str) -> bool:
    """Constant-time comparison of `signature` with the one `secret` gives."""
    return hmac.compare_digest(sign(secret, canonical).encode(), signature.encode())


def signed_url(
    base_url: str,
    path: str,
    *,
    version: str | None = None,
    expires: int | None = None,
    key_id: str | None = None,
    secret: str | None = None,
) -> str:
    """An absolute URL: base (scheme, host, optional prefix) + path + query.

    With key_id and secret it is signed; without them it is an unsigned URL (served only
    for tenants that allow unsigned delivery).
    """
    if (key_id is None) != (secret is None):
        raise ValueError("key_id and secret go together")
    params: list[tuple[str, str]] = []
    if version is not None:
        params.append(("v", version))
    if expires is not None:
        params.append(("e", str(expires)))
    if key_id is not None and secret is not None:
        canonical = canonical_string(path, version=version, expires=expires, key_id=key_id)
        params += [("k", key_id), ("s", sign(secret, canonical))]
    query = "?" + urlencode(params) if params else ""
    return base_url.rstrip("/") + path + query


def preset_version(renditions: Iterable[tuple[str, str]]) -> str:
    """The version of a preset's renditions as a whole, from (format, version) pairs:
    a negotiated URL's `v`. Any format's new bytes give a new version."""
    listing = "\n".join(sorted(f"{fmt}:{version}" for fmt, version in renditions))
    return hashlib.sha256(listing.encode()).hexdigest()[:16]
