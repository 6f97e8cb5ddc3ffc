"""The gallery page: what each entry shows, escaped, with its placeholder decoded."""

from __future__ import annotations

import base64
import io

from PIL import Image

from devstack.gallery import gallery_asset, render_gallery, thumbhash_data_url
from imagepipe.v1 import common_pb2
from services.shared.imaging.placeholders import thumbhash_encode


def _asset() -> common_pb2.Asset:
    thumbhash = thumbhash_encode(Image.new("RGB", (64, 48), (200, 30, 30)))
    asset = common_pb2.Asset(
        asset_id="a1",
        filename='<b>"x".jpg',
        width=640,
        height=480,
        placeholder=common_pb2.Placeholder(
            thumbhash=base64.b64encode(thumbhash).decode(), dominant_color="#c81e1e"
        ),
    )
    for preset, width in (("card", 400), ("thumb", 100)):
        rendition = asset.renditions.add(
            preset=preset, format=common_pb2.IMAGE_FORMAT_JPEG, width=width, height=width * 3 // 4
        )
        rendition.size_bytes = 12_345
        rendition.scores.psnr_db = 41.25
        rendition.scores.ssim = 0.98765
    return asset


def test_placeholder_is_a_png_data_url_of_the_thumbhash() -> None:
    url = thumbhash_data_url(_asset().placeholder.thumbhash)
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        assert max(image.size) == 32
        red, green, _blue, _alpha = image.convert("RGBA").getpixel((10, 10))  # type: ignore[misc]
        assert red > 150 and green < 80
    assert thumbhash_data_url("") == ""


def test_entry_lists_each_rendition_with_its_url_and_scores() -> None:
    urls = {
        ("card", None): "https://img/v1/t/a1/card?v=1&k=2&s=3",
        ("card", "jpeg"): "https://img/v1/t/a1/card.jpg?v=1",
        ("thumb", "jpeg"): "https://img/v1/t/a1/thumb.jpg?v=1",
    }
    entry = gallery_asset(_asset(), urls)
    assert entry.hero_url == urls[("card", None)]
    assert [(r.preset, r.width, r.psnr, r.ssim) for r in entry.renditions] == [
        ("card", 400, "41.2 dB", "0.9877"),
        ("thumb", 100, "41.2 dB", "0.9877"),
    ]
    page = render_gallery([entry])
    assert "&lt;b&gt;&quot;x&quot;.jpg" in page and '<b>"x"' not in page
    assert "https://img/v1/t/a1/card?v=1&amp;k=2&amp;s=3" in page
    assert "12.1 KiB" in page and "#c81e1e" in page


def test_renditions_without_a_url_are_left_out() -> None:
    entry = gallery_asset(_asset(), {("thumb", "jpeg"): "u"})
    assert [r.preset for r in entry.renditions] == ["thumb"] and entry.hero_url == ""


def test_scores_the_quality_service_measured_fill_in_for_unscored_renditions() -> None:
    asset = _asset()
    asset.renditions[1].ClearField("scores")
    measured = {("thumb", "jpeg"): common_pb2.QualityScores(psnr_infinite=True, ssim=1.0)}
    entry = gallery_asset(asset, {("card", "jpeg"): "c", ("thumb", "jpeg"): "t"}, measured)
    assert [(r.psnr, r.ssim) for r in entry.renditions] == [
        ("41.2 dB", "0.9877"),
        ("identical", "1.0000"),
    ]
