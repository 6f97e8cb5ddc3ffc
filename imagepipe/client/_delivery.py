"""Delivery URLs, signing keys and tenant settings: AsyncClient's calls for R10 delivery.

A delivery URL is signed here, locally, with :mod:`imagepipe.delivery` (the one definition
of the URL scheme): the client reads the asset once (GetAsset) for its tenant id and the
versions of its renditions, and needs no other round trip. Callers that hold no signing
secret ask the catalog instead (:meth:`DeliveryCalls.get_delivery_url`). Without a
configured key the URL is unsigned, which delivery serves only for tenants that enabled
unsigned delivery (:meth:`DeliveryCalls.update_tenant_settings`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import grpc
from google.protobuf import field_mask_pb2

from imagepipe.client._calls import Calls, new_request_id
from imagepipe.client._results import CreatedSigningKey, DeliveryLink
from imagepipe.client.errors import ImagepipeError
from imagepipe.client.names import format_name, parse_format, status_name
from imagepipe.delivery import EXTENSIONS, delivery_path, parse_query, preset_version, signed_url
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2

__all__ = [
    "DeliveryCalls",
    "Signer",
    "choose_version",
    "deliverable_format",
    "expiry_timestamp",
]

_Format: TypeAlias = common_pb2.ImageFormat.ValueType
Expiry: TypeAlias = datetime | timedelta | None

_UNFINISHED = frozenset({common_pb2.ASSET_STATUS_PENDING, common_pb2.ASSET_STATUS_PROCESSING})
ENV_SIGNING_KEY_ID = "IMAGEPIPE_SIGNING_KEY_ID"
ENV_SIGNING_SECRET = "IMAGEPIPE_SIGNING_SECRET"


def deliverable_format(value: str | _Format | None, request_id: str = "") -> str | None:
    """None for a negotiated URL, else the format's name: one of jpeg, webp, avif."""
    if value is None:
        return None
    try:
        name = format_name(parse_format(value))
    except ValueError as error:
        name = str(error)
    if name not in EXTENSIONS:
        raise ImagepipeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"delivery URLs serve {', '.join(EXTENSIONS)} (or no format: negotiated), "
            f"not {value!r}",
            reason="INVALID_FORMAT",
            metadata={"field": "format"},
            request_id=request_id,
        )
    return name


def choose_version(
    asset: common_pb2.Asset, preset: str, image_format: str | None, request_id: str = ""
) -> str:
    """The `v` of the asset's URL: the rendition's version for a format, else the preset's.

    The errors are the catalog's for the same asks (GetRendition, GetDeliveryUrl), so
    callers branch on the same reasons whichever side signed.
    """
    if asset.status == common_pb2.ASSET_STATUS_DELETED:
        # The catalog's answer for a deleted asset's URL, too.
        raise ImagepipeError(
            grpc.StatusCode.NOT_FOUND,
            f"asset {asset.asset_id} is deleted; delivery no longer serves it",
            reason="ASSET_NOT_FOUND",
            request_id=request_id,
        )
    found = [r for r in asset.renditions if r.preset == preset]
    if not found:
        if asset.status in _UNFINISHED:
            raise ImagepipeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"asset {asset.asset_id} is {status_name(asset.status)}; its renditions are "
                "not made yet (wait_ready tells when it is ready)",
                reason="ASSET_NOT_READY",
                metadata={"status": status_name(asset.status)},
                request_id=request_id,
            )
        raise ImagepipeError(
            grpc.StatusCode.NOT_FOUND,
            f"asset {asset.asset_id} has no {preset!r} rendition",
            reason="RENDITION_NOT_FOUND",
            request_id=request_id,
        )
    versions = {format_name(r.format): r.version for r in found}
    if not all(versions.values()):
        raise ImagepipeError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "the catalog returned renditions without a version: it predates delivery URLs; "
            "upgrade it",
            reason="VERSION_UNKNOWN",
            request_id=request_id,
        )
    if image_format is None:
        return preset_version(versions.items())
    if image_format not in versions:
        available = sorted(versions)
        raise ImagepipeError(
            grpc.StatusCode.NOT_FOUND,
            f"no {image_format} rendition of {preset!r}; available: {', '.join(available)}",
            reason="FORMAT_NOT_AVAILABLE",
            metadata={"available": ",".join(available)},
            request_id=request_id,
        )
    return versions[image_format]


