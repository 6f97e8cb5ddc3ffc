"""Builds the quality service's adapters from settings, and closes them on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagepipe.v1 import quality_pb2, quality_pb2_grpc
from services.quality.assessment import Assessor
from services.quality.servicer import QualityServicer
from services.shared.server import GrpcService, ServiceSpec
from services.shared.settings import Settings
from services.shared.spool import StreamLimits
from services.shared.wiring import PoolLimits, common_adapters

__all__ = ["build"]

COMPARE_MEMORY_LIMIT = 3 * 1024**3
COMPARE_TIMEOUT_SECONDS = 120.0


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[ServiceSpec]:
    pool = PoolLimits(settings.decode_workers, COMPARE_MEMORY_LIMIT, COMPARE_TIMEOUT_SECONDS)
    async with common_adapters(settings, pool) as common:
        assessor = Assessor(
            catalog=common.catalog,
            store=common.store,
            pool=common.pool,
            max_pixels=settings.max_pixels,
            limits=StreamLimits.from_settings(settings),
            max_in_flight=settings.decode_workers,
        )
        yield common.spec(
            "quality",
            port=settings.quality_port,
            metrics_port=settings.quality_metrics_port,
            service=GrpcService(
                quality_pb2.DESCRIPTOR.services_by_name["QualityService"],
                QualityServicer(assessor),
                quality_pb2_grpc.add_QualityServiceServicer_to_server,
            ),
        )
