"""The delivery RPCs of catalog, called through the generated stubs: signing keys,
tenant settings and GetDeliveryUrl for tenants; GetDeliveryAccess and ResolveDelivery
for the delivery service alone (internal credential).

test_rpcs.py's completeness check names these RPCs; their cases are here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from imagepipe.delivery import canonical_string, parse_path, preset_version, verify
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)
from tests.conftest import ISSUED_TENANT_KEYS
from tests.helpers import Services, Tenant, error_info, upload, wait_for_status


def _catalog(services: Services) -> catalog_pb2_grpc.CatalogServiceStub:
    return catalog_pb2_grpc.CatalogServiceStub(services.catalog)


def _internal(services: Services) -> catalog_internal_pb2_grpc.CatalogInternalServiceStub:
    return catalog_internal_pb2_grpc.CatalogInternalServiceStub(services.catalog)


def create_key(services: Services, tenant: Tenant, label: str = "") -> tuple[str, str]:
    """A new signing key's id and secret (the secret is watched for in the logs)."""
    created = _catalog(services).CreateSigningKey(
        catalog_pb2.CreateSigningKeyRequest(label=label), metadata=tenant.metadata
    )
    ISSUED_TENANT_KEYS[f"signing secret {created.signing_key.key_id}"] = created.secret
    return created.signing_key.key_id, created.secret


def set_unsigned(services: Services, tenant: Tenant, allowed: bool) -> common_pb2.TenantSettings:
    return (
        _catalog(services)
        .UpdateTenantSettings(
            catalog_pb2.UpdateTenantSettingsRequest(
                settings=common_pb2.TenantSettings(unsigned_delivery=allowed),
                update_mask=FieldMask(paths=["unsigned_delivery"]),
            ),
            metadata=tenant.metadata,
        )
        .settings
    )


