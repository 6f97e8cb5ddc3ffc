"""A tenant's settings: read, and changed only where the update mask says."""

from __future__ import annotations

import uuid

import pytest

from services.catalog.model import TENANT_SETTING_NAMES, TenantSettings
from services.catalog.usecases.tenants import (
    create_tenant,
    get_tenant_settings,
    update_tenant_settings,
)
from services.shared.errors import InvalidArgument, NotFound
from tests.unit.catalog.fakes import FakeCatalog


async def _tenant(catalog: FakeCatalog, name: str = "acme") -> uuid.UUID:
    return (await create_tenant(catalog.tenants, name=name, pepper="p")).tenant.id


def test_the_settings_are_the_models_fields() -> None:
    assert TENANT_SETTING_NAMES == ("unsigned_delivery", "keep_gps")


async def test_a_new_tenant_delivers_only_signed_urls() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    assert await get_tenant_settings(catalog.tenants, tenant_id=tenant_id) == TenantSettings(
        unsigned_delivery=False
    )


async def test_the_masked_setting_changes_for_that_tenant_only() -> None:
    catalog = FakeCatalog()
    tenant_id, other = await _tenant(catalog), await _tenant(catalog, "other")
    on = await update_tenant_settings(
        catalog.tenants,
        tenant_id=tenant_id,
        values=TenantSettings(unsigned_delivery=True),
        paths=["unsigned_delivery", "unsigned_delivery"],
    )
    assert on == TenantSettings(unsigned_delivery=True)
    assert await get_tenant_settings(catalog.tenants, tenant_id=tenant_id) == on
    assert await get_tenant_settings(catalog.tenants, tenant_id=other) == TenantSettings()
    off = await update_tenant_settings(
        catalog.tenants, tenant_id=tenant_id, values=TenantSettings(), paths=["unsigned_delivery"]
    )
    assert off == TenantSettings(unsigned_delivery=False)


async def test_keeping_gps_is_off_until_the_tenant_turns_it_on() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    assert not (await get_tenant_settings(catalog.tenants, tenant_id=tenant_id)).keep_gps
    on = await update_tenant_settings(
        catalog.tenants,
        tenant_id=tenant_id,
        values=TenantSettings(unsigned_delivery=True, keep_gps=True),
        paths=["keep_gps"],
    )
    assert on == TenantSettings(unsigned_delivery=False, keep_gps=True)


async def test_an_empty_mask_is_refused_not_read_as_everything() -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    with pytest.raises(InvalidArgument) as refused:
        await update_tenant_settings(
            catalog.tenants,
            tenant_id=tenant_id,
            values=TenantSettings(unsigned_delivery=True),
            paths=[],
        )
    assert refused.value.reason == "UPDATE_MASK_REQUIRED"
    assert "unsigned_delivery" in refused.value.message
    assert catalog.db.queries["update_tenant_settings"] == 0


@pytest.mark.parametrize(
    "paths",
    [["gps"], ["unsigned_delivery", "settings.unsigned_delivery"], ["Unsigned_Delivery"], [""]],
)
async def test_a_mask_naming_an_unknown_setting_changes_nothing(paths: list[str]) -> None:
    catalog = FakeCatalog()
    tenant_id = await _tenant(catalog)
    with pytest.raises(InvalidArgument) as refused:
        await update_tenant_settings(
            catalog.tenants,
            tenant_id=tenant_id,
            values=TenantSettings(unsigned_delivery=True),
            paths=paths,
        )
    assert refused.value.reason == "UNKNOWN_SETTING"
    assert refused.value.metadata == {"known": "unsigned_delivery, keep_gps"}
    assert await get_tenant_settings(catalog.tenants, tenant_id=tenant_id) == TenantSettings()


async def test_an_unknown_tenant_has_no_settings() -> None:
    catalog = FakeCatalog()
    with pytest.raises(NotFound) as refused:
        await get_tenant_settings(catalog.tenants, tenant_id=uuid.uuid4())
    assert refused.value.reason == "TENANT_NOT_FOUND"
    with pytest.raises(NotFound):
        await update_tenant_settings(
            catalog.tenants,
            tenant_id=uuid.uuid4(),
            values=TenantSettings(),
            paths=["unsigned_delivery"],
        )
