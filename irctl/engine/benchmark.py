"""Speed and memory of ``restore`` at given sizes, and how much tiling changes the output.

Numbers are reported, never asserted: machines are noisy. Every measurement runs in a fresh
process, because an allocator keeps memory a previous run freed: the peak resident set size of
a process that already restored a larger image says nothing about the current one. Peak memory
is that process's peak RSS on the CPU (so it includes the ~0.3 GB of torch itself) and
``max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize

from irctl.config import Preset
from irctl.data.datasets import load_photo
from irctl.engine.device import peak_memory_bytes, reset_peak_memory, resolve_device
from irctl.engine.restore import load_restorer, restore_image
from irctl.io.images import Image
from irctl.methods.base import SampleOptions


@dataclass(frozen=True)
class ModelSpec:
    """How a measuring process finds the model (what `irctl restore` would be given)."""

    weights: str | None
    preset: str | None
    task: str | None
    device: str = "auto"
    threads: int | None = None


@dataclass
class BenchmarkRow:
    size: int
    tile: int
    tile_batch: int
    steps: int
    sampler: str
    seconds: float
    megapixels_per_second: float
    peak_memory_mib: float
    max_abs_diff_vs_untiled: float | None


def benchmark_image(size: int, photo: str = "chelsea") -> Image:
    """A held-out photo resized to size×size: real image content, as 8-bit input."""
    pixels = resize(load_photo(photo), (size, size, 3), order=1, anti_aliasing=True)
    return Image(pixels=pixels.astype(np.float32), alpha=None, dtype=np.dtype(np.uint8))


def _measure(
    spec: ModelSpec, size: int, options: SampleOptions, seed: int
) -> tuple[np.ndarray, float, int]:
    """Runs in a fresh process: load the model, warm up, restore one image, and report
    (output, seconds, peak bytes)."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = resolve_device(spec.device)
    weights = Path(spec.weights) if spec.weights else None
    restorer = load_restorer(weights=weights, preset=spec.preset, task=spec.task, device=device)
    image = benchmark_image(size)
    # One-step warm-up: the first network calls pay for kernel selection and allocator growth,
    # which is not the per-image cost of a batch.
    warm_up = SampleOptions(sampler=options.sampler, steps=1, tiler=options.tiler)
    restore_image(restorer, image, warm_up, seed=seed, device=device)
    reset_peak_memory(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tic = time.perf_counter()
    out = restore_image(restorer, image, options, seed=seed, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - tic, peak_memory_bytes(device)


def _measure_in_fresh_process(
    spec: ModelSpec, size: int, options: SampleOptions, seed: int
) -> tuple[np.ndarray, float, int]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_measure, spec, size, options, seed).result()


def run_benchmark(
    spec: ModelSpec,
    preset: Preset,
    *,
    sizes: list[int],
    tiles: list[int],
    steps: int | None = None,
    sampler: str | None = None,
    overlap: int | None = None,
    tile_batch: int | None = None,
    seed: int = 0,
    compare_untiled: bool = True,
    on_row: Callable[[BenchmarkRow], None] | None = None,
) -> list[BenchmarkRow]:
    """Time every (size, tile) pair; with ``compare_untiled`` also run each size untiled once
    and report the max abs difference of every tiled output from it (measured, even where the
    tile covers the image and the difference must be 0)."""
    rows = []
    for size in sizes:

        def options_for(tile: int) -> SampleOptions:
            return SampleOptions.from_preset(
                preset,
                sampler=sampler,
                steps=steps,
                tile=tile,
                overlap=overlap,
                tile_batch=tile_batch,
            )

        reference = (
            _measure_in_fresh_process(spec, size, options_for(0), seed) if compare_untiled else None
        )
        for tile in tiles:
            options = options_for(tile)
            if tile == 0 and reference is not None:
                out, seconds, peak = reference
            else:
                out, seconds, peak = _measure_in_fresh_process(spec, size, options, seed)
            diff = float(np.abs(out - reference[0]).max()) if reference is not None else None
            row = BenchmarkRow(
                size=size,
                tile=tile,
                tile_batch=options.tiler.batch,
                steps=options.steps,
                sampler=options.sampler,
                seconds=seconds,
                megapixels_per_second=size * size / 1e6 / seconds,
                peak_memory_mib=peak / 2**20,
                max_abs_diff_vs_untiled=diff,
            )
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def rows_as_dicts(rows: list[BenchmarkRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def markdown_table(rows: list[BenchmarkRow]) -> str:
    lines = [
        "| size | tile | tiles per call | sampler | steps | s / image | MP/s | peak MiB "
        "| max abs diff tiled vs untiled |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        diff = "—" if r.max_abs_diff_vs_untiled is None else f"{r.max_abs_diff_vs_untiled:.2e}"
        lines.append(
            f"| {r.size}² | {r.tile or 'off'} | {r.tile_batch if r.tile else '—'} | {r.sampler} "
            f"| {r.steps} | {r.seconds:.2f} | {r.megapixels_per_second:.4f} "
            f"| {r.peak_memory_mib:.0f} | {diff} |"
        )
    return "\n".join(lines) + "\n"