def url_verifies(url: str, secret: str) -> bool:
    """What the delivery service checks: the signature over the canonical string."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    canonical = canonical_string(
        parts.path,
        version=query.get("v"),
        expires=int(query["e"]) if "e" in query else None,
        key_id=query.get("k"),
    )
    return verify(secret, canonical, query.get("s", ""))


def _refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code(), error_info(failed.value).reason


@pytest.fixture(scope="module")
def owner(make_tenant: Callable[[str], Tenant]) -> Tenant:
    return make_tenant("delivery")


@pytest.fixture(scope="module")
def ready(services: Services, owner: Tenant, corpus: Path) -> common_pb2.Asset:
    uploaded = upload(services, owner, (corpus / "edge_tiny_20x20.jpg").read_bytes())
    asset = wait_for_status(services, owner, uploaded.asset.asset_id, timeout=60)
    assert asset.status == common_pb2.ASSET_STATUS_READY
    return asset


def test_signing_keys_are_created_listed_and_revoked(services: Services, tenant: Tenant) -> None:
    catalog, md = _catalog(services), tenant.metadata
    first_id, secret = create_key(services, tenant, "www")
    second_id, _ = create_key(services, tenant)
    assert re.fullmatch(r"[0-9a-f]{16}", first_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)

    listed = catalog.ListSigningKeys(catalog_pb2.ListSigningKeysRequest(), metadata=md)
    assert [(k.key_id, k.label) for k in listed.signing_keys] == [
        (first_id, "www"),
        (second_id, ""),
    ]
    assert secret.encode() not in listed.SerializeToString(), "the secret is shown only once"

    revoked = catalog.RevokeSigningKey(
        catalog_pb2.RevokeSigningKeyRequest(key_id=first_id), metadata=md
    ).signing_key
    assert revoked.key_id == first_id and revoked.HasField("revoke_time")
    again = catalog.RevokeSigningKey(
        catalog_pb2.RevokeSigningKeyRequest(key_id=first_id), metadata=md
    ).signing_key
    assert again.revoke_time == revoked.revoke_time
    after = catalog.ListSigningKeys(catalog_pb2.ListSigningKeysRequest(), metadata=md)
    assert [k.HasField("revoke_time") for k in after.signing_keys] == [True, False]


def test_another_tenants_signing_key_is_not_found(
    services: Services, tenant: Tenant, make_tenant: Callable[[str], Tenant]
) -> None:
    key_id, _ = create_key(services, tenant)
    mallory = make_tenant("mallory")
    assert _refused(
        lambda: _catalog(services).RevokeSigningKey(
            catalog_pb2.RevokeSigningKeyRequest(key_id=key_id), metadata=mallory.metadata
        )
    ) == (grpc.StatusCode.NOT_FOUND, "SIGNING_KEY_NOT_FOUND")
    theirs = _catalog(services).ListSigningKeys(
        catalog_pb2.ListSigningKeysRequest(), metadata=mallory.metadata
    )
    assert list(theirs.signing_keys) == []


def test_tenant_settings_change_where_the_mask_says(services: Services, tenant: Tenant) -> None:
    catalog, md = _catalog(services), tenant.metadata
    got = catalog.GetTenantSettings(catalog_pb2.GetTenantSettingsRequest(), metadata=md)
    assert got.settings == common_pb2.TenantSettings(unsigned_delivery=False)
    assert set_unsigned(services, tenant, True).unsigned_delivery
    got = catalog.GetTenantSettings(catalog_pb2.GetTenantSettingsRequest(), metadata=md)
    assert got.settings.unsigned_delivery

    unmasked = catalog_pb2.UpdateTenantSettingsRequest(
        settings=common_pb2.TenantSettings(unsigned_delivery=False)
    )
    assert _refused(lambda: catalog.UpdateTenantSettings(unmasked, metadata=md)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UPDATE_MASK_REQUIRED",
    )
    unmasked.update_mask.paths.append("gps")
    assert _refused(lambda: catalog.UpdateTenantSettings(unmasked, metadata=md)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_SETTING",
    )
    got = catalog.GetTenantSettings(catalog_pb2.GetTenantSettingsRequest(), metadata=md)
    assert got.settings.unsigned_delivery, "a refused update changes nothing"


def test_a_delivery_url_is_signed_versioned_and_verifies(
    services: Services, owner: Tenant, ready: common_pb2.Asset
) -> None:
    key_id, secret = create_key(services, owner)
    card = next(r for r in ready.renditions if r.preset == "card")
    made = _catalog(services).GetDeliveryUrl(
        catalog_pb2.GetDeliveryUrlRequest(
            asset_id=ready.asset_id,
            preset="card",
            format=common_pb2.IMAGE_FORMAT_JPEG,
            ttl_seconds=600,
        ),
        metadata=owner.metadata,
    )
    path = parse_path(urlsplit(made.url).path)
    assert path is not None
    assert (path.tenant_id, path.asset_id, path.preset, path.format) == (
        owner.tenant_id,
        ready.asset_id,
        "card",
        "jpeg",
    )
    assert made.key_id == key_id and made.version == card.version != ""
    assert made.HasField("expire_time")
    assert url_verifies(made.url, secret)
    assert not url_verifies(made.url.replace("card.jpg", "zoom.jpg"), secret)

    negotiated = _catalog(services).GetDeliveryUrl(
        catalog_pb2.GetDeliveryUrlRequest(asset_id=ready.asset_id, preset="card"),
        metadata=owner.metadata,
    )
    formats = [
        (common_pb2.ImageFormat.Name(r.format).removeprefix("IMAGE_FORMAT_").lower(), r.version)
        for r in ready.renditions
        if r.preset == "card"
    ]
    assert negotiated.version == preset_version(formats)
    assert urlsplit(negotiated.url).path.endswith("/card")
    assert not negotiated.HasField("expire_time") and url_verifies(negotiated.url, secret)


def test_the_delivery_service_learns_a_keys_secret_while_it_is_active(
    services: Services, owner: Tenant, make_tenant: Callable[[str], Tenant]
) -> None:
    internal, md = _internal(services), services.internal_metadata
    key_id, secret = create_key(services, owner)

    def access(tenant_id: str, key: str) -> catalog_internal_pb2.GetDeliveryAccessResponse:
        return internal.GetDeliveryAccess(
            catalog_internal_pb2.GetDeliveryAccessRequest(tenant_id=tenant_id, key_id=key),
            metadata=md,
        )

    found = access(owner.tenant_id, key_id)
    assert (found.tenant_found, found.key_secret) == (True, secret)
    other = make_tenant("other")
    assert access(other.tenant_id, key_id).key_secret == "", "another tenant's key"
    assert access(owner.tenant_id, "").key_secret == ""
    assert access(owner.tenant_id, "zz").key_secret == ""
    missing = access(str(uuid.uuid4()), key_id)
    assert (missing.tenant_found, missing.key_secret) == (False, "")

    _catalog(services).RevokeSigningKey(
        catalog_pb2.RevokeSigningKeyRequest(key_id=key_id), metadata=owner.metadata
    )
    assert access(owner.tenant_id, key_id).key_secret == ""
    assert _refused(lambda: access("not-a-uuid", key_id)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ID",
    )


def test_resolve_delivery_names_the_objects_to_serve(
    services: Services, owner: Tenant, ready: common_pb2.Asset
) -> None:
    internal, md = _internal(services), services.internal_metadata

    def resolve(asset_id: str, preset: str = "card", **more: Any) -> Any:
        return internal.ResolveDelivery(
            catalog_internal_pb2.ResolveDeliveryRequest(
                tenant_id=owner.tenant_id, asset_id=asset_id, preset=preset, **more
            ),
            metadata=md,
        )

    found = resolve(ready.asset_id)
    card = next(r for r in ready.renditions if r.preset == "card")
    assert found.status == common_pb2.ASSET_STATUS_READY
    (served,) = found.renditions
    assert (served.format, served.content_type) == (common_pb2.IMAGE_FORMAT_JPEG, "image/jpeg")
    assert (served.width, served.height, served.size_bytes) == (
        card.width,
        card.height,
        card.size_bytes,
    )
    assert served.content_hash == card.content_hash and served.version == card.version
    assert served.object_key.startswith(f"renditions/{owner.tenant_id}/{ready.asset_id}/card.")
    assert found.preset_version == preset_version([("jpeg", card.version)])

    webp_only = resolve(ready.asset_id, accept_formats=[common_pb2.IMAGE_FORMAT_WEBP])
    assert list(webp_only.renditions) == [] and webp_only.preset_version == found.preset_version
    unknown = resolve(str(uuid.uuid4()))
    assert (unknown.status, list(unknown.renditions)) == (common_pb2.ASSET_STATUS_UNSPECIFIED, [])
    no_preset = resolve(ready.asset_id, preset="poster")
    assert (no_preset.status, no_preset.preset_version) == (common_pb2.ASSET_STATUS_READY, "")
    for bad in (
        lambda: resolve("nope"),
        lambda: resolve(ready.asset_id, preset="Card!"),
        lambda: resolve(ready.asset_id, accept_formats=[99]),
    ):
        assert _refused(bad)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_a_deleted_asset_resolves_to_deleted_with_nothing_to_serve(
    services: Services, tenant: Tenant, corpus: Path
) -> None:
    uploaded = upload(services, tenant, (corpus / "png_rgba_dice.png").read_bytes())
    asset = wait_for_status(services, tenant, uploaded.asset.asset_id, timeout=60)
    _catalog(services).DeleteAsset(
        catalog_pb2.DeleteAssetRequest(asset_id=asset.asset_id), metadata=tenant.metadata
    )
    gone = _internal(services).ResolveDelivery(
        catalog_internal_pb2.ResolveDeliveryRequest(
            tenant_id=tenant.tenant_id, asset_id=asset.asset_id, preset="thumb"
        ),
        metadata=services.internal_metadata,
    )
    assert (gone.status, list(gone.renditions), gone.preset_version) == (
        common_pb2.ASSET_STATUS_DELETED,
        [],
        "",
    )


INTERNAL_CALLS: dict[str, Callable[[Services, Any], object]] = {
    "GetDeliveryAccess": lambda s, md: _internal(s).GetDeliveryAccess(
        catalog_internal_pb2.GetDeliveryAccessRequest(tenant_id=str(uuid.uuid4())), metadata=md
    ),
    "ResolveDelivery": lambda s, md: _internal(s).ResolveDelivery(
        catalog_internal_pb2.ResolveDeliveryRequest(
            tenant_id=str(uuid.uuid4()), asset_id=str(uuid.uuid4()), preset="card"
        ),
        metadata=md,
    ),
}


@pytest.mark.parametrize("method", sorted(INTERNAL_CALLS))
def test_only_the_internal_credential_reaches_the_delivery_lookups(
    method: str, services: Services, tenant: Tenant
) -> None:
    call = INTERNAL_CALLS[method]
    call(services, services.internal_metadata)
    for md, code in (
        (tenant.metadata, grpc.StatusCode.PERMISSION_DENIED),
        (services.admin_metadata, grpc.StatusCode.PERMISSION_DENIED),
        ((), grpc.StatusCode.UNAUTHENTICATED),
    ):
        with pytest.raises(grpc.RpcError) as failed:
            call(services, md)
        assert failed.value.code() == code, md
