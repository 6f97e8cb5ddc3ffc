"""Upload: the header-then-chunks stream, replayed from its first byte on UNAVAILABLE.

gRPC cannot replay a client stream itself, and an upload is idempotent by content hash,
so the client sends it again when the stream failed with UNAVAILABLE and the source can
be rewound.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import random
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, TypeAlias

from imagepipe.client._errors import map_rpc_errors
from imagepipe.client._results import UploadResult
from imagepipe.client.errors import Unavailable
from imagepipe.v1 import ingest_pb2, ingest_pb2_grpc

__all__ = [
    "CHUNK_SIZE",
    "MIN_UPLOAD_RATE",
    "UNKNOWN_UPLOAD_SIZE",
    "Source",
    "Upload",
    "UploadSource",
    "upload_header",
]

CHUNK_SIZE = 1024 * 1024  # the contract's largest Upload chunk
# Uploads get the client's timeout plus the time to send their bytes at this slow rate,
# so a 50 MiB original on a modest link is not cut off by a deadline sized for reads.
MIN_UPLOAD_RATE = 1024 * 1024  # bytes per second
# Assumed size when a stream's length cannot be known in advance (the server's cap).
UNKNOWN_UPLOAD_SIZE = 50 * 1024 * 1024

_Metadata: TypeAlias = tuple[tuple[str, str], ...]

Source: TypeAlias = str | os.PathLike[str] | BinaryIO


class UploadSource:
    """The bytes of one upload, re-readable from the start when the file is seekable.

    Reads are positional and serialised: a failed attempt's reader may still be busy
    in a worker thread when the next attempt starts, and must not move the next
    attempt's position.
    """

    def __init__(self, file: IO[bytes], *, owned: bool, filename: str) -> None:
        self.file = file
        self.owned = owned
        self.filename = filename
        self.start: int | None = None
        self.size: int | None = None
        self._lock = threading.Lock()
        if file.seekable():
            self.start = file.tell()
            self.size = file.seek(0, os.SEEK_END) - self.start
            file.seek(self.start)

    @classmethod
    def open(cls, source: Source, filename: str | None) -> UploadSource:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            return cls(path.open("rb"), owned=True, filename=filename or path.name)
        name = getattr(source, "name", "")
        fallback = Path(name).name if isinstance(name, str) else ""
        return cls(source, owned=False, filename=filename or fallback)

    @property
    def rewindable(self) -> bool:
        return self.start is not None

    def read_chunk(self, offset: int) -> bytes:
        """CHUNK_SIZE bytes from `offset`, fewer only at the end.

        Loops because pipes and raw streams may return short reads. `offset` is
        ignored for unseekable sources, which are read once, in order.
        """
        with self._lock:
            if self.start is not None:
                self.file.seek(self.start + offset)
            parts: list[bytes] = []
            wanted = CHUNK_SIZE
            while wanted:
                part = self.file.read(wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
            return b"".join(parts)

    def close(self) -> None:
        with self._lock:
            if self.owned:
                self.file.close()


def upload_header(
    filename: str, labels: Mapping[str, str] | None, content_type: str | None
) -> ingest_pb2.UploadHeader:
    """The stream's first message; the content type is guessed from the name if not given."""
    return ingest_pb2.UploadHeader(
        filename=filename,
        content_type=content_type
        if content_type is not None
        else mimetypes.guess_type(filename)[0] or "",
        labels=dict(labels or {}),
    )


@dataclass(frozen=True)
class Upload:
    """One upload: its bytes, its header, and who hears about the bytes sent."""

    source: UploadSource
    header: ingest_pb2.UploadHeader
    on_progress: Callable[[int], None] | None = None

    async def send(
        self,
        stub: ingest_pb2_grpc.IngestServiceAsyncStub,
        *,
        metadata: _Metadata,
        request_id: str,
        timeout: float,
        attempts: int,
    ) -> UploadResult:
        """Stream the upload, up to `attempts` times while the answer is UNAVAILABLE.

        Every attempt carries the same request id, so the server's logs tie them together.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                with map_rpc_errors(request_id):
                    response = await stub.Upload(
                        self.requests(), timeout=timeout, metadata=metadata
                    )
            except Unavailable:
                if not self.source.rewindable or attempt >= attempts:
                    raise
                await asyncio.sleep(_backoff(attempt))
                continue
            return UploadResult(
                asset=response.asset,
                deduplicated=response.deduplicated,
                near_duplicates=tuple(response.near_duplicates),
                request_id=request_id,
            )

    async def requests(self) -> AsyncIterator[ingest_pb2.UploadRequest]:
        """The header, then chunks of exactly CHUNK_SIZE (the last one smaller)."""
        yield ingest_pb2.UploadRequest(header=self.header)
        sent = 0
        if self.on_progress is not None:
            self.on_progress(sent)
        while chunk := await asyncio.to_thread(self.source.read_chunk, sent):
            yield ingest_pb2.UploadRequest(chunk=chunk)
            sent += len(chunk)
            if self.on_progress is not None:
                self.on_progress(sent)


def _backoff(attempt: int) -> float:
    """Seconds before retry `attempt` + 1: exponential from 0.25 s, capped, jittered."""
    return min(2.0, 0.25 * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
