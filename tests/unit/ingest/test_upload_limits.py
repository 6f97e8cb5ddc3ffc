"""Header limits, the idle timeout and the per-tenant bound: refused, nothing left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagepipe.v1 import catalog_internal_pb2, ingest_pb2
from services.ingest.upload import Uploads, check_header
from services.shared.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from services.shared.spool import StreamLimits, StreamTimes
from services.shared.storage import MemoryObjectStore
from tests.unit.ingest.test_uploads import TENANT, FakeCatalog, FakeDecoder, FakePublisher

TIMES = StreamTimes()


def _files(directory: Path) -> set[Path]:
    return set(directory.iterdir())


def _uploads(
    spool_dir: Path, *, times: StreamTimes = TIMES, max_uploads_per_tenant: int = 0
) -> tuple[Uploads, FakeCatalog, MemoryObjectStore]:
    catalog, store = FakeCatalog(), MemoryObjectStore()
    uploads = Uploads(
        catalog=catalog,
        store=store,
        publisher=FakePublisher(),
        decoder=FakeDecoder(),
        limits=StreamLimits(max_bytes=1 << 20, times=times, spool_dir=str(spool_dir)),
        max_uploads_per_tenant=max_uploads_per_tenant,
    )
    return uploads, catalog, store


@pytest.mark.parametrize(
    ("header", "reason", "field"),
    [
        (ingest_pb2.UploadHeader(filename="f" * 10_000), "FIELD_TOO_LONG", "filename"),
        (ingest_pb2.UploadHeader(filename="f" * 256), "FIELD_TOO_LONG", "filename"),
        (ingest_pb2.UploadHeader(content_type="i" * 10_000), "FIELD_TOO_LONG", "content_type"),
        (ingest_pb2.UploadHeader(filename="a.png\n"), "INVALID_FILENAME", None),
        (ingest_pb2.UploadHeader(filename="\tb.png"), "INVALID_FILENAME", None),
        (ingest_pb2.UploadHeader(filename="\u202egnp.exe"), "INVALID_FILENAME", None),
        (ingest_pb2.UploadHeader(labels={"site\n": "x"}), "INVALID_LABELS", None),
        (ingest_pb2.UploadHeader(labels={"k": "v" * 256}), "INVALID_LABELS", None),
        (ingest_pb2.UploadHeader(labels={"k" * 64: "v"}), "INVALID_LABELS", None),
        (ingest_pb2.UploadHeader(labels={f"k{i}": "v" for i in range(33)}), "INVALID_LABELS", None),
    ],
    ids=[
        "10k-filename",
        "256-filename",
        "10k-content-type",
        "newline-in-filename",
        "tab-in-filename",
        "bidi-override-in-filename",
        "key-with-trailing-newline",
        "long-value",
        "long-key",
        "33-labels",
    ],
)
def test_headers_the_catalog_would_not_store_as_sent_are_refused(
    header: ingest_pb2.UploadHeader, reason: str, field: str | None
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_header(header)
    assert refused.value.reason == reason
    if field:
        assert refused.value.metadata["field"] == field


def test_headers_at_the_limits_are_accepted() -> None:
    check_header(
        ingest_pb2.UploadHeader(
            filename="f" * 255,
            content_type="i" * 255,
            labels={f"k{i}": "v" * 255 for i in range(31)} | {"k" * 63: "v"},
        )
    )


async def test_a_stream_that_goes_silent_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    silence = asyncio.Event()

    async def header_then_nothing() -> AsyncIterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="a.png"))
        yield ingest_pb2.UploadRequest(chunk=b"\x89PNG")
        await silence.wait()  # never set: the client sends nothing more

    uploads, catalog, store = _uploads(tmp_path, times=StreamTimes(total=60, idle=0.2))
    with pytest.raises(DeadlineExceeded) as idle:
        await uploads.receive(header_then_nothing(), tenant_id=TENANT, request_id="r")
    assert idle.value.reason == "UPLOAD_IDLE"
    assert (store.objects, catalog.assets, _files(tmp_path)) == ({}, {}, set())
    assert uploads.slots.open_count(TENANT) == 0


async def test_one_tenant_past_its_open_uploads_is_refused_others_are_not(tmp_path: Path) -> None:
    uploads, _, _ = _uploads(tmp_path, max_uploads_per_tenant=2)
    release, both_open = asyncio.Event(), asyncio.Event()
    opened = 0

    async def held_open() -> AsyncIterator[ingest_pb2.UploadRequest]:
        nonlocal opened
        opened += 1  # runs once the upload holds its slot and its spool file
        if opened == 2:
            both_open.set()
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="a.png"))
        await release.wait()

    async def complete(data: bytes) -> AsyncIterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="b.png"))
        yield ingest_pb2.UploadRequest(chunk=data)

    first = asyncio.create_task(uploads.receive(held_open(), tenant_id=TENANT, request_id="1"))
    second = asyncio.create_task(uploads.receive(held_open(), tenant_id=TENANT, request_id="2"))
    await both_open.wait()
    assert uploads.slots.open_count(TENANT) == 2
    spooled = _files(tmp_path)

    with pytest.raises(ResourceExhausted) as refused:
        await uploads.receive(complete(b"\x89PNG1"), tenant_id=TENANT, request_id="3")
    assert refused.value.reason == "TOO_MANY_UPLOADS"
    assert _files(tmp_path) == spooled, "the refused upload spooled nothing"

    other = await uploads.receive(complete(b"\x89PNG2"), tenant_id="other", request_id="4")
    assert not other.deduplicated

    release.set()
    await asyncio.gather(first, second)
    assert uploads.slots.open_count(TENANT) == 0
    assert _files(tmp_path) == set()
    again = await uploads.receive(complete(b"\x89PNG3"), tenant_id=TENANT, request_id="5")
    assert not again.deduplicated


async def test_a_filename_is_stored_exactly_as_sent(tmp_path: Path) -> None:
    # The narrow no-break space is what macOS puts before "AM" in screenshot names.
    sent = "Screenshot 2026-12-07 at 10.00.00\u202fAM — été.png"
    uploads, catalog, _ = _uploads(tmp_path)
    registered: list[str] = []
    register = catalog.register_asset

    async def capture(
        request: catalog_internal_pb2.RegisterAssetRequest,
    ) -> catalog_internal_pb2.RegisterAssetResponse:
        registered.append(request.filename)
        return await register(request)

    catalog.register_asset = capture  # type: ignore[method-assign]

    async def stream() -> AsyncIterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename=sent))
        yield ingest_pb2.UploadRequest(chunk=b"\x89PNG-exact-name")

    await uploads.receive(stream(), tenant_id=TENANT, request_id="r")
    assert registered == [sent]
