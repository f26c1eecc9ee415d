"""Speed and memory of ``restore`` at given sizes, and how much tiling changes the output.

Numbers are reported, never asserted: machines are noisy. Peak memory is the process's peak RSS
on the CPU (sampled while the restore runs) and ``max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize

from irctl.data.datasets import load_photo
from irctl.engine.device import peak_memory_bytes, reset_peak_memory
from irctl.engine.restore import restore_image
from irctl.engine.tiling import Tiler
from irctl.io.images import Image
from irctl.methods.base import Restorer, SampleOptions


@dataclass
class BenchmarkRow:
    size: int
    tile: int
    steps: int
    sampler: str
    seconds: float
    megapixels_per_second: float
    peak_memory_mib: float
    max_abs_diff_vs_untiled: float | None


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    import resource  # noqa: F401 - only for the page size on POSIX

    return pages * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples the resident set size in a thread: ru_maxrss never goes down, so it cannot give
    the peak of one run after a larger one."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> _PeakRSS:
        self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def benchmark_image(size: int, photo: str = "chelsea") -> Image:
    """A held-out photo resized to size×size: real image content, as 8-bit input."""
    pixels = resize(load_photo(photo), (size, size, 3), order=1, anti_aliasing=True)
    return Image(pixels=pixels.astype(np.float32), alpha=None, dtype=np.dtype(np.uint8))


def _timed_restore(
    restorer: Restorer, image: Image, options: SampleOptions, seed: int, device: torch.device
) -> tuple[np.ndarray, float, int]:
    reset_peak_memory(device)
    with _PeakRSS() as rss:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        out = restore_image(restorer, image, options, seed=seed, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - tic
    peak = peak_memory_bytes(device) if device.type == "cuda" else rss.peak
    return out, seconds, peak


def run_benchmark(
    restorer: Restorer,
    *,
    sizes: list[int],
    tiles: list[int],
    steps: int,
    sampler: str,
    overlap: int,
    tile_batch: int,
    seed: int,
    device: torch.device,
    compare_untiled: bool = True,
    on_row: Callable[[BenchmarkRow], None] | None = None,
) -> list[BenchmarkRow]:
    """Time every (size, tile) pair; with ``compare_untiled`` also run each size untiled once
    and report the max abs difference of every tiled output from it (measured, even where the
    tile covers the image and the difference must be 0)."""
    rows = []
    for size in sizes:
        image = benchmark_image(size)
        untiled = SampleOptions(sampler=sampler, steps=steps, tiler=Tiler(0, 0, tile_batch))
        reference = (
            _timed_restore(restorer, image, untiled, seed, device) if compare_untiled else None
        )
        for tile in tiles:
            options = SampleOptions(
                sampler=sampler,
                steps=steps,
                tiler=Tiler(tile, min(overlap, max(tile - 1, 0)), tile_batch),
            )
            if tile == 0 and reference is not None:
                out, seconds, peak = reference
            else:
                out, seconds, peak = _timed_restore(restorer, image, options, seed, device)
            diff = float(np.abs(out - reference[0]).max()) if reference is not None else None
            row = BenchmarkRow(
                size=size,
                tile=tile,
                steps=steps,
                sampler=sampler,
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
        "| size | tile | sampler | steps | s / image | MP/s | peak MiB | max abs diff tiled vs untiled |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        diff = "—" if r.max_abs_diff_vs_untiled is None else f"{r.max_abs_diff_vs_untiled:.2e}"
        lines.append(
            f"| {r.size}² | {r.tile or 'off'} | {r.sampler} | {r.steps} | {r.seconds:.2f} | "
            f"{r.megapixels_per_second:.4f} | {r.peak_memory_mib:.0f} | {diff} |"
        )
    return "\n".join(lines) + "\n"