def expiry_timestamp(expires: Expiry, now: datetime, request_id: str = "") -> int | None:
    """The URL's `e` (Unix seconds, never later than asked), or None for no expiry.

    A datetime without a timezone is taken as UTC (what protobuf's ToDatetime() gives).
    """
    if expires is None:
        return None
    if isinstance(expires, timedelta):
        moment = now + expires
    else:
        moment = expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)
    seconds = math.floor(moment.timestamp())
    if seconds <= now.timestamp():
        raise ImagepipeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"expires ({moment.isoformat()}) is not in the future",
            reason="EXPIRY_IN_PAST",
            request_id=request_id,
        )
    return seconds


class Signer:
    """Where delivery is, and the signing key the client signs with (if any)."""

    def __init__(self, base_url: str, key_id: str | None, secret: str | None) -> None:
        self.base_url = base_url
        self.key_id = key_id or None
        self._secret = secret or None

    def __repr__(self) -> str:
        return f"Signer(base_url={self.base_url!r}, key_id={self.key_id!r})"

    def key(self, request_id: str) -> tuple[str, str] | None:
        """(key id, secret), or None to sign nothing; refuses half a key."""
        if self.key_id is None and self._secret is None:
            return None
        if self.key_id is None or self._secret is None:
            given, missing = (
                (ENV_SIGNING_KEY_ID, ENV_SIGNING_SECRET)
                if self._secret is None
                else (ENV_SIGNING_SECRET, ENV_SIGNING_KEY_ID)
            )
            raise ImagepipeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{given} is set but {missing} is not: set both to sign delivery URLs, "
                "or neither for unsigned ones",
                reason="SIGNING_KEY_INCOMPLETE",
                request_id=request_id,
            )
        if parse_query({"k": self.key_id}) is None:
            raise ImagepipeError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signing key id {self.key_id!r} is not 16 hex digits (CreateSigningKey's key_id)",
                reason="SIGNING_KEY_MALFORMED",
                request_id=request_id,
            )
        return self.key_id, self._secret

    def link(
        self,
        asset: common_pb2.Asset,
        preset: str,
        image_format: str | None,
        expires: int | None,
        request_id: str = "",
    ) -> DeliveryLink:
        """The asset's delivery URL, signed when a key is configured."""
        version = choose_version(asset, preset, image_format, request_id)
        key = self.key(request_id)
        url = signed_url(
            self.base_url,
            delivery_path(asset.tenant_id, asset.asset_id, preset, image_format),
            version=version,
            expires=expires,
            key_id=key[0] if key else None,
            secret=key[1] if key else None,
        )
        expire_time = None if expires is None else datetime.fromtimestamp(expires, UTC)
        return DeliveryLink(
            url=url, version=version, expire_time=expire_time, key_id=key[0] if key else ""
        )


