"""Speed and memory of ``restore`` at given sizes, and how much tiling changes the output.

Numbers are reported, never asserted: machines are noisy. Sizes are width × height. Every
measurement runs in a fresh process, because an allocator keeps memory a previous run freed: the peak resident set size of
a process that already restored a larger image says nothing about the current one. Peak memory
is that process's peak RSS on the CPU (so it includes the ~0.3 GB of torch itself) and
``max_memory_allocated`` on CUDA.

FLOPs are counted, not estimated: torch's FlopCounterMode over one whole ``restore`` with one and
with two sampler steps; the difference is one step's cost, the rest is paid once per image (a
latent method's compressor). Reported as multiply-accumulates (GMACs), the unit papers call
"FLOPs" (Refusion Table 4).

A measurement that does not fit (the device's out-of-memory error, or the measuring process
killed, as Linux's out-of-memory killer does) is a row that says so and the benchmark goes on:
"untiled 6000×4000 does not fit, tile 512 does" is the answer a user is asking for, and the
rows measured before it are not lost.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from irctl.config import Preset
from irctl.data.datasets import load_photo
from irctl.engine.backoff import is_out_of_memory
from irctl.engine.device import peak_memory_bytes, reset_peak_memory, resolve_device
from irctl.engine.models import load_restorer
from irctl.engine.restore import restore_image
from irctl.io.images import Image, unit_float_planar
from irctl.methods.base import SampleOptions
from irctl.metrics.fidelity import psnr
from irctl.tasks import get_task
from irctl.tasks.base import Task


@dataclass(frozen=True)
class ModelSpec:
    """How a measuring process finds the model (what `irctl restore` would be given)."""

    weights: str | None
    preset: str | None
    task: str | None
    device: str = "auto"
    threads: int | None = None
    random_weights: bool = False


@dataclass
class BenchmarkRow:
    size: int  # width (kept as "size" for square-image tables)
    height: int
    tile: int
    tile_batch: int
    steps: int
    sampler: str
    seconds: float
    megapixels_per_second: float
    peak_memory_mib: float
    max_abs_diff_vs_untiled: float | None
    #: PSNR of the tiled output against the untiled one (dB, inf when identical): the typical
    #: size of the tiling difference, where the max abs diff shows only its worst pixel.
    psnr_vs_untiled: float | None = None
    #: seconds of each phase of one restore, as the method reports them (DiffIR: the prior and
    #: DIRformer); empty for methods that report none
    phases: dict[str, float] = field(default_factory=dict)
    #: how the tiles were sized (irctl/tiling.py TILE_LAYOUTS)
    tile_layout: str = "even"
    #: restored as a self-ensemble (irctl/symmetry.py): that many restorations per image
    self_ensemble: bool = False
    #: why nothing was measured ("out of memory"); None for a measured row, whose numbers
    #: are then all real (a failed row's are NaN, null in JSON)
    error: str | None = None


def parse_size(text: str) -> tuple[int, int]:
    """``1024`` → (1024, 1024); ``6000x4000`` → (width 6000, height 4000)."""
    width, _, height = text.strip().lower().replace("×", "x").partition("x")
    w, h = int(width), int(height or width)
    if w < 1 or h < 1:
        raise ValueError(f"image size must be positive, got {text!r}")
    return w, h


def size_label(width: int, height: int) -> str:
    return f"{width}²" if width == height else f"{width}×{height}"


def benchmark_image(
    width: int, height: int | None = None, photo: str = "chelsea", task: Task | None = None
) -> Image:
    """A held-out photo resized to width×height: real image content, as 8-bit input. Resized as
    8 bits with PIL, so a 6000×4000 test image costs its float32 pixels and nothing more. The
    task makes the model's input of it (stereo: L‖R views with a constant disparity; the size
    is each view's, an SR model's input size)."""
    from PIL import Image as PILImage

    height = height or width
    photo8 = (load_photo(photo) * 255.0 + 0.5).astype(np.uint8)
    resized = PILImage.fromarray(photo8).resize((width, height), PILImage.Resampling.BILINEAR)
    pixels = unit_float_planar(np.asarray(resized))  # laid out as read_image lays it out
    if task is not None:
        pixels = task.benchmark_input(pixels)
    return Image(pixels=pixels, alpha=None, dtype=np.dtype(np.uint8))


def _measure(
    spec: ModelSpec, size: tuple[int, int], options: SampleOptions, seed: int
) -> tuple[np.ndarray, float, int, dict[str, float]]:
    """Runs in a fresh process: load the model, warm up, restore one image, and report
    (output, seconds, peak bytes, the method's phase seconds)."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = resolve_device(spec.device)
    weights = Path(spec.weights) if spec.weights else None
    restorer = load_restorer(
        weights=weights,
        preset=spec.preset,
        task=spec.task,
        device=device,
        random_weights=spec.random_weights,
    )
    # One-step warm-up on a small image: the first network calls pay for kernel selection,
    # which is not the per-image cost of a batch (a full-size warm-up would double the time of
    # a 6000×4000 run and tell nothing more).
    warm_up = replace(options, steps=1)
    task = get_task(restorer.preset.task)
    cond = task.neutral_conditioning(restorer.preset)
    small = benchmark_image(min(size[0], 256), min(size[1], 256), task=task)
    restore_image(restorer, small, warm_up, seed=seed, device=device, cond=cond)
    image = benchmark_image(*size, task=task)
    reset_peak_memory(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tic = time.perf_counter()
    out = restore_image(restorer, image, options, seed=seed, device=device, cond=cond)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - tic
    phases = dict(restorer.phase_seconds)
    return out, seconds, peak_memory_bytes(device), phases


def _measure_in_fresh_process(
    spec: ModelSpec, size: tuple[int, int], options: SampleOptions, seed: int
) -> tuple[np.ndarray, float, int, dict[str, float]]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_measure, spec, size, options, seed).result()


Measurement = tuple[np.ndarray, float, int, dict[str, float]]


def _measure_or_why_not(
    spec: ModelSpec, size: tuple[int, int], options: SampleOptions, seed: int
) -> Measurement | str:
    """:func:`_measure_in_fresh_process`, or why it could not measure: out of memory, or
    the process killed. Any other error is a bug and propagates."""
    try:
        return _measure_in_fresh_process(spec, size, options, seed)
    except BrokenProcessPool:
        return "measuring process killed (out of memory?)"
    except Exception as err:  # only memory errors become rows; a bug propagates
        if is_out_of_memory(err):
            return "out of memory"
        raise


def run_benchmark(
    spec: ModelSpec,
    preset: Preset,
    *,
    sizes: list[tuple[int, int]],
    tiles: list[int],
    steps: int | None = None,
    sampler: str | None = None,
    overlap: int | None = None,
    tile_batch: int | None = None,
    tile_layout: str | None = None,
    self_ensemble: bool = False,
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
                tile_layout=tile_layout,
                self_ensemble=self_ensemble,
            )

        reference = (
            _measure_or_why_not(spec, size, options_for(0), seed) if compare_untiled else None
        )
        untiled = reference if isinstance(reference, tuple) else None
        for tile in tiles:
            options = options_for(tile)
            if tile == 0 and reference is not None:
                measured = reference
            else:
                measured = _measure_or_why_not(spec, size, options, seed)
            row = BenchmarkRow(
                size=size[0],
                height=size[1],
                tile=tile,
                tile_batch=options.tiles.batch,
                steps=options.steps,
                sampler=options.sampler,
                seconds=math.nan,
                megapixels_per_second=math.nan,
                peak_memory_mib=math.nan,
                max_abs_diff_vs_untiled=None,
                tile_layout=options.tiles.layout,
                self_ensemble=options.self_ensemble,
            )
            if isinstance(measured, str):
                row.error = measured
            else:
                out, seconds, peak, phases = measured
                row.seconds = seconds
                row.megapixels_per_second = size[0] * size[1] / 1e6 / seconds
                row.peak_memory_mib = peak / 2**20
                # one member's phases against the whole ensemble's seconds would mislead
                row.phases = {} if options.self_ensemble else phases
                if untiled is not None:
                    row.max_abs_diff_vs_untiled = float(np.abs(out - untiled[0]).max())
                    row.psnr_vs_untiled = psnr(out, untiled[0], max_value=1.0)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def rows_as_dicts(rows: list[BenchmarkRow]) -> list[dict]:
    """JSON-ready rows. JSON has no inf or NaN: an identical tiled output (max abs diff 0) gets
    a ``null`` PSNR, as ``irctl eval`` does, and a row that could not be measured (``error``)
    null numbers."""
    dicts = [asdict(r) for r in rows]
    for d in dicts:
        for key in ("psnr_vs_untiled", "seconds", "megapixels_per_second", "peak_memory_mib"):
            if d[key] is not None and not math.isfinite(d[key]):
                d[key] = None
    return dicts


def tile_label(row: BenchmarkRow) -> str:
    """'off', '512', or '512 full' for a tile every one of which is 512 pixels."""
    if not row.tile:
        return "off"
    return f"{row.tile} full" if row.tile_layout == "full" else str(row.tile)


def sampler_label(row: BenchmarkRow) -> str:
    """'posterior', or 'posterior, self-ensemble' for a self-ensembled row."""
    return f"{row.sampler}, self-ensemble" if row.self_ensemble else row.sampler


def markdown_table(rows: list[BenchmarkRow]) -> str:
    """The rows as Markdown; a column of phase timings when the method reports phases."""
    with_phases = any(r.phases for r in rows)
    lines = [
        "| size | tile | tiles per call | sampler | steps | s / image | MP/s | peak MiB "
        "| max abs diff tiled vs untiled | PSNR tiled vs untiled (dB) |"
        + (" phases (s, share) |" if with_phases else ""),
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|" + ("---|" if with_phases else ""),
    ]
    for r in rows:
        if r.error is not None:
            cells = f"{r.error} | — | — | — | — |" + (" — |" if with_phases else "")
            lines.append(
                f"| {size_label(r.size, r.height)} | {tile_label(r)} "
                f"| {r.tile_batch if r.tile else '—'} | {sampler_label(r)} | {r.steps} | {cells}"
            )
            continue
        diff = "—" if r.max_abs_diff_vs_untiled is None else f"{r.max_abs_diff_vs_untiled:.2e}"
        agreement = "—" if r.psnr_vs_untiled is None else f"{r.psnr_vs_untiled:.1f}"
        phases = ", ".join(
            f"{name} {sec:.3g} ({100 * sec / r.seconds:.1f} %)" for name, sec in r.phases.items()
        )
        lines.append(
            f"| {size_label(r.size, r.height)} | {tile_label(r)} | {r.tile_batch if r.tile else '—'} | {sampler_label(r)} "
            f"| {r.steps} | {r.seconds:.2f} | {r.megapixels_per_second:.4f} "
            f"| {r.peak_memory_mib:.0f} | {diff} | {agreement} |"
            + (f" {phases or '—'} |" if with_phases else "")
        )
    return "\n".join(lines) + "\n"


@dataclass
class FlopsRow:
    preset: str
    size: int
    gmacs_once: float  # per image, independent of the step count (compressor encode/decode)
    gmacs_per_step: float


def count_macs(fn: Callable[[], object]) -> float:
    """Multiply-accumulates of one call (FlopCounterMode counts 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2


def restore_flops(restorer, size: int, options: SampleOptions, seed: int = 0) -> FlopsRow:
    """Per-image and per-step GMACs of ``restore`` on a size×size image, untiled (the paper's
    Table 4 convention: 256²)."""
    task = get_task(restorer.preset.task)
    image = benchmark_image(size, task=task)
    lq = torch.from_numpy(image.pixels.transpose(2, 0, 1).copy())[None]
    cond = task.neutral_conditioning(restorer.preset)
    untiled = replace(options.tiles, tile=0)

    def run(steps: int) -> float:
        opts = replace(options, steps=steps, tiles=untiled)
        generator = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            condition = restorer.condition(lq, cond)
            return count_macs(lambda: restorer.restore(lq, condition, opts, generator))

    stochastic = restorer.sampling is not None
    one, two = (run(1), run(2)) if stochastic else (run(1), run(1))
    per_step = two - one if stochastic else one
    return FlopsRow(restorer.preset.name, size, (one - per_step) / 1e9, per_step / 1e9)


def flops_markdown(rows: list[FlopsRow]) -> str:
    """GMACs per image and per sampler step, and each model's per-step cost relative to the
    last row (e.g. pixel vs latent Refusion: the paper's ~15×)."""
    ref = rows[-1].gmacs_per_step
    lines = [
        "| model | image | GMACs once per image | GMACs per step | per-step cost vs last row |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.preset} | {r.size}² | {r.gmacs_once:.2f} | {r.gmacs_per_step:.3f} "
            f"| {r.gmacs_per_step / ref:.1f}× |"
        )
    return "\n".join(lines) + "\n"
