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
from services.shared.retry_policy import retry_policy
from services.shared.server import GrpcService, ServiceSpec
from services.shared.settings import Settings
from services.shared.spool import StreamLimits
from services.shared.wiring import PoolLimits, common_adapters

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
    await publisher.start()
    try:
        pool = PoolLimits(settings.decode_workers, DECODE_MEMORY_LIMIT, DECODE_TIMEOUT_SECONDS)
        async with common_adapters(settings, pool) as common:
            uploads = Uploads(
                catalog=common.catalog,
                store=common.store,
                publisher=publisher,
                decoder=SandboxDecoder(common.pool, settings.max_pixels),
                limits=StreamLimits.from_settings(settings),
                max_uploads_per_tenant=settings.tenant_max_uploads,
            )
            relay = OutboxRelay(
                common.catalog,
                publisher,
                RelaySchedule(
                    interval=RELAY_INTERVAL_SECONDS,
                    stuck_after_seconds=stuck_after(retry_policy(settings)),
                ),
            )
            yield common.spec(
                "ingest",
                port=settings.ingest_port,
                metrics_port=settings.ingest_metrics_port,
                service=GrpcService(
                    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"],
                    IngestServicer(uploads),
                    ingest_pb2_grpc.add_IngestServiceServicer_to_server,
                ),
                workers=[relay],
            )
    finally:
        await publisher.close()
