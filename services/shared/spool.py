"""Receiving streamed bytes: caps checked per chunk, SHA-256 while streaming, on disk.

Memory per upload stays at one chunk: each chunk is hashed and written to a temp
file as it arrives, and the stream is refused the moment it passes the cap, without
reading the rest.

The header-then-chunks protocol of every client-streaming RPC (Upload, CompareImages)
has one receiver, `receive_stream`; `spooled` wraps it with the spool files' life:
made under the limits, finished once the stream ends, removed when the caller is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

from google.protobuf.message import Message

from services.shared.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from services.shared.settings import Settings

__all__ = [
    "MAX_CHUNK_BYTES",
    "Received",
    "Spool",
    "StreamLimits",
    "StreamTimes",
    "idle_bounded",
    "receive_deadline",
    "receive_stream",
    "spooled",
]

MAX_CHUNK_BYTES = 1024 * 1024

T = TypeVar("T")
H = TypeVar("H", bound=Message)


class _Part(Protocol):
    """A streamed request: a `part` oneof of a `header` then chunk fields."""

    def WhichOneof(self, oneof_group: Literal["part"]) -> str | None: ...


class Spool:
    def __init__(self, *, max_bytes: int, directory: str = "", label: str = "upload") -> None:
        self._max_bytes = max_bytes
        self._label = label
        fd, name = tempfile.mkstemp(prefix="imagepipe-", suffix=".part", dir=directory or None)
        self._file = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.size = 0
        self._digest = hashlib.sha256()
        self.sha256 = ""  # hex, once finished

    def _absorb(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self._file.write(chunk)

    async def write(self, chunk: bytes) -> None:
        if len(chunk) > MAX_CHUNK_BYTES:
            raise InvalidArgument(
                f"{self._label} chunk of {len(chunk)} bytes is larger than the 1 MiB maximum; "
                "split the stream into smaller chunks",
                reason="CHUNK_TOO_LARGE",
                metadata={"chunk_bytes": len(chunk), "max_chunk_bytes": MAX_CHUNK_BYTES},
            )
        if self.size + len(chunk) > self._max_bytes:
            raise ResourceExhausted(
                f"{self._label} is larger than the {_human(self._max_bytes)} limit "
                "(IMAGEPIPE_MAX_UPLOAD_BYTES); the rest of the stream was not read",
                reason="UPLOAD_TOO_LARGE",
                metadata={
                    "limit_bytes": self._max_bytes,
                    "received_bytes": self.size + len(chunk),
                },
            )
        self.size += len(chunk)
        # Hashing and writing a 1 MiB chunk both release the GIL: off the event loop.
        await asyncio.to_thread(self._absorb, chunk)

    async def finish(self) -> str:
        """Flush to disk; returns the SHA-256 of everything written, hex."""
        await asyncio.to_thread(self._file.close)
        self.sha256 = self._digest.hexdigest()
        return self.sha256

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def receive_deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound how long a client may take to stream its bytes (slow-loris guard)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise DeadlineExceeded(
            f"the {what} stream took longer than {seconds:g} s (IMAGEPIPE_UPLOAD_TIMEOUT_SECONDS)",
            reason="UPLOAD_TIMEOUT",
        ) from None


async def idle_bounded(messages: AsyncIterable[T], seconds: float, what: str) -> AsyncIterator[T]:
    """`messages`, refused when the client sends nothing for `seconds`.

    The whole-stream deadline alone lets a client that sent its header and then
    nothing hold a spool file and a descriptor for all of it.
    """
    iterator = aiter(messages)
    while True:
        try:
            async with asyncio.timeout(seconds):
                message = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded(
                f"the {what} stream sent nothing for {seconds:g} s "
                "(IMAGEPIPE_UPLOAD_IDLE_SECONDS); send the next chunk sooner",
                reason="UPLOAD_IDLE",
                metadata={"idle_seconds": seconds},
            ) from None
        yield message


@dataclasses.dataclass(frozen=True)
class StreamTimes:
    """How long a stream may take in all, and between two messages."""

    total: float = 300.0
    idle: float = 30.0


@dataclasses.dataclass(frozen=True)
class StreamLimits:
    """What one streamed image may cost: its size, its time, and where it is spooled."""

    max_bytes: int
    times: StreamTimes = StreamTimes()
    spool_dir: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamLimits:
        """The limits of every streamed image (IMAGEPIPE_MAX_UPLOAD_BYTES and friends)."""
        return cls(
            max_bytes=settings.max_upload_bytes,
            times=StreamTimes(
                total=settings.upload_timeout_seconds, idle=settings.upload_idle_seconds
            ),
            spool_dir=settings.spool_dir,
        )


async def receive_stream(
    messages: AsyncIterable[_Part],
    spools: Mapping[str, Spool],
    header_type: type[H],
    *,
    what: str,
    times: StreamTimes,
    on_header: Callable[[H], None] = lambda header: None,
    on_chunk: Callable[[int], None] = lambda size: None,
) -> H | None:
    """Read a header-then-chunks stream into `spools` (by the chunk's field name),
    within the whole-stream deadline and the idle timeout; returns the header, or None
    when the stream held none and no chunk.

    One implementation of the protocol for every streaming RPC (Upload, CompareImages).
    """
    header: H | None = None
    async with receive_deadline(times.total, what):
        async for message in idle_bounded(messages, times.idle, what):
            part = message.WhichOneof("part")
            if part == "header":
                if header is not None or any(s.size for s in spools.values()):
                    raise InvalidArgument(
                        "the header must be the first message and sent once",
                        reason="MALFORMED_STREAM",
                    )
                value = getattr(message, part)
                assert isinstance(value, header_type)
                on_header(value)
                header = value
            elif part is not None and part in spools:
                if header is None:
                    raise InvalidArgument(
                        f"send the {header_type.__name__} before the first chunk",
                        reason="MALFORMED_STREAM",
                    )
                chunk: bytes = getattr(message, part)  # each access copies the bytes
                on_chunk(len(chunk))
                await spools[part].write(chunk)
    return header


@dataclasses.dataclass(frozen=True)
class Received(Generic[H]):
    """A received stream: its header (None when it held none and no chunk) and one
    finished spool per chunk field."""

    header: H | None
    spools: Mapping[str, Spool]


@contextlib.asynccontextmanager
async def spooled(
    messages: AsyncIterable[_Part],
    header_type: type[H],
    parts: Mapping[str, str],
    *,
    what: str,
    limits: StreamLimits,
    on_header: Callable[[H], None] = lambda header: None,
    on_chunk: Callable[[int], None] = lambda size: None,
) -> AsyncIterator[Received[H]]:
    """Receive a header-then-chunks stream into one spool per chunk field (`parts` maps
    each field to the name its errors use) and finish them; the files are removed
    when the block exits, however it exits."""
    spools: dict[str, Spool] = {}
    try:
        for part, label in parts.items():
            spools[part] = Spool(
                max_bytes=limits.max_bytes, directory=limits.spool_dir, label=label
            )
        header = await receive_stream(
            messages,
            spools,
            header_type,
            what=what,
            times=limits.times,
            on_header=on_header,
            on_chunk=on_chunk,
        )
        for spool in spools.values():
            await spool.finish()
        yield Received(header, spools)
    finally:
        for spool in spools.values():
            spool.discard()


def _human(size: int) -> str:
    mib = size / (1024 * 1024)
    return f"{mib:g} MiB" if mib >= 1 else f"{size} bytes"
