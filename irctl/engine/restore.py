"""The streaming restore loop: reader threads decode, the device restores, writer threads encode.

Per file, everything that can go wrong (unreadable input, a model error, a failed write) is
reported through ``on_error`` as one line naming the file and the reason, and the batch goes on.
Outputs are written atomically, so after a crash or SIGKILL an output either exists complete or
not at all; a rerun skips the finished ones (unless ``overwrite``) and removes stale temp files.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from irctl.config import Preset, load_preset, preset_for_task, weights_path
from irctl.engine.checkpoint import CheckpointError, load_checkpoint, load_modules
from irctl.io.folders import output_path
from irctl.io.images import Image, ImageReadError, read_image, write_image
from irctl.methods import build_restorer
from irctl.methods.base import Conditioning, Restorer, SampleOptions

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)  # output already there
    errors: list[tuple[Path, str]] = field(default_factory=list)  # inputs with no valid output


@dataclass
class RestoreSummary:
    restored: list[Job] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    megapixels: float = 0.0


def load_restorer(
    *,
    weights: Path | None,
    preset: str | None,
    task: str | None,
    device: torch.device,
    method: str | None = None,
) -> Restorer:
    """Build the Restorer from a checkpoint (whose embedded preset wins), a preset's bundled
    weights, or the task's bundled model (its default, or the one of ``method``)."""
    if weights is not None:
        ckpt = load_checkpoint(weights)
        resolved: Preset = ckpt.preset
    else:
        resolved = load_preset(preset or preset_for_task(task or "denoise", method))
        bundled = weights_path(resolved)
        if bundled is None or not bundled.is_file():
            raise CheckpointError(
                f"preset {resolved.name!r} has no bundled weights"
                + (f" (expected {bundled})" if bundled else "")
                + f"; train them with `irctl train --preset {resolved.name}` and pass --weights"
            )
        ckpt = load_checkpoint(bundled)
    restorer = build_restorer(resolved)
    if ckpt.stage != restorer.stages[-1]:
        raise CheckpointError(
            f"{weights or bundled}: holds the {ckpt.stage!r} stage of {resolved.name}; restoring "
            f"needs the finished {restorer.stages[-1]!r} stage"
        )
    load_modules(restorer.modules(), ckpt)
    for module in restorer.modules().values():
        module.to(device).eval()
    return restorer


def resolve_options(
    restorer: Restorer,
    *,
    sampler: str | None = None,
    steps: int | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    tile_batch: int | None = None,
) -> SampleOptions:
    """The run's options: the preset's defaults with the user's overrides, validated once
    against what the model offers (a one-line ValueError: unknown sampler, steps out of range,
    a sampler given to a model that runs one forward pass)."""
    options = SampleOptions.from_preset(
        restorer.preset,
        sampler=sampler,
        steps=steps,
        tile=tile,
        overlap=overlap,
        tile_batch=tile_batch,
    )
    if restorer.sampling is not None:
        restorer.sampling.check(options.sampler, options.steps)
    return options


def describe_sampling(restorer: Restorer, options: SampleOptions, seed: int) -> str:
    """'sampler posterior, 20 steps, seed 0', or 'single forward pass'."""
    if restorer.sampling is None:
        return "single forward pass"
    return f"sampler {options.sampler}, {options.steps} steps, seed {seed}"


def plan_jobs(
    files: list[Path],
    dst: Path,
    *,
    src_root: Path | None,
    ext: str | None,
    suffix: str,
    overwrite: bool,
) -> Plan:
    """Map inputs to outputs; two inputs mapping to one output is an error for the second."""
    plan = Plan()
    claimed: dict[Path, Path] = {}
    for src in files:
        try:
            target = output_path(src, dst, src_root=src_root, ext=ext, suffix=suffix)
        except ValueError as err:
            plan.errors.append((src, str(err)))
            continue
        if target in claimed:
            plan.errors.append((src, f"output {target} is already the output of {claimed[target]}"))
            continue
        claimed[target] = src
        job = Job(src, target)
        (plan.skipped if target.exists() and not overwrite else plan.jobs).append(job)
    return plan


def as_rgb(image: Image) -> np.ndarray:
    """HxWxC float pixels with grey replicated to the three channels the models are trained on."""
    pixels = image.pixels
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _to_tensor(image: Image, device: torch.device) -> torch.Tensor:
    """HxWxC float → 1x3xHxW on the device (grey made RGB)."""
    pixels = as_rgb(image)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].to(device)


