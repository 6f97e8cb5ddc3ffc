"""Builds the delivery service from settings, and closes what it opened on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from services.delivery.caches import CachedCatalog, ObjectCache
from services.delivery.catalog import CatalogAdapter
from services.delivery.core import DeliveryCore
from services.delivery.readiness import DependencyReadiness
from services.delivery.s3 import S3Reader
from services.delivery.usecases import DeliveryPolicy, RenditionService
from services.shared.clients import CatalogInternalClient, open_channel
from services.shared.settings import Settings
from services.shared.storage import S3ObjectStore

__all__ = ["Delivery", "build"]

# Each streamed body holds an S3 connection until it ends: keep enough of them for
# reuse that a burst of downloads does not close (and reopen) one per response.
S3_CONNECTIONS = 256


@dataclass(frozen=True)
class Delivery:
    core: DeliveryCore
    readiness: DependencyReadiness


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[Delivery]:
    channel = open_channel(settings.catalog_addr)
    store = S3ObjectStore(settings)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=S3_CONNECTIONS, limit_per_host=S3_CONNECTIONS)
    )
    reader = S3Reader(store, session)
    try:
        client = CatalogInternalClient(channel, settings)
        policy = DeliveryPolicy.from_settings(settings)
        renditions = RenditionService(
            catalog=CachedCatalog(CatalogAdapter(client), settings.delivery_lookup_ttl_seconds),
            store=reader,
            objects=ObjectCache(
                reader,
                max_bytes=settings.delivery_cache_bytes,
                max_object_bytes=settings.delivery_cache_max_object_bytes,
            ),
            policy=policy,
        )
        readiness = DependencyReadiness({"catalog": client.check, "s3": store.check})
        yield Delivery(DeliveryCore(renditions, readiness, policy), readiness)
    finally:
        await session.close()
        await store.close()
        await channel.close()
