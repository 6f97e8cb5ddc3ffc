"""Builds the quality service's adapters from settings, and closes them on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagepipe.v1 import quality_pb2, quality_pb2_grpc
from services.quality.assessment import Assessor
from services.quality.servicer import QualityServicer
from services.shared.clients import CatalogInternalClient, open_channel
from services.shared.sandbox import DecodePool
from services.shared.server import GrpcService, ServiceSpec
from services.shared.settings import Settings
from services.shared.storage import S3ObjectStore

__all__ = ["build"]

COMPARE_MEMORY_LIMIT = 3 * 1024**3
COMPARE_TIMEOUT_SECONDS = 120.0


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[ServiceSpec]:
    channel = open_channel(settings.catalog_addr)
    catalog = CatalogInternalClient(channel, settings)
    store = S3ObjectStore(settings)
    pool = DecodePool(
        settings.decode_workers,
        memory_limit_bytes=COMPARE_MEMORY_LIMIT,
        timeout=COMPARE_TIMEOUT_SECONDS,
    )
    assessor = Assessor(
        catalog=catalog,
        store=store,
        pool=pool,
        max_pixels=settings.max_pixels,
        max_upload_bytes=settings.max_upload_bytes,
        spool_dir=settings.spool_dir,
    )
    try:
        yield ServiceSpec(
            name="quality",
            port=settings.quality_port,
            metrics_port=settings.quality_metrics_port,
            services=[
                GrpcService(
                    quality_pb2.DESCRIPTOR.services_by_name["QualityService"],
                    QualityServicer(assessor),
                    quality_pb2_grpc.add_QualityServiceServicer_to_server,
                )
            ],
            authenticator=catalog,
            checks={"catalog": catalog.check, "s3": store.check},
        )
    finally:
        pool.close()
        await store.close()
        await channel.close()
