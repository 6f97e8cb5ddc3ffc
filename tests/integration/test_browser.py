"""Delivery in a real browser: headless Chromium (Debian's) driven by Playwright.

A stack of its own renders `card` and `thumb` in AVIF, WebP and JPEG. A page served by the
test shows one asset three ways - a negotiated `<img>`, a `<picture>` with AVIF/WebP/JPEG
sources, and a `srcset` over two presets - plus an `<img>` whose signature was tampered
with. What is asserted comes from the browser itself (naturalWidth, currentSrc, the
responses it saw) and from the delivery service's own request counter.

The gallery `make run` writes is opened the same way and saved as a screenshot under var/.
"""

from __future__ import annotations

import http.server
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from playwright.sync_api import Browser, Page, Response, sync_playwright

from devstack import ServerMissing, Stack, StackConfig, scrape_metric
from devstack.gallery import (
    WEB_PRESETS_JSON,
    collect_gallery,
    ensure_signing_key,
    write_gallery,
)
from imagepipe.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ingest_pb2_grpc,
    tenant_admin_pb2,
    tenant_admin_pb2_grpc,
)
from tests.helpers import downsized_jpeg, upload_messages

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium dials Google's hosts at start, and this
# machine's closed network refuses them; as root it needs --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FORMATS = {
    "jpeg": common_pb2.IMAGE_FORMAT_JPEG,
    "webp": common_pb2.IMAGE_FORMAT_WEBP,
    "avif": common_pb2.IMAGE_FORMAT_AVIF,
}


@dataclass
class WebStack:
    stack: Stack
    channel: grpc.Channel
    api_key: str
    asset_ids: list[str]

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),)

    def asset(self, asset_id: str) -> common_pb2.Asset:
        stub = catalog_pb2_grpc.CatalogServiceStub(self.channel)
        request = catalog_pb2.GetAssetRequest(asset_id=asset_id)
        return stub.GetAsset(request, metadata=self.metadata, timeout=10).asset

    def url(self, asset_id: str, preset: str, image_format: str | None = None) -> str:
        stub = catalog_pb2_grpc.CatalogServiceStub(self.channel)
        request = catalog_pb2.GetDeliveryUrlRequest(
            asset_id=asset_id,
            preset=preset,
            format=FORMATS[image_format] if image_format else common_pb2.IMAGE_FORMAT_UNSPECIFIED,
        )
        return str(stub.GetDeliveryUrl(request, metadata=self.metadata, timeout=10).url)

    def delivered(self, status: str) -> float:
        """Responses of that status the delivery service has sent on image routes."""
        samples = scrape_metric(
            self.stack.metrics_ports["delivery"], "imagepipe_delivery_requests_total"
        )
        return sum(
            value
            for labels, value in samples.items()
            if f'status="{status}"' in labels and "health" not in labels
        )


def _upload_and_wait(stack: WebStack, data: bytes, filename: str) -> str:
    ingest = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(stack.stack.address("ingest")))
    response = ingest.Upload(upload_messages(data, filename), metadata=stack.metadata, timeout=60)
    watch = catalog_pb2_grpc.CatalogServiceStub(stack.channel).WatchAsset(
        catalog_pb2.WatchAssetRequest(asset_id=response.asset.asset_id),
        metadata=stack.metadata,
        timeout=120,
    )
    for update in watch:
        if update.asset.status == common_pb2.ASSET_STATUS_READY:
            return str(update.asset.asset_id)
        assert update.asset.status != common_pb2.ASSET_STATUS_FAILED, update.asset
    raise AssertionError("WatchAsset ended before the asset was ready")


