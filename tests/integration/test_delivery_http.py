"""R10 end to end: delivery over HTTP on a stack of its own, in front of the real catalog
and S3. One photo is uploaded and rendered (card as JPEG, WebP and AVIF; zoom large
enough to be streamed), then its URLs are fetched as a browser or a CDN would.

The test stack caches lookups for 2 s (IMAGEPIPE_DELIVERY_LOOKUP_TTL_SECONDS, set by
devstack), so revocations and deletes are seen within seconds; the tests poll for them
with a hang guard and never assert durations.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from google.protobuf import field_mask_pb2

from devstack import (
    ServerMissing,
    ServiceProcess,
    Stack,
    StackConfig,
    free_port,
    scrape_metric,
    unique_jpeg,
)
from imagepipe.delivery import delivery_path, signed_url
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from services.delivery.s3 import S3Reader
from services.shared.settings import Settings
from services.shared.storage import S3ObjectStore
from tests.helpers import Services, Tenant, register_directly, upload, wait_for_status

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "tests" / "corpus" / "photo_olympus_ep3_12mp.jpg"
# zoom: a 12 MP photo at 4000 px, megabytes of JPEG, far above the hot cache's object
# limit, so it is always streamed from S3.
PRESETS = (
    '[{"name":"zoom","max_width":4000,"max_height":4000},'
    '{"name":"card","max_width":400,"max_height":400,"formats":["jpeg","webp","avif"],'
    '"chroma_subsampling":"4:4:4"},'
    '{"name":"thumb","max_width":100,"max_height":100,"chroma_subsampling":"4:4:4"}]'
)
MAX_AGE = 30  # IMAGEPIPE_DELIVERY_MAX_AGE_SECONDS of this stack
JPEG, WEBP, AVIF = (
    common_pb2.IMAGE_FORMAT_JPEG,
    common_pb2.IMAGE_FORMAT_WEBP,
    common_pb2.IMAGE_FORMAT_AVIF,
)
IMMUTABLE = "public, max-age=31536000, immutable"
PATIENCE_SECONDS = 30  # hang guard of the polls below; the TTL is 2 s


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def reason(self) -> str:
        return str(json.loads(self.body)["error"]["reason"])


@dataclass(frozen=True)
class Delivery:
    stack: Stack
    services: Services
    tenant: Tenant
    key_id: str
    secret: str

    @property
    def catalog(self) -> catalog_pb2_grpc.CatalogServiceStub:
        return catalog_pb2_grpc.CatalogServiceStub(self.services.catalog)

    def fetch(self, url: str, method: str = "GET", **headers: str) -> Fetched:
        """One request to delivery; `url` absolute or path + query. No redirects followed."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        port = self.stack.http_ports["delivery"]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            named = {name.replace("_", "-"): value for name, value in headers.items()}
            connection.request(method, target, headers=named)
            response = connection.getresponse()
            return Fetched(response.status, response.headers, response.read())
        finally:
            connection.close()

    def signed(
        self,
        path: str,
        *,
        version: str | None = None,
        expires: int | None = None,
        key: tuple[str, str] | None = None,
    ) -> str:
        """A URL signed locally (with the tenant's key unless `key` is given), as the
        client library signs."""
        key_id, secret = key or (self.key_id, self.secret)
        base = self.stack.delivery_url
        return signed_url(
            base, path, version=version, expires=expires, key_id=key_id, secret=secret
        )

    def delivery_url(self, asset_id: str, preset: str, image_format: int = 0, ttl: int = 0) -> str:
        response = self.catalog.GetDeliveryUrl(
            catalog_pb2.GetDeliveryUrlRequest(
                asset_id=asset_id,
                preset=preset,
                format=image_format,  # type: ignore[arg-type]
                ttl_seconds=ttl,
            ),
            metadata=self.tenant.metadata,
            timeout=10,
        )
        return str(response.url)


