"""Builds the renderer's adapters from settings, and closes them on the way out.

Health depends on catalog and S3: with RabbitMQ down the renderer keeps working
from the catalog, so it stays SERVING.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagepipe.v1 import renderer_pb2, renderer_pb2_grpc
from services.renderer.consumer import PoisonRecorder, RenderConsumer
from services.renderer.jobs import JobRunner, worker_name
from services.renderer.poller import CatalogPoller
from services.renderer.servicer import RendererServicer
from services.shared.broker import Topology
from services.shared.retry_policy import retry_policy
from services.shared.server import GrpcService, ServiceSpec
from services.shared.settings import Settings
from services.shared.wiring import PoolLimits, common_adapters

__all__ = ["build"]

RENDER_MEMORY_LIMIT = 3 * 1024**3
RENDER_TIMEOUT_SECONDS = 120.0


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[ServiceSpec]:
    concurrency = settings.effective_render_concurrency
    pool = PoolLimits(concurrency, RENDER_MEMORY_LIMIT, RENDER_TIMEOUT_SECONDS)
    async with common_adapters(settings, pool) as common:
        topology = Topology.from_settings(settings)
        worker = worker_name()
        runner = JobRunner(
            catalog=common.catalog,
            store=common.store,
            pool=common.pool,
            presets=settings.presets,
            max_pixels=settings.max_pixels,
            worker=worker,
        )
        consumer = RenderConsumer(settings, topology, runner, common.catalog)
        poller = CatalogPoller(
            runner,
            common.catalog,
            broker_down=lambda: consumer.broker_down,
            concurrency=concurrency,
            policy=retry_policy(settings),
        )
        yield common.spec(
            "renderer",
            port=settings.renderer_port,
            metrics_port=settings.renderer_metrics_port,
            service=GrpcService(
                renderer_pb2.DESCRIPTOR.services_by_name["RendererService"],
                RendererServicer(settings.presets, consumer, poller, worker),
                renderer_pb2_grpc.add_RendererServiceServicer_to_server,
            ),
            workers=[consumer, poller, PoisonRecorder(settings, topology, common.catalog)],
        )
