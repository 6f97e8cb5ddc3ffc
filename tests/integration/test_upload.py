"""Upload end to end on the real servers: dedupe, races, tenants, caps, the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aio_pika
import asyncpg
import grpc
import pytest

from devstack import Stack
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, events_pb2, ingest_pb2, ingest_pb2_grpc
from services.shared.broker import PROTOBUF, Topology
from tests.helpers import Services, Tenant, error_info, upload_messages

PHOTO = "photo_iphone6_gps.jpg"
MIB = 1024 * 1024


def _upload(
    services: Services, tenant: Tenant, data: bytes, name: str = "x.jpg"
) -> ingest_pb2.UploadResponse:
    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    return stub.Upload(upload_messages(data, name), metadata=tenant.metadata, timeout=60)


def _originals(stack: Stack, tenant: Tenant) -> list[str]:
    """Distinct keys: right after concurrent writes to one key, rclone's listing can
    name it twice (one key is one object in S3)."""
    client = stack.s3.client()
    return sorted(
        {
            o.object_name or ""
            for o in client.list_objects(
                stack.bucket, prefix=f"originals/{tenant.tenant_id}/", recursive=True
            )
        }
    )


def _count(stack: Stack, sql: str, *args: object) -> int:
    async def run() -> int:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return int(await connection.fetchval(sql, *args))
        finally:
            await connection.close()

    return asyncio.run(run())


def test_same_bytes_twice_returns_the_same_asset(
    services: Services, stack: Stack, tenant: Tenant, corpus: Path
) -> None:
    data = (corpus / PHOTO).read_bytes()
    first = _upload(services, tenant, data, PHOTO)
    second = _upload(services, tenant, data, "renamed.jpg")

    assert not first.deduplicated
    assert second.deduplicated
    assert second.asset.asset_id == first.asset.asset_id
    assert first.asset.width == 3264 and first.asset.height == 2448
    assert first.asset.content_type == "image/jpeg"
    assert _originals(stack, tenant) == [f"originals/{tenant.tenant_id}/{first.asset.content_hash}"]
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    asset = catalog.GetAsset(
        catalog_pb2.GetAssetRequest(asset_id=first.asset.asset_id), metadata=tenant.metadata
    ).asset
    assert asset.upload_count == 2
    job = catalog.GetJob(catalog_pb2.GetJobRequest(job_id=asset.job_id), metadata=tenant.metadata)
    assert job.job.asset_id == asset.asset_id


def test_concurrent_uploads_of_one_file_make_one_asset(
    services: Services, stack: Stack, tenant: Tenant, corpus: Path
) -> None:
    data = (corpus / "jpeg_progressive_portrait.jpg").read_bytes()
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: _upload(services, tenant, data), range(20)))

    asset_ids = {r.asset.asset_id for r in responses}
    assert len(asset_ids) == 1
    assert sum(not r.deduplicated for r in responses) == 1
    tenant_id = tenant.tenant_id
    assert _count(stack, "SELECT count(*) FROM assets WHERE tenant_id = $1::uuid", tenant_id) == 1
    assert _count(stack, "SELECT count(*) FROM jobs WHERE tenant_id = $1::uuid", tenant_id) == 1
    assert len(_originals(stack, tenant)) == 1


def test_another_tenant_gets_its_own_asset(
    services: Services, make_tenant: Callable[[str], Tenant], corpus: Path
) -> None:
    data = (corpus / "bmp_hopper_24bit.bmp").read_bytes()
    alice, bob = make_tenant("alice"), make_tenant("bob")
    a = _upload(services, alice, data)
    b = _upload(services, bob, data)
    assert not a.deduplicated and not b.deduplicated
    assert a.asset.asset_id != b.asset.asset_id
    assert a.asset.content_hash == b.asset.content_hash
    assert b.asset.tenant_id == bob.tenant_id


def test_stream_over_the_cap_is_refused_after_reading_at_most_one_chunk_more(
    services: Services, stack: Stack, tenant: Tenant
) -> None:
    sent = 0

    def sixty_mib() -> Iterator[ingest_pb2.UploadRequest]:
        nonlocal sent
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="huge.jpg"))
        for _ in range(60):
            sent += MIB
            yield ingest_pb2.UploadRequest(chunk=b"\xff" * MIB)

    stub = ingest_pb2_grpc.IngestServiceStub(services.ingest)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Upload(sixty_mib(), metadata=tenant.metadata, timeout=60)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(refused.value)
    assert info.reason == "UPLOAD_TOO_LARGE"
    assert int(info.metadata["received_bytes"]) <= 50 * MIB + MIB
    assert _originals(stack, tenant) == []
    assert (
        _count(stack, "SELECT count(*) FROM assets WHERE tenant_id = $1::uuid", tenant.tenant_id)
        == 0
    )


def test_refused_image_leaves_nothing_behind(
    services: Services, stack: Stack, tenant: Tenant, corpus: Path
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        _upload(services, tenant, (corpus / "invalid_html_404.jpg").read_bytes())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused.value).reason == "IMAGE_FORMAT_UNSUPPORTED"
    assert "HTML" in (refused.value.details() or "")
    assert _originals(stack, tenant) == []
    assert (
        _count(stack, "SELECT count(*) FROM assets WHERE tenant_id = $1::uuid", tenant.tenant_id)
        == 0
    )


def test_render_request_is_a_protobuf_message_keyed_by_job_id(
    services: Services, stack: Stack, tenant: Tenant, corpus: Path
) -> None:
    topology = Topology(prefix=stack.prefix, delivery_limit=1)

    async def tap() -> aio_pika.abc.AbstractIncomingMessage:
        # A private queue bound like the work queue sees a copy of every render request.
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(topology.exchange)
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, Topology.WORK_KEY)
            response = await asyncio.to_thread(
                _upload, services, tenant, (corpus / "png_rgba_dice.png").read_bytes()
            )
            # The stack is shared: another test's job may pass the exchange meanwhile (a
            # retry, or the reconciler republishing a job a renderer holds in its prefetch).
            async with asyncio.timeout(10):
                while True:
                    message = await queue.get(timeout=10)
                    await message.ack()
                    if message.message_id == response.asset.job_id:
                        return message

    message = asyncio.run(tap())
    assert message.content_type == PROTOBUF
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    request = events_pb2.RenderRequest.FromString(message.body)
    assert request.job_id == message.message_id
    assert request.tenant_id == tenant.tenant_id
    assert request.original_key == f"originals/{tenant.tenant_id}/{request.content_hash}"
