"""Delivery URLs: the URL a tenant asks for, signed with one of its keys, and what the
delivery service asks before it serves one (how to check it, what it points at).

The URL scheme itself (paths, signatures, versions) is imagepipe.delivery's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imagepipe.delivery import EXTENSIONS, delivery_path, preset_version, signed_url
from services.catalog.model import AssetStatus, Rendition, SigningKey
from services.catalog.ports import AssetStore, TenantStore
from services.catalog.usecases.renditions import first_accepted, preset_renditions
from services.catalog.usecases.signing_keys import (
    is_key_id,
    signing_key_not_found,
    signing_secret,
)
from services.shared.errors import FailedPrecondition, InvalidArgument
from services.shared.storage import rendition_version

__all__ = [
    "MAX_URL_TTL_SECONDS",
    "DeliveryAccess",
    "DeliveryUrl",
    "Resolved",
    "UrlRequest",
    "UrlSigning",
    "delivery_access",
    "delivery_url",
    "resolve_delivery",
    "version_of",
    "version_of_preset",
]

MAX_URL_TTL_SECONDS = 365 * 86400


@dataclass(frozen=True)
class UrlRequest:
    asset_id: uuid.UUID
    preset: str
    image_format: str | None  # None: negotiated with the browser's Accept header
    ttl_seconds: int  # 0: the URL does not expire
    key_id: str  # "": the newest active key


@dataclass(frozen=True)
class UrlSigning:
    public_url: str  # where browsers reach the delivery service
    pepper: str  # what signing secrets derive from


@dataclass(frozen=True)
class DeliveryUrl:
    url: str
    version: str
    expires_at: dt.datetime | None
    key_id: str  # "": unsigned


@dataclass(frozen=True)
class DeliveryAccess:
    tenant_found: bool
    unsigned_delivery: bool
    key_secret: str  # "": no active key of the tenant was named


@dataclass(frozen=True)
class Resolved:
    status: AssetStatus | None  # None: the tenant has no such asset
    renditions: tuple[Rendition, ...]
    preset_version: str  # "": no renditions


def version_of(rendition: Rendition) -> str:
    """The version its key carries; "" for a key not made by rendition_key."""
    try:
        return rendition_version(rendition.object_key)
    except ValueError:
        return ""


def version_of_preset(renditions: Iterable[Rendition]) -> str:
    """The version of a preset's renditions as a whole; "" when there are none."""
    pairs = [(r.format, version_of(r)) for r in renditions]
    return preset_version(pairs) if pairs else ""


def _check_url_request(request: UrlRequest) -> None:
    if request.image_format is not None and request.image_format not in EXTENSIONS:
        raise InvalidArgument(
            f"format {request.image_format} is not delivered; ask for one of "
            f"{', '.join(sorted(EXTENSIONS))}, or leave it unset to negotiate",
            reason="INVALID_FORMAT",
            metadata={"field": "format"},
        )
    if request.ttl_seconds > MAX_URL_TTL_SECONDS:
        raise InvalidArgument(
            f"ttl_seconds is at most {MAX_URL_TTL_SECONDS} (365 days); 0 for no expiry",
            reason="INVALID_TTL",
        )


async def _signing_key(
    tenants: TenantStore, tenant_id: uuid.UUID, key_id: str
) -> SigningKey | None:
    """The key to sign with; None for an unsigned URL (the tenant allows them and has
    no active key)."""
    if key_id:
        named = await tenants.active_signing_key(tenant_id, key_id) if is_key_id(key_id) else None
        if named is None:
            raise signing_key_not_found(key_id, active=True)
        return named
    newest = await tenants.active_signing_key(tenant_id, None)
    if newest is not None:
        return newest
    settings = await tenants.tenant_settings(tenant_id)
    if settings is None or not settings.unsigned_delivery:
        raise FailedPrecondition(
            "the tenant has no active signing key: create one with CreateSigningKey "
            "or enable unsigned delivery (UpdateTenantSettings)",
            reason="NO_SIGNING_KEY",
        )
    return None


async def delivery_url(
    assets: AssetStore,
    tenants: TenantStore,
    *,
    tenant_id: uuid.UUID,
    request: UrlRequest,
    signing: UrlSigning,
    now: dt.datetime,
) -> DeliveryUrl:
    """A URL of the asset's rendition (or of its preset, negotiated), carrying the
    current version, signed with the named or the newest active key."""
    _check_url_request(request)
    found = await preset_renditions(
        assets, tenant_id=tenant_id, asset_id=request.asset_id, preset=request.preset
    )
    if request.image_format is None:
        version = version_of_preset(found)
    else:
        version = version_of(first_accepted(found, [request.image_format]))
    key = await _signing_key(tenants, tenant_id, request.key_id)
    expires = int(now.timestamp()) + request.ttl_seconds if request.ttl_seconds else None
    path = delivery_path(
        str(tenant_id), str(request.asset_id), request.preset, request.image_format
    )
    url = signed_url(
        signing.public_url,
        path,
        version=version or None,
        expires=expires,
        key_id=key.key_id if key else None,
        secret=signing_secret(key.key_id, signing.pepper) if key else None,
    )
    return DeliveryUrl(
        url=url,
        version=version,
        expires_at=None if expires is None else dt.datetime.fromtimestamp(expires, dt.UTC),
        key_id=key.key_id if key else "",
    )


async def delivery_access(
    tenants: TenantStore, *, tenant_id: uuid.UUID, key_id: str, pepper: str
) -> DeliveryAccess:
    """How the tenant's URLs are checked: the secret only of an active key of its own."""
    settings = await tenants.tenant_settings(tenant_id)
    if settings is None:
        return DeliveryAccess(tenant_found=False, unsigned_delivery=False, key_secret="")
    active = is_key_id(key_id) and await tenants.active_signing_key(tenant_id, key_id) is not None
    return DeliveryAccess(
        tenant_found=True,
        unsigned_delivery=settings.unsigned_delivery,
        key_secret=signing_secret(key_id, pepper) if active else "",
    )


async def resolve_delivery(
    assets: AssetStore,
    *,
    tenant_id: uuid.UUID,
    asset_id: uuid.UUID,
    preset: str,
    accept: Sequence[str],
) -> Resolved:
    """The asset's status and its `preset` renditions in the `accept`ed formats, in
    that order (every format when empty); nothing of a deleted asset."""
    found = await assets.preset_renditions(tenant_id, asset_id, preset)
    if found is None:
        return Resolved(status=None, renditions=(), preset_version="")
    if found.status == AssetStatus.DELETED:
        return Resolved(status=AssetStatus.DELETED, renditions=(), preset_version="")
    by_format = {r.format: r for r in found.renditions}
    chosen = (
        [by_format[f] for f in dict.fromkeys(accept) if f in by_format]
        if accept
        else list(found.renditions)
    )
    return Resolved(
        status=found.status,
        renditions=tuple(chosen),
        preset_version=version_of_preset(found.renditions),
    )
