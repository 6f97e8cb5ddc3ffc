"""The upload path on in-memory fakes: dedupe, refusals leave nothing, the outbox."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from imagepipe.v1 import catalog_internal_pb2, common_pb2, events_pb2, ingest_pb2
from services.ingest.upload import Uploads
from services.shared.errors import (
    DeadlineExceeded,
    InvalidArgument,
    InvalidImage,
    ResourceExhausted,
    Unavailable,
)
from services.shared.imaging.decode import ImageFacts
from services.shared.spool import StreamLimits, StreamTimes
from services.shared.storage import MemoryObjectStore

TENANT = str(uuid.uuid4())


class FakeCatalog:
    def __init__(self) -> None:
        self.assets: dict[str, common_pb2.Asset] = {}
        self.published: list[str] = []

    async def resolve_duplicate(
        self, tenant_id: str, content_hash: str
    ) -> catalog_internal_pb2.ResolveDuplicateResponse:
        asset = self.assets.get(content_hash)
        if asset is None:
            return catalog_internal_pb2.ResolveDuplicateResponse(found=False)
        return catalog_internal_pb2.ResolveDuplicateResponse(found=True, asset=asset)

    async def register_asset(
        self, request: catalog_internal_pb2.RegisterAssetRequest
    ) -> catalog_internal_pb2.RegisterAssetResponse:
        asset = common_pb2.Asset(
            asset_id=str(uuid.uuid4()),
            tenant_id=request.tenant_id,
            content_hash=request.content_hash,
        )
        self.assets[request.content_hash] = asset
        job = common_pb2.Job(job_id=str(uuid.uuid4()), asset_id=asset.asset_id)
        return catalog_internal_pb2.RegisterAssetResponse(
            asset=asset,
            created=True,
            job=job,
            render_request=events_pb2.RenderRequest(job_id=job.job_id, asset_id=asset.asset_id),
        )

    async def mark_job_published(self, job_id: str) -> None:
        self.published.append(job_id)


class FakePublisher:
    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.messages: list[events_pb2.RenderRequest] = []

    async def publish(self, request: events_pb2.RenderRequest) -> None:
        if not self.up:
            raise Unavailable("RabbitMQ is unreachable", reason="BROKER_UNAVAILABLE")
        self.messages.append(request)


class FakeDecoder:
    def __init__(self, refuse: InvalidImage | None = None) -> None:
        self.refuse = refuse

    async def inspect(self, path: Path) -> ImageFacts:
        if self.refuse:
            raise self.refuse
        return ImageFacts("PNG", 10, 20, 1, 0x1234)


def _uploads(
    catalog: FakeCatalog, store: MemoryObjectStore, publisher: FakePublisher, decoder: FakeDecoder
) -> Uploads:
    return Uploads(
        catalog=catalog,
        store=store,
        publisher=publisher,
        decoder=decoder,
        limits=StreamLimits(max_bytes=4096),
    )


async def _stream(*messages: ingest_pb2.UploadRequest) -> AsyncIterator[ingest_pb2.UploadRequest]:
    for message in messages:
        yield message


def _upload(data: bytes) -> AsyncIterator[ingest_pb2.UploadRequest]:
    return _stream(
        ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="a.png")),
        *(ingest_pb2.UploadRequest(chunk=data[i : i + 1000]) for i in range(0, len(data), 1000)),
    )


async def test_new_bytes_are_stored_registered_and_published() -> None:
    catalog, store, publisher = FakeCatalog(), MemoryObjectStore(), FakePublisher()
    uploads = _uploads(catalog, store, publisher, FakeDecoder())
    data = b"\x89PNG" + bytes(3000)
    result = await uploads.receive(_upload(data), tenant_id=TENANT, request_id="r1")

    digest = hashlib.sha256(data).hexdigest()
    assert not result.deduplicated
    assert store.objects[f"originals/{TENANT}/{digest}"][0] == data
    assert [m.job_id for m in publisher.messages] == catalog.published
    again = await uploads.receive(_upload(data), tenant_id=TENANT, request_id="r2")
    assert again.deduplicated and again.asset.asset_id == result.asset.asset_id
    assert len(publisher.messages) == 1


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (_stream, InvalidArgument),
        (lambda: _stream(ingest_pb2.UploadRequest(chunk=b"x")), InvalidArgument),
        (lambda: _upload(bytes(5000)), ResourceExhausted),
    ],
    ids=["empty-stream", "chunk-before-header", "over-the-cap"],
)
async def test_malformed_streams_leave_nothing(
    stream: Callable[[], AsyncIterator[ingest_pb2.UploadRequest]], error: type[Exception]
) -> None:
    catalog, store, publisher = FakeCatalog(), MemoryObjectStore(), FakePublisher()
    with pytest.raises(error):
        await _uploads(catalog, store, publisher, FakeDecoder()).receive(
            stream(),
            tenant_id=TENANT,
            request_id="r",
        )
    assert (store.objects, catalog.assets, publisher.messages) == ({}, {}, [])


async def test_a_refused_image_leaves_nothing() -> None:
    catalog, store, publisher = FakeCatalog(), MemoryObjectStore(), FakePublisher()
    decoder = FakeDecoder(InvalidImage("truncated PNG", reason="IMAGE_TRUNCATED"))
    with pytest.raises(InvalidImage):
        await _uploads(catalog, store, publisher, decoder).receive(
            _upload(b"\x89PNG" + bytes(100)), tenant_id=TENANT, request_id="r"
        )
    assert (store.objects, catalog.assets, publisher.messages) == ({}, {}, [])


async def test_with_the_broker_down_the_upload_succeeds_and_the_job_stays_in_the_outbox() -> None:
    catalog, store, publisher = FakeCatalog(), MemoryObjectStore(), FakePublisher(up=False)
    result = await _uploads(catalog, store, publisher, FakeDecoder()).receive(
        _upload(b"\x89PNG" + bytes(10)), tenant_id=TENANT, request_id="r"
    )
    assert not result.deduplicated
    assert catalog.published == []
    assert len(store.objects) == 1


async def test_bad_labels_are_refused() -> None:
    header = ingest_pb2.UploadHeader(filename="a.png", labels={"Bad Key": "v"})
    with pytest.raises(InvalidArgument) as refused:
        await _uploads(FakeCatalog(), MemoryObjectStore(), FakePublisher(), FakeDecoder()).receive(
            _stream(ingest_pb2.UploadRequest(header=header)), tenant_id=TENANT, request_id="r"
        )
    assert refused.value.reason == "INVALID_LABELS"


async def test_a_stream_slower_than_the_deadline_is_cut_off() -> None:
    async def trickle() -> AsyncIterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="slow.png"))
        while True:
            await asyncio.sleep(0.05)
            yield ingest_pb2.UploadRequest(chunk=b"x")

    catalog, store, publisher = FakeCatalog(), MemoryObjectStore(), FakePublisher()
    uploads = Uploads(
        catalog=catalog,
        store=store,
        publisher=publisher,
        decoder=FakeDecoder(),
        limits=StreamLimits(max_bytes=1 << 20, times=StreamTimes(total=0.3)),
    )
    with pytest.raises(DeadlineExceeded) as cut:
        await uploads.receive(trickle(), tenant_id=TENANT, request_id="r")
    assert cut.value.reason == "UPLOAD_TIMEOUT"
    assert (store.objects, catalog.assets) == ({}, {})
