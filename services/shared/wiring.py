"""What the wiring of ingest, renderer and quality shares.

Each talks to the catalog and the object store, runs image work in a sandboxed decoder
pool, and is SERVING while catalog and S3 answer. RabbitMQ is no health dependency of
any of them: ingest keeps its outbox and the renderer claims from the catalog without it.
Each service's own `wiring.build` adds what is its own and yields `common.spec(...)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from services.shared.clients import CatalogInternalClient, open_channel
from services.shared.sandbox import DecodePool
from services.shared.server import GrpcService, ServiceSpec, Worker
from services.shared.settings import Settings
from services.shared.storage import S3ObjectStore

__all__ = ["CommonAdapters", "PoolLimits", "common_adapters"]


@dataclass(frozen=True)
class PoolLimits:
    """A service's decoder pool: its workers, and what each job may use."""

    workers: int
    memory_limit_bytes: int
    timeout_seconds: float


@dataclass(frozen=True)
class CommonAdapters:
    catalog: CatalogInternalClient
    store: S3ObjectStore
    pool: DecodePool

    def spec(
        self,
        name: str,
        *,
        port: int,
        metrics_port: int,
        service: GrpcService,
        workers: Sequence[Worker] = (),
    ) -> ServiceSpec:
        """The spec of a service that serves `service`, authenticates tenants through the
        catalog and depends on catalog and S3."""
        return ServiceSpec(
            name=name,
            port=port,
            metrics_port=metrics_port,
            services=[service],
            authenticator=self.catalog,
            checks={"catalog": self.catalog.check, "s3": self.store.check},
            workers=workers,
        )


@asynccontextmanager
async def common_adapters(settings: Settings, pool: PoolLimits) -> AsyncIterator[CommonAdapters]:
    decoders = DecodePool(
        pool.workers, memory_limit_bytes=pool.memory_limit_bytes, timeout=pool.timeout_seconds
    )
    try:
        channel = open_channel(settings.catalog_addr)
        store = S3ObjectStore(settings)
        try:
            yield CommonAdapters(CatalogInternalClient(channel, settings), store, decoders)
        finally:
            await store.close()
            await channel.close()
    finally:
        decoders.close()