@pytest.fixture(scope="module")
def web_stack() -> Iterator[WebStack]:
    work_dir = Path(tempfile.mkdtemp(prefix="imagepipe-web-"))
    config = StackConfig.from_env(work_dir, extra_env={"IMAGEPIPE_PRESETS": WEB_PRESETS_JSON})
    try:
        with Stack(config).running() as stack:
            channel = grpc.insecure_channel(stack.address("catalog"))
            created = tenant_admin_pb2_grpc.TenantAdminServiceStub(channel).CreateTenant(
                tenant_admin_pb2.CreateTenantRequest(name="web"),
                metadata=(("authorization", f"Bearer {stack.admin_key}"),),
                timeout=10,
            )
            web = WebStack(stack, channel, created.secret_key, [])
            ensure_signing_key(channel, created.secret_key)
            photos = [
                (
                    "jpeg_progressive_portrait.jpg",
                    downsized_jpeg(CORPUS / "jpeg_progressive_portrait.jpg", (800, 1200)),
                ),
                (
                    "photo_craft-beer_6000x4000.jpg",
                    downsized_jpeg(CORPUS / "photo_craft-beer_6000x4000.jpg", (1500, 1000)),
                ),
                # As a camera wrote it: stored sideways with an EXIF orientation to apply.
                ("orient_Landscape_6.jpg", (CORPUS / "orient_Landscape_6.jpg").read_bytes()),
            ]
            for name, data in photos:
                web.asset_ids.append(_upload_and_wait(web, data, name))
            yield web
            channel.close()
    except ServerMissing as error:
        pytest.fail(str(error), pytrace=False)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class _Pages(http.server.BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path, "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def page_server() -> Iterator[tuple[str, dict[str, str]]]:
    """An HTTP server on loopback for the test's pages: (base URL, path -> HTML)."""
    pages: dict[str, str] = {}
    handler = type("Pages", (_Pages,), {"pages": pages})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


def _tampered(url: str) -> str:
    """The URL with its signature's last character changed."""
    head, signature = url.rsplit("&s=", 1)
    last = "A" if signature[-1] != "A" else "B"
    return f"{head}&s={signature[:-1]}{last}"


def _image_state(page: Page, element_id: str) -> dict[str, object]:
    state: dict[str, object] = page.eval_on_selector(
        f"#{element_id}",
        "img => ({complete: img.complete, naturalWidth: img.naturalWidth,"
        " naturalHeight: img.naturalHeight, currentSrc: img.currentSrc})",
    )
    return state


def _response(page: Page, responses: dict[str, Response], url: str) -> Response:
    """The browser's response for `url`; events reach Python after the page's load event
    may have fired, so give them a moment."""
    for _ in range(100):
        if url in responses:
            return responses[url]
        page.wait_for_timeout(50)
    raise AssertionError(f"the browser never answered {url}; saw {sorted(responses)}")


def _renditions(asset: common_pb2.Asset, preset: str) -> dict[str, common_pb2.Rendition]:
    names = {v: k for k, v in FORMATS.items()}
    return {names[r.format]: r for r in asset.renditions if r.preset == preset}


def test_one_asset_three_ways_in_chromium(
    web_stack: WebStack, browser: Browser, page_server: tuple[str, dict[str, str]]
) -> None:
    asset_id = web_stack.asset_ids[1]
    asset = web_stack.asset(asset_id)
    card = _renditions(asset, "card")
    thumb = _renditions(asset, "thumb")
    assert set(card) == {"avif", "webp", "jpeg"}, "the web stack renders card in three formats"
    negotiated = web_stack.url(asset_id, "card")
    by_format = {fmt: web_stack.url(asset_id, "card", fmt) for fmt in FORMATS}
    thumb_jpeg = web_stack.url(asset_id, "thumb", "jpeg")
    tampered = _tampered(web_stack.url(asset_id, "thumb"))
    tampered_cors = _tampered(web_stack.url(asset_id, "thumb", "webp"))
    refused_before = web_stack.delivered("403")
    srcset = f"{thumb_jpeg} {thumb['jpeg'].width}w, {by_format['jpeg']} {card['jpeg'].width}w"
    base, pages = page_server
    pages["/three-ways"] = f"""<!doctype html><html><body>
<img id="negotiated" src="{negotiated}">
<picture>
  <source type="image/avif" srcset="{by_format["avif"]}">
  <source type="image/webp" srcset="{by_format["webp"]}">
  <img id="picture" src="{by_format["jpeg"]}">
</picture>
<img id="srcset" srcset="{srcset}" sizes="{card["jpeg"].width}px" src="{thumb_jpeg}">
<img id="tampered" src="{tampered}">
<img id="tampered-cors" crossorigin="anonymous" src="{tampered_cors}">
</body></html>"""
    context = browser.new_context(device_scale_factor=1)
    page = context.new_page()
    responses: dict[str, Response] = {}

    def seen(response: Response) -> None:
        responses.setdefault(response.url, response)

    page.on("response", seen)

    page.goto(f"{base}/three-ways", wait_until="load")

    for element in ("negotiated", "picture", "srcset"):
        state = _image_state(page, element)
        assert state["complete"] and state["naturalWidth"] == card["jpeg"].width, (element, state)
    # The <picture> took its first source Chromium decodes: AVIF.
    assert _image_state(page, "picture")["currentSrc"] == by_format["avif"]
    # The srcset at 1x over a 400 px slot took the card, not the thumb.
    assert _image_state(page, "srcset")["currentSrc"] == by_format["jpeg"]
    # Negotiated with Chromium's own Accept header, AVIF exists: AVIF it is.
    answer = _response(page, responses, negotiated)
    assert answer.status == 200
    assert answer.header_value("content-type") == "image/avif"
    assert answer.header_value("vary") == "Accept"
    assert "immutable" in (answer.header_value("cache-control") or "")
    assert "image/avif" in (answer.request.header_value("accept") or "")
    # A tampered signature: a broken image, answered 403. Chromium's opaque-response
    # blocking hides the status of a failed no-cors image from the page (and from
    # Playwright); a CORS image request (crossorigin, which delivery allows from any
    # origin) shows it.
    for element in ("tampered", "tampered-cors"):
        broken = _image_state(page, element)
        assert broken["complete"] and broken["naturalWidth"] == 0, (element, broken)
    assert _response(page, responses, tampered_cors).status == 403
    assert web_stack.delivered("403") == refused_before + 2

    # A reload is served from the browser's cache or revalidated (304): the delivery
    # service sends no image body again.
    bodies_before = web_stack.delivered("200") + web_stack.delivered("206")
    page.reload(wait_until="load")
    for element in ("negotiated", "picture", "srcset"):
        assert _image_state(page, element)["naturalWidth"] == card["jpeg"].width
    assert web_stack.delivered("200") + web_stack.delivered("206") == bodies_before
    context.close()


def test_gallery_opens_in_chromium_and_is_saved_as_a_screenshot(
    web_stack: WebStack, browser: Browser
) -> None:
    with grpc.insecure_channel(web_stack.stack.address("quality")) as quality:
        entries = collect_gallery(
            web_stack.channel, quality, web_stack.api_key, web_stack.asset_ids
        )
    gallery = write_gallery(
        Path(tempfile.mkdtemp(prefix="imagepipe-gallery-")) / "gallery.html", entries
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(gallery.as_uri(), wait_until="load")
    heroes = page.eval_on_selector_all(
        "figure img.full", "imgs => imgs.map(i => [i.complete, i.naturalWidth])"
    )
    assert len(heroes) == len(web_stack.asset_ids)
    assert all(complete and width > 0 for complete, width in heroes), heroes
    placeholders = page.eval_on_selector_all(
        "figure img.placeholder", "imgs => imgs.map(i => i.naturalWidth)"
    )
    assert len(placeholders) == len(web_stack.asset_ids) and all(placeholders)
    # Let the fade-in finish before the picture is taken.
    page.wait_for_function(
        f"document.querySelectorAll('figure img.full.loaded').length === {len(web_stack.asset_ids)}"
    )
    page.wait_for_timeout(600)
    shot = REPO / "var" / "gallery.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
    shutil.rmtree(gallery.parent, ignore_errors=True)