def in_layout_of(out: np.ndarray, image: Image) -> np.ndarray:
    """Restored HxWx3 float pixels in ``image``'s channel layout (grey again) and value range
    (float files may exceed [0, 1] and keep their own range; integer files are clipped)."""
    if image.channels == 1:
        out = out.mean(axis=2, keepdims=True)
    if image.dtype == np.float32:
        lo, hi = min(0.0, float(image.pixels.min())), max(1.0, float(image.pixels.max()))
        return np.clip(out, lo, hi)
    return np.clip(out, 0.0, 1.0)


def _to_pixels(restored: torch.Tensor, image: Image) -> np.ndarray:
    """1x3xHxW → HxWxC in the input's channel layout and value range."""
    return in_layout_of(restored[0].float().cpu().numpy().transpose(1, 2, 0), image)


def restore_image(
    restorer: Restorer,
    image: Image,
    options: SampleOptions,
    *,
    seed: int,
    device: torch.device,
    callback: Callable[[int, int], None] | None = None,
    cond: Conditioning | None = None,
) -> np.ndarray:
    """Restore one decoded image. The generator is seeded per image, so an image's output does
    not depend on which other images were in the batch, on sharding, or on resuming."""
    generator = torch.Generator().manual_seed(seed)
    lq = _to_tensor(image, device)
    with torch.inference_mode():
        condition = restorer.condition(lq, cond if cond is not None else Conditioning())
        restored = restorer.restore(lq, condition, options, generator, callback)
    return _to_pixels(restored, image)


def _read_job(job: Job) -> Image:
    return read_image(job.src)


def read_ahead(
    jobs: list[J], workers: int, depth: int, read: Callable[[J], R] = _read_job
) -> Iterator[tuple[J, R | str]]:
    """Decode in background threads, at most ``depth`` jobs ahead, in job order; a job that
    cannot be read comes with its one-line reason instead (``read`` may also return one)."""
    pending: queue.Queue[tuple[J, Future[R]]] = queue.Queue()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="irctl-read") as pool:
        it = iter(jobs)
        for job in it:
            pending.put((job, pool.submit(read, job)))
            if pending.qsize() >= depth:
                break
        while not pending.empty():
            job, fut = pending.get()
            try:
                yield job, fut.result()
            except ImageReadError as err:
                yield job, err.reason
            except Exception as err:
                yield job, f"cannot read: {err}"
            nxt = next(it, None)
            if nxt is not None:
                pending.put((nxt, pool.submit(read, nxt)))


def run_jobs(
    restorer: Restorer,
    jobs: list[Job],
    options: SampleOptions,
    *,
    seed: int,
    device: torch.device,
    on_error: Callable[[Path, str], None],
    on_done: Callable[[Job, float], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    conditioner: Callable[[Path], Conditioning] | None = None,
    readers: int = 2,
    writers: int = 2,
) -> RestoreSummary:
    """Restore every job; never raises for a per-file problem. ``conditioner`` gives each
    file's task-specific inputs (bokeh: its lenses)."""
    summary = RestoreSummary()
    lock = threading.Lock()
    tic = time.perf_counter()

    def fail(path: Path, reason: str) -> None:
        with lock:
            summary.failed.append((path, reason))
        on_error(path, reason)

    def write(job: Job, pixels: np.ndarray, image: Image, started: float) -> None:
        try:
            write_image(job.dst, pixels, dtype=image.dtype, alpha=image.alpha)
        except Exception as err:
            fail(job.src, f"cannot write {job.dst}: {err}")
            return
        with lock:
            summary.restored.append(job)
            summary.megapixels += image.height * image.width / 1e6
        if on_done is not None:
            on_done(job, time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="irctl-write") as out_pool:
        for job, image in read_ahead(jobs, readers, depth=readers + 1):
            if isinstance(image, str):
                fail(job.src, image)
                continue
            started = time.perf_counter()
            try:
                cond = conditioner(job.src) if conditioner is not None else None
                pixels = restore_image(
                    restorer, image, options, seed=seed, device=device, callback=on_step, cond=cond
                )
            except (RuntimeError, ValueError, MemoryError) as err:  # e.g. out of memory
                fail(job.src, f"restore failed: {str(err).strip().splitlines()[0]}")
                continue
            out_pool.submit(write, job, pixels, image, started)
    summary.seconds = time.perf_counter() - tic
    return summary
