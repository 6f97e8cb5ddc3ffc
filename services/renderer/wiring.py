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
from services.shared.clients import common_adapters
from services.shared.retry_policy import retry_policy
from services.shared.sandbox import DecodePool
from services.shared.server import GrpcService, ServiceSpec
from services.shared.settings import Settings

__all__ = ["build"]

RENDER_MEMORY_LIMIT = 3 * 1024**3
RENDER_TIMEOUT_SECONDS = 120.0


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[ServiceSpec]:
    pool = DecodePool(
        settings.effective_render_concurrency,
        memory_limit_bytes=RENDER_MEMORY_LIMIT,
        timeout=RENDER_TIMEOUT_SECONDS,
    )
    try:
        async with common_adapters(settings) as common:
            topology = Topology.from_settings(settings)
            worker = worker_name()
            runner = JobRunner(
                catalog=common.catalog,
                store=common.store,
                pool=pool,
                presets=settings.presets,
                max_pixels=settings.max_pixels,
                worker=worker,
            )
            consumer = RenderConsumer(settings, topology, runner, common.catalog)
            poller = CatalogPoller(
                runner,
                common.catalog,
                broker_down=lambda: consumer.broker_down,
                concurrency=settings.effective_render_concurrency,
                policy=retry_policy(settings),
            )
            yield ServiceSpec(
                name="renderer",
                port=settings.renderer_port,
                metrics_port=settings.renderer_metrics_port,
                services=[
                    GrpcService(
                        renderer_pb2.DESCRIPTOR.services_by_name["RendererService"],
                        RendererServicer(settings.presets, consumer, poller, worker),
                        renderer_pb2_grpc.add_RendererServiceServicer_to_server,
                    )
                ],
                authenticator=common.catalog,
                checks={"catalog": common.catalog.check, "s3": common.store.check},
                workers=[consumer, poller, PoisonRecorder(settings, topology, common.catalog)],
            )
    finally:
        pool.close()
