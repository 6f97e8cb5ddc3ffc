"""Object reads for delivery: URLs the minio SDK signs, fetched by aiohttp's client.

The shared S3ObjectStore runs the minio SDK on a thread pool: right for the other
services, too slow for delivery's one GET per uncached request (SigV4 signing, urllib3
and http.client in threads that take turns with the event loop for the GIL: about
1.4 ms of it per request). Here the SDK still signs (a presigned GET, made locally and
reused while it is valid: the keys are content-addressed, so a key always names the
same bytes) and the request itself runs in the event loop, streamed with aiohttp's
flow control (a client reading slowly pauses the read from S3).

Errors mean what they mean everywhere else: S3ObjectStore.status_error and
.unreachable map them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import aiohttp
from cachetools import TTLCache

from services.shared.storage import S3ObjectStore

__all__ = ["S3Reader"]

# A signed URL is valid for URL_TTL and reused for URL_REUSE_SECONDS of it, so one taken
# from the cache has at least ten minutes left: enough for any read to start.
URL_TTL = dt.timedelta(hours=1)
URL_REUSE_SECONDS = 50 * 60
URLS_KEPT = 16_384
TIMEOUT = aiohttp.ClientTimeout(sock_connect=3, sock_read=60)


class S3Reader:
    """get_bytes and iter_chunks of the ObjectStore protocol, in the event loop."""

    def __init__(self, store: S3ObjectStore, session: aiohttp.ClientSession) -> None:
        self._store = store
        self._session = session
        self._urls: TTLCache[str, str] = TTLCache(URLS_KEPT, URL_REUSE_SECONDS)

    def _url(self, key: str) -> str:
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = self._store.read_url(key, URL_TTL)
        return url

    async def _open(self, key: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
        # aiohttp repeats a GET once by itself when a pooled connection turns out closed.
        try:
            response = await self._session.get(
                self._url(key), headers=headers, timeout=TIMEOUT, auto_decompress=False
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise self._store.unreachable(error) from error
        if response.status < 300:
            return response
        response.release()
        raise self._store.status_error(response.status, key)

    async def get_bytes(self, key: str) -> bytes:
        response = await self._open(key, {})
        try:
            return await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise self._store.unreachable(error) from error
        finally:
            response.release()

    async def iter_chunks(
        self, key: str, chunk_size: int, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if length == 0:
            return
        headers = {}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{last}"
        response = await self._open(key, headers)
        try:
            async for chunk in response.content.iter_chunked(chunk_size):
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise self._store.unreachable(error) from error
        finally:
            # Back to the pool only when read to the end; otherwise closed.
            if response.content.at_eof():
                response.release()
            else:
                response.close()