class DeliveryCalls:
    """AsyncClient's delivery URLs, signing keys and tenant settings (a mixin)."""

    _calls: Calls
    _signer: Signer

    def _stub(self) -> catalog_pb2_grpc.CatalogServiceAsyncStub:
        return catalog_pb2_grpc.CatalogServiceStub(self._calls.channel("catalog"))

    @property
    def delivery_base_url(self) -> str:
        """The base URL delivery URLs are built on (IMAGEPIPE_DELIVERY_URL)."""
        return self._signer.base_url

    @property
    def signing_key_id(self) -> str | None:
        """The key local delivery URLs are signed with (IMAGEPIPE_SIGNING_KEY_ID), if any."""
        return self._signer.key_id

    async def delivery_link(
        self,
        asset_id: str,
        preset: str,
        format: str | _Format | None = None,
        expires: Expiry = None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> DeliveryLink:
        """The delivery URL of a rendition, signed locally, with its version and expiry.

        `format` (jpeg, webp, avif) gives a URL of that format; None a URL that
        negotiates it with the browser's Accept header. `expires` is a datetime (naive:
        UTC), a timedelta from now, or None for a URL that does not expire. Without a
        signing key the URL is unsigned: delivery serves it only for a tenant that
        enabled unsigned delivery (update_tenant_settings(unsigned_delivery=True)).
        """
        rid = request_id or new_request_id()
        image_format = deliverable_format(format, rid)
        expire = expiry_timestamp(expires, datetime.now(UTC), rid)
        self._signer.key(rid)  # a half-configured key fails before the call
        response = await self._calls.tenant(
            self._stub().GetAsset, catalog_pb2.GetAssetRequest(asset_id=asset_id), rid, timeout
        )
        return self._signer.link(response.asset, preset, image_format, expire, rid)

    async def delivery_url(
        self,
        asset_id: str,
        preset: str,
        format: str | _Format | None = None,
        expires: Expiry = None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """The delivery URL of a rendition, signed locally: see delivery_link."""
        link = await self.delivery_link(
            asset_id, preset, format, expires, request_id=request_id, timeout=timeout
        )
        return link.url

    async def get_delivery_url(
        self,
        asset_id: str,
        preset: str,
        format: str | _Format | None = None,
        *,
        ttl_seconds: int = 0,
        key_id: str = "",
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> DeliveryLink:
        """A delivery URL signed by the catalog, for callers that hold no secret.

        `key_id` empty: the tenant's newest active key (or an unsigned URL when it has
        none and allows unsigned delivery). `ttl_seconds` 0: no expiry.
        """
        rid = request_id or new_request_id()
        image_format = deliverable_format(format, rid)
        request = catalog_pb2.GetDeliveryUrlRequest(
            asset_id=asset_id,
            preset=preset,
            format=common_pb2.IMAGE_FORMAT_UNSPECIFIED
            if image_format is None
            else parse_format(image_format),
            ttl_seconds=ttl_seconds,
            key_id=key_id,
        )
        response = await self._calls.tenant(self._stub().GetDeliveryUrl, request, rid, timeout)
        expire_time = (
            response.expire_time.ToDatetime(tzinfo=UTC)
            if response.HasField("expire_time")
            else None
        )
        return DeliveryLink(
            url=response.url,
            version=response.version,
            expire_time=expire_time,
            key_id=response.key_id,
        )

    async def create_signing_key(
        self, label: str = "", *, request_id: str | None = None, timeout: float | None = None
    ) -> CreatedSigningKey:
        """A new signing key and its secret, which is shown only this once."""
        response = await self._calls.tenant(
            self._stub().CreateSigningKey,
            catalog_pb2.CreateSigningKeyRequest(label=label),
            request_id,
            timeout,
        )
        return CreatedSigningKey(signing_key=response.signing_key, secret=response.secret)

    async def list_signing_keys(
        self, *, request_id: str | None = None, timeout: float | None = None
    ) -> list[common_pb2.SigningKey]:
        """The tenant's signing keys, oldest first, revoked ones included."""
        response = await self._calls.tenant(
            self._stub().ListSigningKeys, catalog_pb2.ListSigningKeysRequest(), request_id, timeout
        )
        return list(response.signing_keys)

    async def revoke_signing_key(
        self, key_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> common_pb2.SigningKey:
        """Revoke a signing key: its URLs stop working within delivery's lookup TTL."""
        response = await self._calls.tenant(
            self._stub().RevokeSigningKey,
            catalog_pb2.RevokeSigningKeyRequest(key_id=key_id),
            request_id,
            timeout,
        )
        return response.signing_key

    async def get_tenant_settings(
        self, *, request_id: str | None = None, timeout: float | None = None
    ) -> common_pb2.TenantSettings:
        """The calling tenant's settings."""
        response = await self._calls.tenant(
            self._stub().GetTenantSettings,
            catalog_pb2.GetTenantSettingsRequest(),
            request_id,
            timeout,
        )
        return response.settings

    async def update_tenant_settings(
        self,
        *,
        unsigned_delivery: bool | None = None,
        keep_gps: bool | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> common_pb2.TenantSettings:
        """Change the settings given (None: leave as is); returns them all after.

        `keep_gps`: keep the GPS position of later uploads in their metadata (off by
        default; renditions never carry it)."""
        rid = request_id or new_request_id()
        changes = _given({"unsigned_delivery": unsigned_delivery, "keep_gps": keep_gps}, rid)
        request = catalog_pb2.UpdateTenantSettingsRequest(
            settings=common_pb2.TenantSettings(**changes),
            update_mask=field_mask_pb2.FieldMask(paths=sorted(changes)),
        )
        response = await self._calls.tenant(
            self._stub().UpdateTenantSettings, request, rid, timeout
        )
        return response.settings


def _given(values: Mapping[str, bool | None], request_id: str) -> dict[str, bool]:
    """The settings a caller named; at least one."""
    given = {name: value for name, value in values.items() if value is not None}
    if not given:
        raise ImagepipeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"name a setting to change: {', '.join(values)}",
            reason="UPDATE_MASK_REQUIRED",
            request_id=request_id,
        )
    return given
