"""Rendering speed: imagepipe's render function beside naive Pillow, pyvips and the floor.

The job is the renderer's: bytes already in memory, decode once, orient, make the
default presets (zoom, card, thumb) and encode each as JPEG q85, progressive,
optimised (the encoding R4.1 asks for; every method uses it, so only the pixel
work differs). Measured single-threaded, in one run, on the corpus photos:

- imagepipe: `services.renderer.render.render_presets`, what the renderer runs.
- naive Pillow: full decode, orientation, each preset resized with Lanczos from
  the full-size image.
- pyvips chained: `thumbnail_buffer` (shrink-on-load) to zoom, `copy_memory`,
  then card and thumb each from the previous one; libvips' own threads limited
  to one and its operation cache off. (imagepipe itself uses libvips only to
  resample, see services/renderer/resample.py.)
- scaled decode: the JPEG decoded at the DCT scale imagepipe picks, nothing else:
  the floor no renderer that decodes the file can go under.

Then throughput: the photos rendered over and over by a pool of 1 and of 2
worker processes (images/s), beside pyvips in the same pools. Peak RSS per method
comes from a fresh process each.

    .venv/bin/python -m bench.render [--repeat 7] [--rounds 12]

Last line: `summary: render_ms_24mp=… naive_ratio=… pyvips_ratio=… floor_ratio=…
images_per_s_1=… images_per_s_2=… scaling_2=…`.
"""

from __future__ import annotations

import argparse
import importlib
import io
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# libvips runs a thread pool per operation by default; the comparison is single-threaded.
os.environ.setdefault("VIPS_CONCURRENCY", "1")

from PIL import Image, ImageOps
from rich.console import Console
from rich.table import Table

from bench.common import corpus_photos, median, peak_rss_mib, print_summary
from services.renderer.render import encode, render_presets
from services.shared.imaging.normalize import fit_within
from services.shared.sandbox import prepare_worker
from services.shared.settings import Settings

SETTINGS = Settings()
PRESETS = sorted(SETTINGS.presets, key=lambda p: p.max_width * p.max_height, reverse=True)
Render = Callable[[bytes], object]


def imagepipe(data: bytes) -> object:
    return render_presets(data, PRESETS, SETTINGS.max_pixels)


def naive_pillow(data: bytes) -> object:
    with Image.open(io.BytesIO(data)) as image:
        full = ImageOps.exif_transpose(image.convert("RGB"))
    outputs = []
    for preset in PRESETS:
        size = fit_within(*full.size, preset.max_width, preset.max_height)
        small = full.resize(size, Image.Resampling.LANCZOS)
        outputs.append(encode(small, "jpeg", preset.quality, preset.chroma_subsampling))
    return outputs


def scaled_decode(data: bytes) -> object:
    """The decode imagepipe starts from (same DCT scale), and nothing after it."""
    largest = PRESETS[0]
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", fit_within(*image.size, largest.max_width, largest.max_height))
        image.load()
        return image.size


def _pyvips() -> Any:
    vips = importlib.import_module("pyvips")  # untyped
    vips.cache_set_max(0)  # every repeat must decode again
    return vips


def pyvips_chained(data: bytes) -> object:
    vips = _pyvips()
    zoom = PRESETS[0]
    image = vips.Image.thumbnail_buffer(
        data, zoom.max_width, height=zoom.max_height, size="down"
    ).copy_memory()
    outputs = []
    for preset in PRESETS:
        if image.width > preset.max_width or image.height > preset.max_height:
            image = image.thumbnail_image(
                preset.max_width, height=preset.max_height, size="down"
            ).copy_memory()
        outputs.append(
            image.jpegsave_buffer(Q=preset.quality, interlace=True, optimize_coding=True, keep=0)
        )
    return outputs


def methods() -> dict[str, Render]:
    return {
        "imagepipe": imagepipe,
        "naive Pillow": naive_pillow,
        "pyvips chained": pyvips_chained,
        "scaled decode (floor)": scaled_decode,
    }


def time_methods(photos: list[Path], repeat: int) -> dict[tuple[str, str], float]:
    """Median ms per (photo, method); methods interleaved so drift hits all alike."""
    prepare_worker(0)
    candidates = methods()
    samples: dict[tuple[str, str], list[float]] = {}
    blobs = {photo.name: photo.read_bytes() for photo in photos}
    for round_number in range(repeat + 1):
        for name, data in blobs.items():
            for label, render in candidates.items():
                started = time.perf_counter()
                render(data)
                elapsed = (time.perf_counter() - started) * 1000
                if round_number:  # the first round warms caches and imports
                    samples.setdefault((name, label), []).append(elapsed)
    return {key: median(values) for key, values in samples.items()}


