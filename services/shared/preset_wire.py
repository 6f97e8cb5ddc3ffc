"""Presets on the wire: ``services.shared.presets.Preset`` to and from ``imagepipe.v1.Preset``.

The enums' zero values mean the defaults (inside, centre, 4:2:0), so a message from an
older sender reads as the preset it meant.
"""

from __future__ import annotations

from collections.abc import Iterable

from imagepipe.v1 import common_pb2, renderer_pb2
from services.shared.imaging.formats import format_from_name, format_name
from services.shared.presets import ChromaSubsampling, Fit, Gravity, Preset

__all__ = ["preset_from_message", "preset_message", "preset_messages", "presets_from_messages"]

_FIT: dict[Fit, int] = {"inside": common_pb2.FIT_INSIDE, "cover": common_pb2.FIT_COVER}
_GRAVITY: dict[Gravity, int] = {
    "centre": common_pb2.GRAVITY_CENTRE,
    "entropy": common_pb2.GRAVITY_ENTROPY,
    "attention": common_pb2.GRAVITY_ATTENTION,
    "focal": common_pb2.GRAVITY_FOCAL,
}
_CHROMA: dict[ChromaSubsampling, int] = {
    "4:2:0": common_pb2.CHROMA_SUBSAMPLING_420,
    "4:4:4": common_pb2.CHROMA_SUBSAMPLING_444,
}
_FIT_NAMES = {wire: name for name, wire in _FIT.items()} | {common_pb2.FIT_UNSPECIFIED: "inside"}
_GRAVITY_NAMES = {wire: name for name, wire in _GRAVITY.items()} | {
    common_pb2.GRAVITY_UNSPECIFIED: "centre"
}
_CHROMA_NAMES = {wire: name for name, wire in _CHROMA.items()} | {
    common_pb2.CHROMA_SUBSAMPLING_UNSPECIFIED: "4:2:0"
}


def preset_message(preset: Preset) -> renderer_pb2.Preset:
    return renderer_pb2.Preset(
        name=preset.name,
        max_width=preset.max_width,
        max_height=preset.max_height,
        formats=[format_from_name(f) for f in preset.formats],  # type: ignore[misc]
        quality=preset.quality,
        min_ssim=preset.min_ssim,
        fit=_FIT[preset.fit],  # type: ignore[arg-type]
        gravity=_GRAVITY[preset.gravity],  # type: ignore[arg-type]
        chroma_subsampling=_CHROMA[preset.chroma_subsampling],  # type: ignore[arg-type]
        version=preset.version,
    )


def preset_messages(presets: Iterable[Preset]) -> list[renderer_pb2.Preset]:
    return [preset_message(preset) for preset in presets]


def preset_from_message(message: renderer_pb2.Preset) -> Preset:
    """The preset a message defines (its `version` ignored: it is recomputed). Raises
    pydantic's ValidationError or KeyError (an enum value this build does not know) for
    a definition that is not valid; callers facing users turn those into
    INVALID_ARGUMENT."""
    return Preset(
        name=message.name,
        max_width=message.max_width,
        max_height=message.max_height,
        formats=[format_name(f) for f in message.formats],  # type: ignore[misc]
        quality=message.quality or 85,
        min_ssim=message.min_ssim,
        fit=_FIT_NAMES[message.fit],
        gravity=_GRAVITY_NAMES[message.gravity],
        chroma_subsampling=_CHROMA_NAMES[message.chroma_subsampling],
    )


def presets_from_messages(messages: Iterable[renderer_pb2.Preset]) -> list[Preset]:
    return [preset_from_message(message) for message in messages]
