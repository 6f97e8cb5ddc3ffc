"""Quality targets (R9.2): bytes and SSIM at the fixed q85 beside an SSIM target per preset.

For each corpus photo the renderer's own function, `render_presets`, makes the default
presets (zoom, card, thumb) three ways: at the fixed JPEG quality 85 (the default), and
with `min_ssim` 0.95 and 0.98, where the renderer bisects the quality for the smallest
one whose SSIM reaches the target. SSIM is the renderer's: on luma, against the
preset's resized image before encoding (the pixels the encoder got). The q85
renditions carry no scores (a fixed quality measures nothing), so theirs are measured
here the same way, from the same decode and resize chain.

Then the time it costs: median ms per photo of `render_presets` for each setting,
single-threaded, settings interleaved so machine drift hits all alike.

    .venv/bin/python -m bench.quality_target [--repeat 5]

Last line: `summary: bytes_q85=… bytes_ssim095=… saved_pct=… min_ssim_seen=…` (the
lowest SSIM of any rendition made for 0.95), then the same for 0.98 and the extra ms.
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.common import corpus_photos, median, print_summary
from services.renderer.render import decode_for_presets, fit_preset, render_presets
from services.shared.imaging.decode import register_decoders
from services.shared.imaging.metrics import luma, ssim
from services.shared.presets import Preset
from services.shared.settings import Settings

SETTINGS = Settings()
TARGETS = (0.95, 0.98)
FIXED = 0.0  # min_ssim 0: the preset's fixed quality (85)


@dataclass(frozen=True)
class Made:
    """One rendition of one photo under one setting."""

    quality: int
    size: int
    ssim: float


def presets_for(target: float) -> list[Preset]:
    return [p.model_copy(update={"min_ssim": target}) for p in SETTINGS.presets]


def fixed_ssim(data: bytes, rendered: dict[str, bytes]) -> dict[str, float]:
    """SSIM of each fixed-quality rendition against the pixels it was encoded from."""
    ordered, first, full = decode_for_presets(data, SETTINGS.presets, SETTINGS.max_pixels)
    made = [first]
    scores = {}
    for preset in ordered:
        current = fit_preset(made, full, preset)
        made.append(current)
        with Image.open(io.BytesIO(rendered[preset.name])) as image:
            decoded = np.asarray(image.convert("RGB"))
        scores[preset.name] = ssim(luma(np.asarray(current)), luma(decoded))
    return scores


def make(photo: Path) -> dict[float, dict[str, Made]]:
    """Per setting (0 for q85), per preset: quality, bytes, SSIM."""
    data = photo.read_bytes()
    results: dict[float, dict[str, Made]] = {}
    for target in (FIXED, *TARGETS):
        rendered = render_presets(data, presets_for(target), SETTINGS.max_pixels).renditions
        if target == FIXED:
            measured = fixed_ssim(data, {r.preset: r.data for r in rendered})
        else:
            measured = {r.preset: r.scores.ssim for r in rendered if r.scores is not None}
        results[target] = {
            r.preset: Made(r.quality, len(r.data), measured[r.preset]) for r in rendered
        }
    return results


def time_settings(photos: list[Path], repeat: int) -> dict[tuple[str, float], float]:
    """Median ms of render_presets per (photo, setting), the first round discarded."""
    blobs = {photo.name: photo.read_bytes() for photo in photos}
    samples: dict[tuple[str, float], list[float]] = {}
    for round_number in range(repeat + 1):
        for name, data in blobs.items():
            for target in (FIXED, *TARGETS):
                presets = presets_for(target)
                started = time.perf_counter()
                render_presets(data, presets, SETTINGS.max_pixels)
                elapsed = (time.perf_counter() - started) * 1000
                if round_number:
                    samples.setdefault((name, target), []).append(elapsed)
    return {key: median(values) for key, values in samples.items()}


def _kib(size: int) -> str:
    return f"{size / 1024:.1f}"


def _saved(before: int, after: int) -> str:
    return f"{100 * (before - after) / before:+.1f}%"


def main(repeat: int) -> None:
    register_decoders()
    console = Console(width=160)
    photos = corpus_photos()
    names = [p.name for p in sorted(SETTINGS.presets, key=lambda p: -p.max_width * p.max_height)]
    made = {photo.name: make(photo) for photo in photos}

    detail = Table(
        title="Each rendition: fixed q85 beside the smallest quality reaching an SSIM target "
        "(KiB; SSIM on luma against the resized image)"
    )
    for column in ("photo", "preset", "q85 KiB", "q85 SSIM"):
        detail.add_column(column, justify="left" if column in ("photo", "preset") else "right")
    for target in TARGETS:
        for column in ("q", "KiB", "SSIM", "saved"):
            detail.add_column(f"{target:g} {column}", justify="right")
    for photo in photos:
        for preset in names:
            fixed = made[photo.name][FIXED][preset]
            row = [photo.name, preset, _kib(fixed.size), f"{fixed.ssim:.4f}"]
            for target in TARGETS:
                chosen = made[photo.name][target][preset]
                style = "" if chosen.ssim >= target else "[red]"
                row += [
                    str(chosen.quality),
                    _kib(chosen.size),
                    f"{style}{chosen.ssim:.4f}",
                    _saved(fixed.size, chosen.size),
                ]
            detail.add_row(*row)
    console.print(detail)

    def total(target: float, preset: str | None = None) -> int:
        return sum(
            m.size
            for per_photo in made.values()
            for name, m in per_photo[target].items()
            if preset is None or name == preset
        )

    def lowest(target: float, preset: str | None = None) -> float:
        return min(
            m.ssim
            for per_photo in made.values()
            for name, m in per_photo[target].items()
            if preset is None or name == preset
        )

    per_preset = Table(title=f"Per preset, over the {len(photos)} photos (KiB; lowest SSIM seen)")
    per_preset.add_column("preset")
    per_preset.add_column("q85 KiB", justify="right")
    per_preset.add_column("q85 min SSIM", justify="right")
    for target in TARGETS:
        for column in ("KiB", "min SSIM", "saved"):
            per_preset.add_column(f"{target:g} {column}", justify="right")
    for name in [*names, None]:
        row = [name or "all", _kib(total(FIXED, name)), f"{lowest(FIXED, name):.4f}"]
        for target in TARGETS:
            row += [
                _kib(total(target, name)),
                f"{lowest(target, name):.4f}",
                _saved(total(FIXED, name), total(target, name)),
            ]
        per_preset.add_row(*row, style="bold" if name is None else None)
    console.print(per_preset)

    timings = time_settings(photos, repeat)
    cost = Table(
        title=f"render_presets ms per photo (median of {repeat}, single thread): "
        "what the quality search costs"
    )
    cost.add_column("photo")
    cost.add_column("q85 ms", justify="right")
    for target in TARGETS:
        cost.add_column(f"{target:g} ms", justify="right")
        cost.add_column(f"{target:g} extra", justify="right")
    for photo in photos:
        base = timings[(photo.name, FIXED)]
        row = [photo.name, f"{base:.0f}"]
        for target in TARGETS:
            spent = timings[(photo.name, target)]
            row += [f"{spent:.0f}", f"+{spent - base:.0f} ({spent / base:.1f}x)"]
        cost.add_row(*row)
    console.print(cost)

    def extra_ms(target: float) -> float:
        return median([timings[(p.name, target)] - timings[(p.name, FIXED)] for p in photos])

    bytes_q85 = total(FIXED)
    summary: dict[str, float | int | str] = {
        "bytes_q85": bytes_q85,
        "bytes_ssim095": total(0.95),
        "saved_pct": 100 * (bytes_q85 - total(0.95)) / bytes_q85,
        "min_ssim_seen": f"{lowest(0.95):.4f}",
        "bytes_ssim098": total(0.98),
        "saved_pct_098": 100 * (bytes_q85 - total(0.98)) / bytes_q85,
        "min_ssim_seen_098": f"{lowest(0.98):.4f}",
        "render_ms_q85": median([timings[(p.name, FIXED)] for p in photos]),
        "extra_render_ms_095": extra_ms(0.95),
        "extra_render_ms_098": extra_ms(0.98),
    }
    print_summary(summary)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per photo and setting")
    arguments = parser.parse_args()
    main(arguments.repeat)
