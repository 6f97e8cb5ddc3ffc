"""Presets: what a rendition is, as the service defaults and each tenant define them.

One definition serves the environment (``IMAGEPIPE_PRESETS``), the catalog (tenant
presets, validated here) and the renderer (the definitions travel in each render
request). A definition's ``version`` is content-addressed, so a changed preset gets a new
version and a redelivered request still names the one it was made with.

Plain pydantic; the conversion to and from protobuf is ``services.shared.preset_wire``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_PRESET_SIDE",
    "MAX_TENANT_PRESETS",
    "PRESET_NAME_PATTERN",
    "ChromaSubsampling",
    "Fit",
    "Gravity",
    "OutputFormat",
    "Preset",
    "preset_version",
]

OutputFormat = Literal["jpeg", "webp", "avif"]
ChromaSubsampling = Literal["4:2:0", "4:4:4"]
Fit = Literal["inside", "cover"]
Gravity = Literal["centre", "entropy", "attention", "focal"]

PRESET_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
MAX_PRESET_SIDE = 8192
MAX_TENANT_PRESETS = 20


class Preset(BaseModel):
    """One kind of rendition.

    ``fit="inside"``: the whole image, as large as fits in max_width x max_height.
    ``fit="cover"``: the box filled exactly, the part kept chosen by ``gravity``. Neither
    ever upscales: an image smaller than the box is cropped to the box's aspect ratio
    at its own scale.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=PRESET_NAME_PATTERN)
    max_width: int = Field(ge=1, le=MAX_PRESET_SIDE)
    max_height: int = Field(ge=1, le=MAX_PRESET_SIDE)
    formats: list[OutputFormat] = Field(
        default_factory=lambda: list[OutputFormat](["jpeg"]), min_length=1
    )
    quality: int = Field(default=85, ge=1, le=100)
    min_ssim: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Small renditions keep full chroma: at 100-400 px, 4:2:0 costs about 2 dB of PSNR
    # for about a quarter fewer bytes.
    chroma_subsampling: ChromaSubsampling = "4:2:0"
    fit: Fit = "inside"
    gravity: Gravity = "centre"

    @property
    def version(self) -> str:
        return preset_version(self)


def preset_version(preset: Preset) -> str:
    """16 hex digits naming the definition: the start of the SHA-256 of its canonical
    JSON (sorted keys, formats in their order, which is the order they are made in)."""
    canonical = json.dumps(preset.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
