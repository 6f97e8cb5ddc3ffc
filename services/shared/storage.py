"""Object storage: the port every service uses, the S3 adapter and an in-memory fake.

Keys are built here only, from server-side values (tenant id, content hash, asset
id, preset) and never from anything a client sent:

    originals/<tenant>/<content_hash>
    renditions/<tenant>/<asset_id>/<preset>.<sha256 of the bytes, 16 hex>.<ext>

Both name their bytes, so an object a committed row points at is never overwritten
with other bytes: a stale render attempt that finishes after the winner writes its
output to another key (an orphan for Purge), or the same bytes to the same key.

S3 errors are either transient (the server is down, slow or overloaded: Unavailable,
retried) or permanent (access denied, no such bucket, a malformed request: retrying
cannot help, so they are StorageRefused and counted in
`imagepipe_storage_refused_total`, which an alert watches).

The `minio` SDK blocks, so the adapter runs it on a bounded thread pool; it is
given the region so it never asks the server where a bucket lives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from prometheus_client import Counter
from urllib3 import BaseHTTPResponse

from services.shared.errors import FailedPrecondition, ImagepipeError, NotFound, Unavailable
from services.shared.settings import Settings

__all__ = [
    "STORAGE_REFUSED",
    "MemoryObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "StorageRefused",
    "asset_of_rendition_key",
    "is_permanent_s3_error",
    "original_key",
    "rendition_key",
    "rendition_version",
    "tenant_prefixes",
]

_T = TypeVar("_T")
MIB = 1024 * 1024
# Streams above this go up in parts of this size, one at a time: memory per upload
# stays at one part whatever the object's size. 5 MiB is S3's smallest part.
PART_SIZE = 5 * MIB


def original_key(tenant_id: str, content_hash: str) -> str:
    return f"originals/{tenant_id}/{content_hash}"


def rendition_key(
    tenant_id: str, asset_id: str, preset: str, extension: str, content_hash: str
) -> str:
    """The key of one rendition's bytes, from their SHA-256 (hex): a different output
    never lands on the same key."""
    return f"renditions/{tenant_id}/{asset_id}/{preset}.{content_hash[:16]}.{extension}"


def asset_of_rendition_key(key: str) -> str | None:
    """The asset id segment of a rendition key; None for any other key."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "renditions":
        return None
    try:
        uuid.UUID(parts[2])
    except ValueError:
        return None
    return parts[2]


def rendition_version(key: str) -> str:
    """A rendition's version: the 16 hex digits of its bytes' SHA-256 its key carries."""
    parts = key.rsplit("/", 1)[-1].split(".")
    if len(parts) != 3 or len(parts[1]) != 16:
        raise ValueError(f"not a rendition key: {key!r}")
    int(parts[1], 16)
    return parts[1]


def tenant_prefixes(tenant_id: str) -> tuple[str, str]:
    """The prefixes a tenant's objects are under: (originals, renditions)."""
    return f"originals/{tenant_id}/", f"renditions/{tenant_id}/"


STORAGE_REFUSED = Counter(
    "imagepipe_storage_refused_total",
    "Object store errors that retrying cannot fix (access denied, no such bucket, ...), "
    "by S3 error code or HTTP status.",
    ["code"],
)

# Codes an S3 server answers while overloaded or restarting; anything else in 4xx
# is about the request, the credentials or the bucket, and stays so on a retry.
_TRANSIENT_S3_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "OperationAborted",
        "XMinioServerNotInitialized",
    }
)
_PERMANENT_S3_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
        "InvalidArgument",
        "InvalidRequest",
        "MethodNotAllowed",
        "EntityTooLarge",
        "KeyTooLongError",
    }
)
# HTTP statuses that mean "later may work" even when the body names no code.
_TRANSIENT_STATUSES = frozenset({408, 429})


def is_permanent_s3_error(code: str | None, status: int | None) -> bool:
    """True when repeating the request cannot succeed (retries would spin forever)."""
    if code in _TRANSIENT_S3_CODES:
        return False
    if code in _PERMANENT_S3_CODES:
        return True
    return status is not None and 400 <= status < 500 and status not in _TRANSIENT_STATUSES


class StorageRefused(FailedPrecondition):
    """The object store refused the request for a reason a retry will not change."""

    default_reason = "STORAGE_REFUSED"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: dt.datetime