def _peak_child(label: str, photos: list[str]) -> tuple[float, float]:
    prepare_worker(0)
    render = methods()[label]
    blobs = [Path(p).read_bytes() for p in photos]
    before = peak_rss_mib()
    for data in blobs:
        render(data)
    return before, peak_rss_mib()


def peak_rss(photos: list[Path]) -> dict[str, tuple[float, float]]:
    """Per method: (peak RSS MiB of a fresh process, growth over its idle peak)."""
    context = multiprocessing.get_context("spawn")
    peaks = {}
    for label in methods():
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            before, after = pool.submit(_peak_child, label, [str(p) for p in photos]).result()
        peaks[label] = (after, after - before)
    return peaks


def _render_file(label: str, path: str) -> None:
    methods()[label](Path(path).read_bytes())


def _warm() -> None:
    prepare_worker(0)


def throughput(label: str, photos: list[Path], processes: int, rounds: int) -> float:
    """Images per second through a pool of `processes` workers, after a warm-up."""
    context = multiprocessing.get_context("spawn")
    jobs = [str(p) for p in photos] * rounds
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_warm) as pool:
        list(pool.map(_render_file, [label] * processes * 2, jobs[: processes * 2]))
        started = time.perf_counter()
        list(pool.map(_render_file, [label] * len(jobs), jobs))
        return len(jobs) / (time.perf_counter() - started)


def main(repeat: int, rounds: int) -> None:
    console = Console(width=140)
    photos = corpus_photos()
    candidates = list(methods())
    timings = time_methods(photos, repeat)

    table = Table(title=f"Three presets per photo, ms (median of {repeat}), single thread")
    table.add_column("photo")
    table.add_column("size", justify="right")
    for label in candidates:
        table.add_column(label, justify="right")
    table.add_column("naive / ours", justify="right")
    table.add_column("ours / pyvips", justify="right")
    table.add_column("ours / floor", justify="right")
    for photo in photos:
        with Image.open(photo) as image:
            megapixels = image.size[0] * image.size[1] / 1e6
        ours = timings[(photo.name, "imagepipe")]
        row = [photo.name, f"{megapixels:.1f} MP"]
        row += [f"{timings[(photo.name, label)]:.1f}" for label in candidates]
        row.append(f"{timings[(photo.name, 'naive Pillow')] / ours:.2f}x")
        row.append(f"{ours / timings[(photo.name, 'pyvips chained')]:.2f}")
        row.append(f"{ours / timings[(photo.name, 'scaled decode (floor)')]:.2f}")
        table.add_row(*row)
    console.print(table)

    peaks = peak_rss(photos)
    memory = Table(title="Peak RSS of a fresh process rendering every photo once")
    memory.add_column("method")
    memory.add_column("peak MiB", justify="right")
    memory.add_column("growth MiB", justify="right")
    for label, (peak, growth) in peaks.items():
        memory.add_row(label, f"{peak:.0f}", f"{growth:.0f}")
    console.print(memory)

    pool_rows: dict[str, dict[int, float]] = {}
    for label in ("imagepipe", "pyvips chained"):
        pool_rows[label] = {n: throughput(label, photos, n, rounds) for n in (1, 2)}
    pools = Table(
        title=f"Throughput over the {len(photos)} photos x {rounds} rounds "
        f"({os.cpu_count()} cores), images/s"
    )
    for column in ("method", "1 process", "2 processes", "2 / 1"):
        pools.add_column(column, justify="right")
    for label, figures in pool_rows.items():
        pools.add_row(
            label, f"{figures[1]:.1f}", f"{figures[2]:.1f}", f"{figures[2] / figures[1]:.2f}x"
        )
    console.print(pools)

    largest = photos[0].name
    ours = timings[(largest, "imagepipe")]
    summary: dict[str, float | int | str] = {
        "render_ms_24mp": ours,
        "naive_ratio": timings[(largest, "naive Pillow")] / ours,
    }
    summary["pyvips_ratio"] = ours / timings[(largest, "pyvips chained")]
    summary["floor_ratio"] = ours / timings[(largest, "scaled decode (floor)")]
    summary["images_per_s_1"] = pool_rows["imagepipe"][1]
    summary["images_per_s_2"] = pool_rows["imagepipe"][2]
    summary["scaling_2"] = pool_rows["imagepipe"][2] / pool_rows["imagepipe"][1]
    summary["pyvips_images_per_s_2"] = pool_rows["pyvips chained"][2]
    summary["peak_rss_mib"] = peaks["imagepipe"][0]
    print_summary(summary)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per photo and method")
    parser.add_argument("--rounds", type=int, default=12, help="passes over the photos per pool")
    arguments = parser.parse_args()
    main(arguments.repeat, arguments.rounds)