def _create_tenant(services: Services, name: str) -> Tenant:
    created = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog).CreateTenant(
        tenant_admin_pb2.CreateTenantRequest(name=name),
        metadata=services.admin_metadata,
        timeout=10,
    )
    return Tenant(created.tenant.tenant_id, created.secret_key)


def _signing_key(services: Services, tenant: Tenant) -> tuple[str, str]:
    created = catalog_pb2_grpc.CatalogServiceStub(services.catalog).CreateSigningKey(
        catalog_pb2.CreateSigningKeyRequest(label="tests"), metadata=tenant.metadata, timeout=10
    )
    return created.signing_key.key_id, created.secret


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[Stack, Services, Tenant]]:
    """This module's stack (its presets, its max-age) and a tenant."""
    work_dir = Path(tempfile.mkdtemp(prefix="imagepipe-delivery-"))
    env = {"IMAGEPIPE_PRESETS": PRESETS, "IMAGEPIPE_DELIVERY_MAX_AGE_SECONDS": str(MAX_AGE)}
    stack = Stack(StackConfig.from_env(work_dir, extra_env=env))
    try:
        with stack.running():
            services = Services.open(stack)
            try:
                yield stack, services, _create_tenant(services, "delivery")
            finally:
                services.close()
    except ServerMissing as error:
        pytest.fail(str(error), pytrace=False)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def delivery(running: tuple[Stack, Services, Tenant]) -> Delivery:
    """The stack with a signing key of the tenant."""
    stack, services, tenant = running
    key_id, secret = _signing_key(services, tenant)
    return Delivery(stack, services, tenant, key_id, secret)


@pytest.fixture(scope="module")
def asset(running: tuple[Stack, Services, Tenant]) -> common_pb2.Asset:
    _, services, tenant = running
    uploaded = upload(services, tenant, PHOTO.read_bytes(), PHOTO.name)
    ready = wait_for_status(services, tenant, uploaded.asset.asset_id, 120)
    assert ready.status == common_pb2.ASSET_STATUS_READY
    return ready


def _rendition(asset: common_pb2.Asset, preset: str, image_format: int) -> common_pb2.Rendition:
    return next(r for r in asset.renditions if r.preset == preset and r.format == image_format)


