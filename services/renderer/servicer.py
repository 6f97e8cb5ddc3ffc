"""RendererService: presets and status. Rendering itself is driven by the broker."""

from __future__ import annotations

from imagepipe.v1 import renderer_pb2 as pb
from imagepipe.v1 import renderer_pb2_grpc as pb_grpc
from services.shared.errors import not_served_yet
from services.shared.imaging.formats import format_from_name
from services.shared.settings import Preset

__all__ = ["RendererServicer"]


def preset_message(preset: Preset) -> pb.Preset:
    return pb.Preset(
        name=preset.name,
        max_width=preset.max_width,
        max_height=preset.max_height,
        formats=[format_from_name(f) for f in preset.formats],  # type: ignore[misc]
        quality=preset.quality,
        min_ssim=preset.min_ssim,
    )


class RendererServicer(pb_grpc.RendererServiceServicer):
    def __init__(self, presets: list[Preset]) -> None:
        self._presets = sorted(presets, key=lambda p: p.max_width * p.max_height, reverse=True)

    async def ListPresets(
        self, request: pb.ListPresetsRequest, context: object
    ) -> pb.ListPresetsResponse:
        return pb.ListPresetsResponse(presets=[preset_message(p) for p in self._presets])

    async def GetRendererStatus(
        self, request: pb.GetRendererStatusRequest, context: object
    ) -> pb.GetRendererStatusResponse:
        raise not_served_yet("GetRendererStatus")
