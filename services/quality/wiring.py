"""Builds the quality service's adapters from settings, and closes them on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagepipe.v1 import quality_pb2, quality_pb2_grpc
from services.quality.servicer import QualityServicer
from services.shared.clients import CatalogInternalClient, open_channel
from services.shared.server import GrpcService, ServiceSpec
from services.shared.settings import Settings
from services.shared.storage import S3ObjectStore

__all__ = ["build"]


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[ServiceSpec]:
    channel = open_channel(settings.catalog_addr)
    catalog = CatalogInternalClient(channel, settings)
    store = S3ObjectStore(settings)
    try:
        yield ServiceSpec(
            name="quality",
            port=settings.quality_port,
            metrics_port=settings.quality_metrics_port,
            services=[
                GrpcService(
                    quality_pb2.DESCRIPTOR.services_by_name["QualityService"],
                    QualityServicer(),
                    quality_pb2_grpc.add_QualityServiceServicer_to_server,
                )
            ],
            authenticator=catalog,
            checks={"catalog": catalog.check, "s3": store.check},
        )
    finally:
        await store.close()
        await channel.close()