def _until(probe: Callable[[], Fetched], done: Callable[[Fetched], bool]) -> Fetched:
    """Probe until `done` (a hang guard, not a timing claim)."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while True:
        fetched = probe()
        if done(fetched) or time.monotonic() > deadline:
            return fetched
        time.sleep(0.2)


# --- 200, 206, 304, 416, HEAD -----------------------------------------------------------


def test_a_versioned_url_is_served_as_immutable(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    url = delivery.delivery_url(asset.asset_id, "card", WEBP)
    rendition = _rendition(asset, "card", WEBP)
    assert f"v={rendition.version}" in url and f"k={delivery.key_id}" in url
    got = delivery.fetch(url)
    assert got.status == 200
    assert got.headers["Cache-Control"] == IMMUTABLE
    assert got.headers["ETag"] == f'"{rendition.content_hash}"'
    assert got.headers["Content-Type"] == "image/webp"
    assert int(got.headers["Content-Length"]) == len(got.body) == rendition.size_bytes
    assert hashlib.sha256(got.body).hexdigest() == rendition.content_hash
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in got.headers, "a format URL does not depend on Accept"


def test_an_unversioned_url_is_cached_for_the_configured_max_age(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    got = delivery.fetch(
        delivery.signed(delivery_path(delivery.tenant.tenant_id, asset.asset_id, "card", "jpeg"))
    )
    assert got.status == 200
    assert got.headers["Cache-Control"] == f"public, max-age={MAX_AGE}"


@pytest.mark.parametrize(
    ("accept", "served"),
    [
        ("image/avif,image/webp,*/*;q=0.8", "image/avif"),
        ("image/webp,image/*;q=0.8", "image/webp"),
        ("image/jpeg", "image/jpeg"),
    ],
)
def test_a_negotiated_url_serves_what_accept_prefers_and_varies_on_it(
    delivery: Delivery, asset: common_pb2.Asset, accept: str, served: str
) -> None:
    url = delivery.delivery_url(asset.asset_id, "card")
    got = delivery.fetch(url, accept=accept)
    assert got.status == 200
    assert got.headers["Content-Type"] == served
    assert got.headers["Vary"] == "Accept"
    assert got.headers["Cache-Control"] == IMMUTABLE


def test_one_byte_range_is_a_206_and_an_unsatisfiable_one_a_416(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    url = delivery.delivery_url(asset.asset_id, "zoom", JPEG)
    zoom = _rendition(asset, "zoom", JPEG)
    whole = delivery.fetch(url)
    ranged = delivery.fetch(url, range="bytes=1000-1999")
    assert ranged.status == 206
    assert ranged.headers["Content-Range"] == f"bytes 1000-1999/{zoom.size_bytes}"
    assert ranged.body == whole.body[1000:2000]
    tail = delivery.fetch(url, range="bytes=-500")
    assert tail.status == 206 and tail.body == whole.body[-500:]
    beyond = delivery.fetch(url, range=f"bytes={zoom.size_bytes}-")
    assert beyond.status == 416
    assert beyond.headers["Content-Range"] == f"bytes */{zoom.size_bytes}"


def test_a_matching_if_none_match_is_a_304(delivery: Delivery, asset: common_pb2.Asset) -> None:
    url = delivery.delivery_url(asset.asset_id, "card")
    first = delivery.fetch(url, accept="image/webp")
    again = delivery.fetch(url, accept="image/webp", if_none_match=first.headers["ETag"])
    assert again.status == 304
    assert again.body == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
    assert again.headers["Vary"] == "Accept"


def test_head_answers_the_headers_of_get_without_a_body(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    url = delivery.delivery_url(asset.asset_id, "zoom", JPEG)
    get, head = delivery.fetch(url), delivery.fetch(url, method="HEAD")
    assert head.status == 200 and head.body == b""
    varying = {"Date", "X-Request-Id"}
    assert {k: v for k, v in head.headers.items() if k not in varying} == {
        k: v for k, v in get.headers.items() if k not in varying
    }


# --- 403 -------------------------------------------------------------------------------


def test_a_wrong_signature_is_refused(delivery: Delivery, asset: common_pb2.Asset) -> None:
    url = delivery.delivery_url(asset.asset_id, "card", JPEG)
    tampered = url.replace("/card.jpg?", "/card.webp?")
    got = delivery.fetch(tampered)
    assert (got.status, got.reason()) == (403, "SIGNATURE_INVALID")
    assert got.headers["Cache-Control"] == "no-store"


def test_an_expired_url_is_refused(delivery: Delivery, asset: common_pb2.Asset) -> None:
    path = delivery_path(delivery.tenant.tenant_id, asset.asset_id, "card", "jpeg")
    got = delivery.fetch(delivery.signed(path, expires=int(time.time()) - 60))
    assert (got.status, got.reason()) == (403, "URL_EXPIRED")
    fresh = delivery.fetch(delivery.delivery_url(asset.asset_id, "card", JPEG, ttl=600))
    assert fresh.status == 200
    left = int(fresh.headers["Cache-Control"].split("max-age=")[1].split(",")[0])
    assert 0 < left <= 600 and fresh.headers["Cache-Control"].endswith("immutable")


def test_a_revoked_key_stops_working_after_the_lookup_ttl(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    key_id, secret = _signing_key(delivery.services, delivery.tenant)
    path = delivery_path(delivery.tenant.tenant_id, asset.asset_id, "thumb", "jpeg")
    url = delivery.signed(path, key=(key_id, secret))
    assert delivery.fetch(url).status == 200
    delivery.catalog.RevokeSigningKey(
        catalog_pb2.RevokeSigningKeyRequest(key_id=key_id),
        metadata=delivery.tenant.metadata,
        timeout=10,
    )
    got = _until(lambda: delivery.fetch(url), lambda f: f.status == 403)
    assert (got.status, got.reason()) == (403, "SIGNING_KEY_UNKNOWN")


def test_another_tenants_key_is_unknown_here(delivery: Delivery, asset: common_pb2.Asset) -> None:
    other = _create_tenant(delivery.services, "delivery-other")
    key_id, secret = _signing_key(delivery.services, other)
    path = delivery_path(delivery.tenant.tenant_id, asset.asset_id, "card", "jpeg")
    got = delivery.fetch(delivery.signed(path, key=(key_id, secret)))
    assert (got.status, got.reason()) == (403, "SIGNING_KEY_UNKNOWN")


def test_an_unsigned_url_needs_the_tenants_opt_in(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    path = delivery_path(delivery.tenant.tenant_id, asset.asset_id, "thumb", "jpeg")
    assert delivery.fetch(path).reason() == "SIGNATURE_REQUIRED"
    update = catalog_pb2.UpdateTenantSettingsRequest(
        settings=common_pb2.TenantSettings(unsigned_delivery=True),
        update_mask=field_mask_pb2.FieldMask(paths=["unsigned_delivery"]),
    )
    delivery.catalog.UpdateTenantSettings(update, metadata=delivery.tenant.metadata, timeout=10)
    try:
        got = _until(lambda: delivery.fetch(path), lambda f: f.status == 200)
        assert got.status == 200
    finally:
        update.settings.unsigned_delivery = False
        delivery.catalog.UpdateTenantSettings(update, metadata=delivery.tenant.metadata, timeout=10)


# --- 404, 302 --------------------------------------------------------------------------


def test_an_unknown_asset_is_not_found(delivery: Delivery) -> None:
    path = delivery_path(delivery.tenant.tenant_id, str(uuid.uuid4()), "card", None)
    got = delivery.fetch(delivery.signed(path))
    assert (got.status, got.reason()) == (404, "ASSET_NOT_FOUND")
    assert got.headers["Cache-Control"] == "public, max-age=2"
    assert got.headers["Vary"] == "Accept"


def test_a_deleted_asset_is_gone_after_the_lookup_ttl(delivery: Delivery) -> None:
    data = unique_jpeg(PHOTO.read_bytes(), f"deleted-{uuid.uuid4()}")
    uploaded = upload(delivery.services, delivery.tenant, data, "deleted.jpg")
    asset_id = uploaded.asset.asset_id
    wait_for_status(delivery.services, delivery.tenant, asset_id, 120)
    url = delivery.delivery_url(asset_id, "thumb", JPEG)
    assert delivery.fetch(url).status == 200
    delivery.catalog.DeleteAsset(
        catalog_pb2.DeleteAssetRequest(asset_id=asset_id), metadata=delivery.tenant.metadata
    )
    got = _until(lambda: delivery.fetch(url), lambda f: f.status == 404)
    assert (got.status, got.reason()) == (404, "ASSET_DELETED")


def test_an_asset_not_yet_rendered_says_when_to_retry(delivery: Delivery) -> None:
    # Registered without an original: it stays pending or processing while its render
    # fails and is retried.
    registered = register_directly(delivery.services, delivery.tenant)
    path = delivery_path(delivery.tenant.tenant_id, registered.asset.asset_id, "card", None)
    got = delivery.fetch(delivery.signed(path))
    assert (got.status, got.reason()) == (404, "NOT_READY")
    assert got.headers["Retry-After"] == str(Settings().delivery_retry_after_seconds)
    assert got.headers["Cache-Control"] == "no-store"


def test_a_format_the_preset_does_not_make_is_not_found(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    path = delivery_path(delivery.tenant.tenant_id, asset.asset_id, "zoom", "webp")
    got = delivery.fetch(delivery.signed(path))
    assert (got.status, got.reason()) == (404, "FORMAT_NOT_AVAILABLE")
    assert "Vary" not in got.headers


def test_an_old_version_redirects_to_the_current_url(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    path = delivery_path(delivery.tenant.tenant_id, asset.asset_id, "card", None)
    expires = int(time.time()) + 3600
    old = delivery.fetch(delivery.signed(path, version="0" * 16, expires=expires))
    assert old.status == 302
    location = old.headers["Location"]
    assert location.startswith(path + "?v=") and f"e={expires}" in location
    assert old.headers["Cache-Control"] == f"public, max-age={MAX_AGE}"
    assert old.headers["Vary"] == "Accept"
    current = delivery.fetch(location)
    assert current.status == 200
    assert current.headers["Cache-Control"].endswith("immutable")


# --- what operators see ------------------------------------------------------------------


def test_requests_are_counted_on_the_metrics_port(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    port = delivery.stack.metrics_ports["delivery"]
    name = "imagepipe_delivery_requests_total"
    before = scrape_metric(port, name)
    assert delivery.fetch("/nothing").status == 404
    assert delivery.fetch(delivery.delivery_url(asset.asset_id, "thumb", JPEG)).status == 200
    after = scrape_metric(port, name)
    for labels in ('{route="other",status="404"}', '{route="format",status="200"}'):
        assert after[labels] == before.get(labels, 0.0) + 1, labels


def test_the_s3_adapters_read_ranges(
    running: tuple[Stack, Services, Tenant], asset: common_pb2.Asset
) -> None:
    stack, _, tenant = running
    env = stack.env()
    settings = Settings.model_validate(
        {
            k.removeprefix("IMAGEPIPE_").lower(): v
            for k, v in env.items()
            if k.startswith("IMAGEPIPE_")
        }
    )
    prefix = f"renditions/{tenant.tenant_id}/{asset.asset_id}/zoom."
    client = stack.s3.client()
    (key,) = [
        o.object_name or ""
        for o in client.list_objects(stack.bucket, prefix=prefix, recursive=True)
    ]

    async def read(offset: int, length: int | None, *, reader: bool) -> list[bytes]:
        store = S3ObjectStore(settings)
        try:
            async with aiohttp.ClientSession() as session:
                source = S3Reader(store, session) if reader else store
                chunks = source.iter_chunks(key, 4096, offset=offset, length=length)
                return [piece async for piece in chunks]
        finally:
            await store.close()

    for reader in (False, True):  # the shared store's SDK reads, and delivery's
        whole = b"".join(asyncio.run(read(0, None, reader=reader)))
        window = asyncio.run(read(10_000, 20_000, reader=reader))
        assert b"".join(window) == whole[10_000:30_000]
        assert max(len(piece) for piece in window) <= 4096
        assert b"".join(asyncio.run(read(len(whole) - 10, None, reader=reader))) == whole[-10:]


def test_sigterm_stops_delivery_gracefully(running: tuple[Stack, Services, Tenant]) -> None:
    stack, _, _ = running
    extra = stack.start_service("delivery", instance="sigterm")
    try:
        extra.wait_serving()
        extra.signal(signal.SIGTERM)
        assert extra.process is not None
        code = extra.process.wait(timeout=60)  # a hang guard
    finally:
        extra.stop()
    assert code == 0, extra.tail()
    log = extra.log_file.read_text()
    assert '"event": "delivery shutting down"' in log
    assert log.splitlines()[-1].count('"event": "delivery stopped"') == 1


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _until_true(probe: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + PATIENCE_SECONDS  # a hang guard
    while not probe() and time.monotonic() < deadline:
        time.sleep(0.2)
    return probe()


def test_several_processes_share_the_port_their_metrics_and_a_graceful_stop(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    metrics_port = free_port()
    extra = delivery.stack.start_service(
        "delivery",
        instance="workers",
        IMAGEPIPE_DELIVERY_PROCESSES="2",
        IMAGEPIPE_DELIVERY_METRICS_PORT=str(metrics_port),
    )
    try:
        extra.wait_serving()
        assert extra.process is not None
        supervisor = extra.process.pid
        assert _until_true(lambda: len(_children(supervisor)) == 2)
        workers = _children(supervisor)
        path = urlsplit(delivery.delivery_url(asset.asset_id, "thumb", JPEG))
        url = f"http://{extra.address}{path.path}?{path.query}"
        statuses = [urllib_status(url) for _ in range(20)]  # a connection each
        counted = scrape_metric(metrics_port, "imagepipe_delivery_requests_total")
        # A worker that dies is replaced (connections queued on its socket when it died
        # are reset, as with any process that dies holding a listening socket).
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        assert _until_true(lambda: len(_children(supervisor) - {killed}) == 2)
        replaced = _children(supervisor)
        extra.wait_serving()
        after_kill = [urllib_status(url) for _ in range(10)]
        extra.signal(signal.SIGTERM)
        code = extra.process.wait(timeout=60)  # a hang guard
    finally:
        extra.stop()
    assert statuses == [200] * 20 and after_kill == [200] * 10
    assert counted['{route="format",status="200"}'] == 20, counted  # summed over workers
    assert killed not in replaced and max(workers) in replaced
    log = extra.log_file.read_text()
    assert code == 0, "\n".join(line for line in log.splitlines() if ".access" not in line)
    assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)
    # The supervisor's last line; its workers' before (one may have been still starting).
    assert log.splitlines()[-1].count('"event": "delivery stopped"') == 1


def urllib_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        return int(response.status)


# --- memory ----------------------------------------------------------------------------

CLIENTS = 200
# Streaming holds, per response, one piece read from S3 (64 KiB) and at most about as
# much again queued for the client's socket before aiohttp waits for it to drain:
# 200 x 128 KiB = 25 MiB at worst, plus connection objects. A process that held whole
# objects would grow by 200 x the zoom rendition (megabytes each): hundreds of MiB.
RSS_GROWTH_BOUND_MIB = 40


def _rss_mib(process: ServiceProcess) -> float:
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) / 1024  # the kernel reports kB


async def _download_all(url: str, clients: int) -> list[int]:
    """Every client downloads `url` at once; the bytes each received."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            received = 0
            async with session.get(url) as response:
                assert response.status == 200
                async for piece in response.content.iter_chunked(64 * 1024):
                    received += len(piece)
            return received

        return await asyncio.gather(*(one() for _ in range(clients)))


def test_many_downloads_of_a_large_rendition_are_streamed_in_bounded_memory(
    delivery: Delivery, asset: common_pb2.Asset
) -> None:
    zoom = _rendition(asset, "zoom", JPEG)
    assert zoom.size_bytes > Settings().delivery_cache_max_object_bytes, "it must be streamed"
    process = delivery.stack.start_service("delivery", instance="memory")
    try:
        process.wait_serving()
        path = urlsplit(delivery.delivery_url(asset.asset_id, "zoom", JPEG))
        url = f"http://{process.address}{path.path}?{path.query}"
        asyncio.run(_download_all(url, 10))  # warm: imports, pools, first allocations
        before = _rss_mib(process)
        received = asyncio.run(_download_all(url, CLIENTS))
        after = _rss_mib(process)
    finally:
        process.stop()
    print(
        f"\ndelivery RSS before {before:.1f} MiB, after {CLIENTS} concurrent downloads of "
        f"{zoom.size_bytes / 2**20:.1f} MiB: {after:.1f} MiB (+{after - before:.1f} MiB)"
    )
    assert received == [zoom.size_bytes] * CLIENTS
    assert after - before < RSS_GROWTH_BOUND_MIB
