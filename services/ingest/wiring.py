"""Builds ingest's adapters from settings, and closes them on the way out.

Health depends on catalog and S3 only: with RabbitMQ down, ingest keeps accepting
uploads into the outbox, so it must stay SERVING.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagepipe.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.relay import OutboxRelay, RelaySchedule, stuck_after
from services.ingest.servicer import IngestServicer
from services.ingest.upload import SandboxDecoder, Uploads
from services.shared.broker import RenderPublisher, Topology
from services.shared.clients import common_adapters
from services.shared.retry_policy import retry_policy
from services.shared.sandbox import DecodePool
from services.shared.server import GrpcService, ServiceSpec
from services.shared.settings import Settings
from services.shared.spool import StreamLimits

__all__ = ["DECODE_MEMORY_LIMIT", "RELAY_INTERVAL_SECONDS", "build"]

# Jobs held back by the per-tenant in-flight limit are released by the relay: often
# enough that a bulk tenant's renderers never run dry between passes.
RELAY_INTERVAL_SECONDS = 0.5

# Address-space limit of a decode worker: a 50 MP RGBA frame is 200 MB; leave room.
DECODE_MEMORY_LIMIT = 2 * 1024**3
DECODE_TIMEOUT_SECONDS = 30.0


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[ServiceSpec]:
    publisher = RenderPublisher(settings, Topology.from_settings(settings))
    pool = DecodePool(
        settings.decode_workers,
        memory_limit_bytes=DECODE_MEMORY_LIMIT,
        timeout=DECODE_TIMEOUT_SECONDS,
    )
    await publisher.start()
    try:
        async with common_adapters(settings) as common:
            uploads = Uploads(
                catalog=common.catalog,
                store=common.store,
                publisher=publisher,
                decoder=SandboxDecoder(pool, settings.max_pixels),
                limits=StreamLimits.from_settings(settings),
                max_uploads_per_tenant=settings.tenant_max_uploads,
            )
            yield ServiceSpec(
                name="ingest",
                port=settings.ingest_port,
                metrics_port=settings.ingest_metrics_port,
                services=[
                    GrpcService(
                        ingest_pb2.DESCRIPTOR.services_by_name["IngestService"],
                        IngestServicer(uploads),
                        ingest_pb2_grpc.add_IngestServiceServicer_to_server,
                    )
                ],
                authenticator=common.catalog,
                checks={"catalog": common.catalog.check, "s3": common.store.check},
                workers=[
                    OutboxRelay(
                        common.catalog,
                        publisher,
                        RelaySchedule(
                            interval=RELAY_INTERVAL_SECONDS,
                            stuck_after_seconds=stuck_after(retry_policy(settings)),
                        ),
                    )
                ],
            )
    finally:
        pool.close()
        await publisher.close()