class ObjectNotFound(NotFound):
    """The key does not exist in the bucket."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"object {key} is missing from the object store",
            reason="OBJECT_MISSING",
            metadata={"key": key},
        )
        self.key = key


class ObjectStore(Protocol):
    async def check(self) -> None:
        """Raise Unavailable unless the bucket answers (creating it if missing)."""

    async def put_file(self, key: str, path: Path, size: int, content_type: str) -> None: ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get_bytes(self, key: str) -> bytes: ...

    def iter_chunks(
        self, key: str, chunk_size: int, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The object's bytes from `offset`, `length` of them (None: to the end), in pieces
        of at most `chunk_size`: only one piece is held at a time. Closing the iterator
        early releases the connection."""

    async def stat(self, key: str) -> ObjectInfo: ...

    async def delete(self, key: str) -> None: ...

    async def list(self, prefix: str) -> list[ObjectInfo]: ...

    async def presigned_get(self, key: str, ttl: dt.timedelta) -> str: ...

    async def close(self) -> None: ...


class S3ObjectStore:
    """ObjectStore over S3 (MinIO in production, `rclone serve s3` locally)."""

    def __init__(self, settings: Settings, *, max_connections: int | None = None) -> None:
        """`max_connections`: connections kept open for reuse (default: one per thread).
        A caller that keeps many responses open at once (streamed reads) wants more: a
        connection released into a full pool is closed, with a warning each time."""
        threads = settings.s3_threads
        self._bucket = settings.s3_bucket
        self._endpoint = settings.s3_endpoint
        access = settings.s3_access_key.get_secret_value()
        secret = settings.s3_secret_key.get_secret_value()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="s3")
        http = urllib3.PoolManager(
            maxsize=max(threads, max_connections or 0),
            timeout=urllib3.Timeout(connect=3, read=60),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self._client = Minio(
            settings.s3_endpoint,
            access_key=access,
            secret_key=secret,
            secure=settings.s3_secure,
            region=settings.s3_region,
            http_client=http,
        )
        # Presigned URLs are signed for the host clients use; signing is local.
        self._signer = Minio(
            settings.presign_endpoint,
            access_key=access,
            secret_key=secret,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )
        self._bucket_ready = False

    async def _run(self, fn: partial[_T]) -> _T:
        key = str(fn.args[1]) if len(fn.args) > 1 else ""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                raise ObjectNotFound(key) from None
            status = getattr(error.response, "status", None)
            if is_permanent_s3_error(error.code, status):
                raise self._refused(str(error.code), f"{error.code}: {error.message}") from error
            raise Unavailable(
                f"object store error: {error.code}", reason="STORAGE_ERROR"
            ) from error
        except InvalidResponseError as error:
            # Some S3 servers answer errors in a shape the SDK does not parse (rclone's
            # NoSuchKey, for one); the HTTP status still says what happened.
            raise self.status_error(getattr(error, "_code", None), key) from error
        except ServerError as error:
            raise Unavailable(
                f"object store answered HTTP {error.status_code}", reason="STORAGE_ERROR"
            ) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise self.unreachable(error) from error

    def status_error(self, status: int | None, key: str) -> ImagepipeError:
        """The error an HTTP error status of the store means, for `key`."""
        if status == 404:
            return ObjectNotFound(key)
        if is_permanent_s3_error(None, status):
            return self._refused(f"HTTP {status}", f"HTTP {status}")
        return Unavailable(f"object store answered HTTP {status}", reason="STORAGE_ERROR")

    def unreachable(self, error: BaseException) -> Unavailable:
        return Unavailable(
            f"object store at {self._endpoint} unreachable: {type(error).__name__}",
            reason="STORAGE_UNAVAILABLE",
        )

    def read_url(self, key: str, ttl: dt.timedelta) -> str:
        """A presigned GET of `key` on the endpoint the services use (signed locally): for
        a reader with an HTTP client of its own."""
        return self._client.presigned_get_object(self._bucket, key, expires=ttl)

    def _refused(self, code: str, detail: str) -> StorageRefused:
        STORAGE_REFUSED.labels(code).inc()
        return StorageRefused(
            f"object store {self._endpoint} bucket {self._bucket} refused the request "
            f"({detail}); retrying will not help until its configuration is fixed",
            metadata={"code": code, "bucket": self._bucket},
        )

    async def check(self) -> None:
        def ensure_bucket() -> None:
            if self._client.bucket_exists(self._bucket):
                return
            try:
                self._client.make_bucket(self._bucket)
            except S3Error as error:
                # Another service created it between our two calls.
                if error.code != "BucketAlreadyOwnedByYou":
                    raise

        await self._run(partial(ensure_bucket))
        self._bucket_ready = True

    async def put_file(self, key: str, path: Path, size: int, content_type: str) -> None:
        def put() -> None:
            with path.open("rb") as body:
                self._client.put_object(
                    self._bucket,
                    key,
                    body,
                    size,
                    content_type=content_type,
                    part_size=PART_SIZE,
                    num_parallel_uploads=1,
                )

        await self._run(partial(put))

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await self._run(
            partial(
                self._client.put_object,
                self._bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
            )
        )

    async def get_bytes(self, key: str) -> bytes:
        def get(bucket: str, object_key: str) -> bytes:
            response = self._client.get_object(bucket, object_key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await self._run(partial(get, self._bucket, key))

    async def iter_chunks(
        self, key: str, chunk_size: int, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if length == 0:
            return

        def open_and_read(bucket: str, object_key: str) -> tuple[BaseHTTPResponse, bytes]:
            # A ranged GET (length 0: to the end) and its first piece in one trip to the
            # thread pool: an object smaller than a piece costs one hop, not three.
            response = self._client.get_object(
                bucket, object_key, offset=offset, length=length or 0
            )
            try:
                return response, response.read(chunk_size)
            except BaseException:
                response.close()
                response.release_conn()
                raise

        response, chunk = await self._run(partial(open_and_read, self._bucket, key))
        try:
            # read(n) returns fewer than n bytes only at the end of the body.
            while chunk:
                yield chunk
                if len(chunk) < chunk_size:
                    break
                chunk = await self._run(partial(response.read, chunk_size))
        finally:
            response.close()
            response.release_conn()

    async def stat(self, key: str) -> ObjectInfo:
        result = await self._run(partial(self._client.stat_object, self._bucket, key))
        assert result.last_modified is not None and result.size is not None
        return ObjectInfo(key=key, size=result.size, modified=result.last_modified)

    async def delete(self, key: str) -> None:
        await self._run(partial(self._client.remove_object, self._bucket, key))

    async def list(self, prefix: str) -> list[ObjectInfo]:
        def list_all(bucket: str, object_prefix: str) -> list[ObjectInfo]:
            return [
                ObjectInfo(
                    key=obj.object_name or "", size=obj.size or 0, modified=obj.last_modified
                )
                for obj in self._client.list_objects(bucket, prefix=object_prefix, recursive=True)
                if obj.object_name and obj.last_modified is not None
            ]

        return await self._run(partial(list_all, self._bucket, prefix))

    async def presigned_get(self, key: str, ttl: dt.timedelta) -> str:
        return self._signer.presigned_get_object(self._bucket, key, expires=ttl)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class MemoryObjectStore:
    """In-memory ObjectStore for unit tests."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str, dt.datetime]] = {}
        self.available = True

    def _require(self) -> None:
        if not self.available:
            raise Unavailable("object store unreachable", reason="STORAGE_UNAVAILABLE")

    async def check(self) -> None:
        self._require()

    async def put_file(self, key: str, path: Path, size: int, content_type: str) -> None:
        data = await asyncio.to_thread(path.read_bytes)
        await self.put_bytes(key, data[:size], content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._require()
        self.objects[key] = (bytes(data), content_type, dt.datetime.now(dt.UTC))

    async def get_bytes(self, key: str) -> bytes:
        self._require()
        if key not in self.objects:
            raise ObjectNotFound(key)
        return self.objects[key][0]

    async def iter_chunks(
        self, key: str, chunk_size: int, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        data = await self.get_bytes(key)
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, chunk_size):
            yield data[start : min(start + chunk_size, end)]

    async def stat(self, key: str) -> ObjectInfo:
        data = await self.get_bytes(key)
        return ObjectInfo(key=key, size=len(data), modified=self.objects[key][2])

    async def delete(self, key: str) -> None:
        self._require()
        self.objects.pop(key, None)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        self._require()
        return [
            ObjectInfo(key=k, size=len(v[0]), modified=v[2])
            for k, v in sorted(self.objects.items())
            if k.startswith(prefix)
        ]

    async def presigned_get(self, key: str, ttl: dt.timedelta) -> str:
        return f"memory://{key}?ttl={int(ttl.total_seconds())}"

    async def close(self) -> None:
        return None
