"""A catalog database of a test's own on the shared PostgreSQL: created and migrated
for the test, dropped after it, for tests that drive the stores directly."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from devstack import DEFAULT_PG, drop_database
from services.catalog.db import CatalogDatabase, create_pool
from services.catalog.db.migrate import apply_migrations, ensure_database
from services.catalog.model import NewAsset

__all__ = ["catalog_database", "new_asset", "new_job", "new_tenant"]


def _admin_url() -> str:
    return os.environ.get("IMAGEPIPE_TEST_PG_URL", DEFAULT_PG)


@asynccontextmanager
async def catalog_database(
    prefix: str, *, tenant_max_in_flight: int = 0
) -> AsyncIterator[CatalogDatabase]:
    admin = _admin_url()
    name = f"imagepipe_{prefix}_{uuid.uuid4().hex[:10]}"
    url = urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    await ensure_database(url)
    try:
        await apply_migrations(url)
        pool = await create_pool(url, 4)
        try:
            yield CatalogDatabase(pool, tenant_max_in_flight=tenant_max_in_flight)
        finally:
            await asyncio.wait_for(pool.close(), 30)
    finally:
        await drop_database(admin, name)


def new_asset(tenant_id: uuid.UUID, *, request_id: str = "test") -> NewAsset:
    """A small PNG's registration with bytes of its own (a fresh content hash)."""
    digest = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    return NewAsset(
        tenant_id=tenant_id,
        content_hash=digest,
        perceptual_hash=255,
        filename="a.png",
        declared_content_type="image/png",
        content_type="image/png",
        format="png",
        width=1,
        height=1,
        size_bytes=1,
        frame_count=1,
        labels={},
        original_key=f"originals/{tenant_id}/{digest}",
        request_id=request_id,
    )


async def new_job(repo: CatalogDatabase, tenant_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """A fresh asset and its pending job (ids), as RegisterAsset makes them."""
    registration = await repo.assets.register_asset(new_asset(tenant_id))
    assert registration.job is not None
    return registration.asset.id, registration.job.id


async def new_tenant(repo: CatalogDatabase, prefix: str = "t") -> uuid.UUID:
    created = await repo.tenants.create_tenant(
        f"{prefix}-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:16], b"x" * 32, ""
    )
    assert created is not None
    return uuid.UUID(str(created[0].id))
