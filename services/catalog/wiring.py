"""Builds catalog's adapters from settings, and closes them on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_internal_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from services.catalog.api.admin import TenantAdminServicer
from services.catalog.api.internal import CatalogInternalServicer
from services.catalog.api.public import CatalogServicer
from services.catalog.db import CatalogDatabase, create_pool
from services.catalog.db.usage_compactor import UsageCompactor
from services.catalog.db.watch import AssetWatchHub
from services.catalog.usecases.tenants import KeyAuthenticator
from services.shared.retry_policy import retry_policy
from services.shared.server import GrpcService, ServiceSpec
from services.shared.settings import Settings
from services.shared.storage import S3ObjectStore

__all__ = ["build"]


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[ServiceSpec]:
    pool = await create_pool(settings.database_url.get_secret_value(), settings.db_pool_size)
    store = S3ObjectStore(settings)
    try:
        database = CatalogDatabase(
            pool,
            tenant_max_in_flight=settings.tenant_max_in_flight,
            policy=retry_policy(settings),
            presets=settings.presets,
        )
        authenticator = KeyAuthenticator(database.tenants, settings.key_pepper.get_secret_value())
        watch = AssetWatchHub(settings.database_url.get_secret_value())
        yield ServiceSpec(
            name="catalog",
            port=settings.catalog_port,
            metrics_port=settings.catalog_metrics_port,
            services=[
                GrpcService(
                    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
                    CatalogServicer(database, store, watch, settings),
                    catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
                ),
                GrpcService(
                    tenant_admin_pb2.DESCRIPTOR.services_by_name["TenantAdminService"],
                    TenantAdminServicer(database.tenants, settings),
                    tenant_admin_pb2_grpc.add_TenantAdminServiceServicer_to_server,
                ),
                GrpcService(
                    catalog_internal_pb2.DESCRIPTOR.services_by_name["CatalogInternalService"],
                    CatalogInternalServicer(database, authenticator, settings),
                    catalog_internal_pb2_grpc.add_CatalogInternalServiceServicer_to_server,
                ),
            ],
            authenticator=authenticator,
            checks={"postgres": database.ping, "s3": store.check},
            # The compactor keeps the usage deltas few; metrics are exact without it.
            workers=[watch, UsageCompactor(pool)],
        )
    finally:
        await pool.close()
        await store.close()
