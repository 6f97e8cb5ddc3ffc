"""The demo's verdict: every upload ready with every preset rendered well, no refusal."""

from __future__ import annotations

from typing import Any

from devstack.demo import PRESET_ORDER, _results_table
from imagepipe.v1 import common_pb2, quality_pb2


def _upload(asset_id: str, status: str = "ready") -> dict[str, Any]:
    renditions = [{"preset": p, "width": 10, "height": 10} for p in PRESET_ORDER]
    return {
        "file": f"/x/{asset_id}.jpg",
        "asset_id": asset_id,
        "status": status,
        "renditions": renditions,
    }


def _scores(ssim: float = 0.99) -> quality_pb2.CompareResponse:
    scores = common_pb2.QualityScores(psnr_db=40.0, ssim=ssim)
    return quality_pb2.CompareResponse(
        renditions=[quality_pb2.RenditionQuality(preset=p, scores=scores) for p in PRESET_ORDER]
    )


def test_all_ready_and_good_passes_with_a_row_per_upload() -> None:
    table, ok = _results_table([_upload("a"), _upload("b")], {"a": _scores(), "b": _scores()})
    assert ok and table.row_count == 2


def test_a_refusal_a_poor_rendition_or_an_unfinished_asset_fails() -> None:
    refused = {"file": "/x/bad.jpg", "error": {"code": "INVALID_ARGUMENT", "message": "no"}}
    assert not _results_table([_upload("a"), refused], {"a": _scores()})[1]
    assert not _results_table([_upload("a")], {"a": _scores(ssim=0.5)})[1]
    assert not _results_table([_upload("a", status="processing")], {"a": _scores()})[1]
    assert not _results_table([_upload("a")], {})[1], "no scores: not shown good"
