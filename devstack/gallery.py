"""The gallery `make run` writes: each demo upload as a page shows it through delivery.

Each image paints its dominant colour and its ThumbHash (decoded here to a small PNG data
URL) at once, then its `card` rendition through a negotiated delivery URL fades in over
them; under it every rendition with its size, bytes, PSNR and SSIM, each linked by its own
delivery URL. The page is one static file with no script but an onload class switch.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, quality_pb2, quality_pb2_grpc
from services.shared.imaging.placeholders import thumbhash_decode

__all__ = [
    "WEB_PRESETS_JSON",
    "GalleryAsset",
    "GalleryRendition",
    "collect_gallery",
    "ensure_signing_key",
    "gallery_asset",
    "render_gallery",
    "thumbhash_data_url",
    "write_gallery",
]

HERO_PRESET = "card"
# The presets a web page wants, for `make run` and the browser tests: the small ones in
# AVIF, WebP and JPEG (negotiation and <picture> have something to choose from).
WEB_PRESETS_JSON = json.dumps(
    [
        {"name": "zoom", "max_width": 1200, "max_height": 1200, "formats": ["jpeg"]},
        {
            "name": "card",
            "max_width": 400,
            "max_height": 400,
            "formats": ["avif", "webp", "jpeg"],
            "chroma_subsampling": "4:4:4",
        },
        {
            "name": "thumb",
            "max_width": 100,
            "max_height": 100,
            "formats": ["avif", "webp", "jpeg"],
            "chroma_subsampling": "4:4:4",
        },
    ]
)
FORMAT_NAMES = {
    common_pb2.IMAGE_FORMAT_JPEG: "jpeg",
    common_pb2.IMAGE_FORMAT_WEBP: "webp",
    common_pb2.IMAGE_FORMAT_AVIF: "avif",
}


@dataclass(frozen=True)
class GalleryRendition:
    preset: str
    format: str
    width: int
    height: int
    size_bytes: int
    psnr: str  # already formatted: "41.2 dB", "identical" or "-"
    ssim: str
    url: str


@dataclass(frozen=True)
class GalleryAsset:
    asset_id: str
    filename: str
    width: int
    height: int
    dominant_color: str
    placeholder_url: str  # a data: URL, or "" when the asset has no ThumbHash
    hero_url: str  # negotiated delivery URL of the hero preset ("" when it is missing)
    renditions: tuple[GalleryRendition, ...]


def thumbhash_data_url(thumbhash_b64: str) -> str:
    """The ThumbHash as a PNG data URL (32 px on its longer side; the browser scales it)."""
    if not thumbhash_b64:
        return ""
    image = thumbhash_decode(base64.b64decode(thumbhash_b64))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _scores(scores: common_pb2.QualityScores | None) -> tuple[str, str]:
    if scores is None:
        return "-", "-"
    psnr = "identical" if scores.psnr_infinite else f"{scores.psnr_db:.1f} dB"
    return psnr, f"{scores.ssim:.4f}"


def gallery_asset(
    asset: common_pb2.Asset,
    urls: Mapping[tuple[str, str | None], str],
    measured: Mapping[tuple[str, str], common_pb2.QualityScores] | None = None,
) -> GalleryAsset:
    """An asset as the gallery shows it; `urls` maps (preset, format or None for the
    negotiated URL) to a delivery URL; `measured`, (preset, format) to the quality
    service's scores, for renditions whose preset recorded none at render time."""
    renditions = []
    for rendition in sorted(asset.renditions, key=lambda r: (-r.width, r.preset, r.format)):
        image_format = FORMAT_NAMES.get(rendition.format)
        url = urls.get((rendition.preset, image_format))
        if image_format is None or url is None:
            continue
        scores = rendition.scores if rendition.HasField("scores") else None
        psnr, ssim = _scores(scores or (measured or {}).get((rendition.preset, image_format)))
        renditions.append(
            GalleryRendition(
                preset=rendition.preset,
                format=image_format,
                width=rendition.width,
                height=rendition.height,
                size_bytes=rendition.size_bytes,
                psnr=psnr,
                ssim=ssim,
                url=url,
            )
        )
    return GalleryAsset(
        asset_id=asset.asset_id,
        filename=asset.filename or asset.asset_id,
        width=asset.width,
        height=asset.height,
        dominant_color=asset.placeholder.dominant_color or "#808080",
        placeholder_url=thumbhash_data_url(asset.placeholder.thumbhash),
        hero_url=urls.get((HERO_PRESET, None), ""),
        renditions=tuple(renditions),
    )


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; background: #f4f4f2; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.lead { margin: 0 0 20px; color: #555; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 20px; }
article { background: #fff; border-radius: 8px; overflow: hidden; box-shadow: 0 1px 3px #0002; }
figure { position: relative; margin: 0; width: 100%; overflow: hidden; }
figure img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; }
figure img.full { opacity: 0; transition: opacity .4s; }
figure img.full.loaded { opacity: 1; }
.meta { padding: 10px 12px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: -1px; border: 1px solid #0003; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { text-align: right; padding: 2px 6px; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
code { font-size: 12px; }
"""


def _rendition_row(rendition: GalleryRendition) -> str:
    return (
        "<tr>"
        f'<td><a href="{html.escape(rendition.url)}">{html.escape(rendition.preset)}'
        f" {html.escape(rendition.format)}</a></td>"
        f"<td>{rendition.width}x{rendition.height}</td>"
        f"<td>{rendition.size_bytes / 1024:.1f} KiB</td>"
        f"<td>{html.escape(rendition.psnr)}</td>"
        f"<td>{html.escape(rendition.ssim)}</td>"
        "</tr>"
    )


def _article(asset: GalleryAsset) -> str:
    colour = html.escape(asset.dominant_color)
    ratio = f"{max(asset.width, 1)} / {max(asset.height, 1)}"
    placeholder = (
        f'<img class="placeholder" alt="" src="{asset.placeholder_url}">'
        if asset.placeholder_url
        else ""
    )
    hero = (
        f'<img class="full" alt="{html.escape(asset.filename)}" '
        f'src="{html.escape(asset.hero_url)}" onload="this.classList.add(\'loaded\')">'
        if asset.hero_url
        else ""
    )
    rows = "".join(_rendition_row(r) for r in asset.renditions)
    return (
        f'<article data-asset="{html.escape(asset.asset_id)}">'
        f'<figure style="background:{colour}; aspect-ratio:{ratio}">{placeholder}{hero}</figure>'
        '<div class="meta">'
        f"<strong>{html.escape(asset.filename)}</strong> "
        f"{asset.width}x{asset.height} "
        f'<span class="swatch" style="background:{colour}"></span> <code>{colour}</code>'
        "<table><tr><th>rendition</th><th>size</th><th>bytes</th><th>PSNR</th><th>SSIM</th>"
        f"</tr>{rows}</table>"
        "</div></article>"
    )


def render_gallery(assets: Sequence[GalleryAsset], *, title: str = "imagepipe gallery") -> str:
    articles = "\n".join(_article(asset) for asset in assets)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        '<p class="lead">Each picture paints its dominant colour and ThumbHash first, then '
        f"its <code>{HERO_PRESET}</code> rendition through a negotiated delivery URL. "
        "Every rendition is linked by its own URL.</p>"
        f"<main>\n{articles}\n</main></body></html>\n"
    )


def write_gallery(path: Path, assets: Sequence[GalleryAsset], *, title: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_gallery(assets, title=title or "imagepipe gallery"), encoding="utf-8")
    return path


def _signed_in(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


def ensure_signing_key(channel: grpc.Channel, api_key: str) -> None:
    """Give the tenant an active signing key unless it has one (GetDeliveryUrl signs with
    the newest; the secret is not needed here, the server signs)."""
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    keys = stub.ListSigningKeys(
        catalog_pb2.ListSigningKeysRequest(), metadata=_signed_in(api_key), timeout=10
    ).signing_keys
    if not any(not key.HasField("revoke_time") for key in keys):
        stub.CreateSigningKey(
            catalog_pb2.CreateSigningKeyRequest(label="gallery"),
            metadata=_signed_in(api_key),
            timeout=10,
        )


def _measured(
    quality: grpc.Channel, api_key: str, asset_id: str
) -> dict[tuple[str, str], common_pb2.QualityScores]:
    """Every rendition's PSNR and SSIM against the original, from the quality service."""
    compared = quality_pb2_grpc.QualityServiceStub(quality).Compare(
        quality_pb2.CompareRequest(asset_id=asset_id), metadata=_signed_in(api_key), timeout=120
    )
    return {
        (r.preset, FORMAT_NAMES[r.format]): r.scores
        for r in compared.renditions
        if r.format in FORMAT_NAMES
    }


def collect_gallery(
    channel: grpc.Channel, quality: grpc.Channel, api_key: str, asset_ids: Sequence[str]
) -> list[GalleryAsset]:
    """The gallery entries of a tenant's assets: delivery URLs the catalog signs, scores
    the quality service measures."""
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    metadata = _signed_in(api_key)
    ensure_signing_key(channel, api_key)
    entries = []
    for asset_id in asset_ids:
        asset = stub.GetAsset(
            catalog_pb2.GetAssetRequest(asset_id=asset_id), metadata=metadata, timeout=10
        ).asset
        wanted = {(r.preset, r.format) for r in asset.renditions if r.format in FORMAT_NAMES}
        wanted |= {(r.preset, common_pb2.IMAGE_FORMAT_UNSPECIFIED) for r in asset.renditions}
        urls: dict[tuple[str, str | None], str] = {}
        for preset, image_format in sorted(wanted):
            response = stub.GetDeliveryUrl(
                catalog_pb2.GetDeliveryUrlRequest(
                    asset_id=asset_id, preset=preset, format=image_format
                ),
                metadata=metadata,
                timeout=10,
            )
            urls[(preset, FORMAT_NAMES.get(image_format))] = response.url
        entries.append(gallery_asset(asset, urls, _measured(quality, api_key, asset_id)))
    return entries
