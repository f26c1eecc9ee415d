"""The streaming restore loop for stereo models: a job is a left/right pair of files in and a
pair of files out.

Pairs come from file names (irctl/io/stereo.py); a file that does not pair is an error of its
own and the batch goes on. Both views are decoded, checked against each other, restored as one
L‖R tensor and written with :func:`irctl.io.stereo.write_pair_atomically`, so a pair is either
complete on disk or missing its left view — never one new view beside an old or absent one —
and a resumed run redoes exactly the pairs that are not complete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from irctl.data.resize import upscale
from irctl.engine.restore import (
    Plan,
    RestoreSummary,
    as_rgb,
    in_layout_of,
    read_ahead,
    restore_image,
)
from irctl.io.images import Image, ImageReadError, read_image, write_image
from irctl.io.stereo import StereoPair, output_paths, pair_done, pair_views, write_pair_atomically
from irctl.methods.base import Restorer, SampleOptions


@dataclass(frozen=True)
class PairJob:
    """One stereo pair: its inputs and its two outputs. ``src``/``dst`` name the left view, so
    messages and summaries treat a pair like any job."""

    pair: StereoPair
    left_dst: Path
    right_dst: Path

    @property
    def src(self) -> Path:
        return self.pair.left

    @property
    def dst(self) -> Path:
        return self.left_dst


def plan_pair_jobs(
    files: list[Path],
    dst: Path,
    *,
    src_root: Path | None,
    ext: str | None,
    suffix: str,
    overwrite: bool,
) -> Plan:
    """Pair the inputs and map each pair to ``dst/<stem><suffix>_L.<ext>`` and ``..._R``; a
    pair whose two outputs both exist is skipped unless ``overwrite``. Unpaired, ambiguous or
    colliding inputs become errors (one line each)."""
    pairs, errors = pair_views(files, src_root)
    plan = Plan(errors=list(errors))
    for pair in pairs:
        named = replace(pair, relative=pair.relative.with_name(pair.relative.name + suffix))
        try:
            left_dst, right_dst = output_paths(named, dst, ext or pair.left.suffix)
        except ValueError as err:
            plan.errors.append((pair.left, str(err)))
            continue
        job = PairJob(pair, left_dst, right_dst)
        done = pair_done(left_dst, right_dst) and not overwrite
        (plan.skipped if done else plan.jobs).append(job)  # type: ignore[arg-type]
    return plan


def _read_pair(job: PairJob) -> tuple[Image, Image] | str:
    """Both views, or the one-line reason the pair cannot be restored."""
    views = []
    for path in (job.pair.left, job.pair.right):
        try:
            views.append(read_image(path))
        except ImageReadError as err:
            return err.reason if path == job.pair.left else f"right view {path}: {err.reason}"
        except Exception as err:
            return f"cannot read {path}: {err}"
    left, right = views
    if left.pixels.shape[:2] != right.pixels.shape[:2]:
        return (
            f"the views differ in size: {left.width}x{left.height} (L) vs "
            f"{right.width}x{right.height} (R, {job.pair.right})"
        )
    return left, right


def _view_output(restored: np.ndarray, view: Image, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """One view's restored RGB (H'×W'×3) in the view's own layout and range, and its alpha
    scaled to the output size (bicubic, clipped to the alpha's range) when the model upscales."""
    out = in_layout_of(restored, view)
    alpha = view.alpha
    if alpha is None or factor == 1:
        return out, alpha
    full = 1.0 if alpha.dtype.kind == "f" else float(np.iinfo(alpha.dtype).max)
    scaled = upscale(torch.from_numpy(alpha.astype(np.float64) / full), factor).numpy()
    scaled = np.clip(scaled, 0.0, 1.0) * full
    if alpha.dtype.kind != "f":
        scaled = np.rint(scaled)
    return out, scaled.astype(alpha.dtype)


def restore_pair(
    restorer: Restorer,
    left: Image,
    right: Image,
    options: SampleOptions,
    *,
    seed: int,
    device: torch.device,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Restore one decoded pair as a single L‖R image (grey views become RGB for the model and
    grey again after); returns the two views' float pixels in their own layouts."""
    stacked = Image(
        pixels=np.concatenate([as_rgb(left), as_rgb(right)], axis=2),
        alpha=None,
        dtype=np.dtype(np.float32),  # keeps the model's range; each view is clipped below
    )
    out = restore_image(restorer, stacked, options, seed=seed, device=device, callback=callback)
    return out[..., :3], out[..., 3:]


def run_pair_jobs(
    restorer: Restorer,
    jobs: list[PairJob],
    options: SampleOptions,
    *,
    seed: int,
    device: torch.device,
    on_error: Callable[[Path, str], None],
    on_done: Callable[[PairJob, float], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    readers: int = 2,
    writers: int = 2,
) -> RestoreSummary:
    """Restore every pair; never raises for a per-pair problem. Reading runs ahead in a thread
    pool as for single images; writing (both views, atomically as a pair) in another."""
    summary = RestoreSummary()
    lock = threading.Lock()
    factor = restorer.preset.network.upscale
    tic = time.perf_counter()

    def fail(path: Path, reason: str) -> None:
        with lock:
            summary.failed.append((path, reason))
        on_error(path, reason)

    def write(job: PairJob, views: list[tuple[np.ndarray, np.ndarray, Image]], t0: float) -> None:
        (left, left_alpha, left_in), (right, right_alpha, right_in) = views
        try:
            write_pair_atomically(
                job.left_dst,
                job.right_dst,
                lambda p: write_image(p, left, dtype=left_in.dtype, alpha=left_alpha),
                lambda p: write_image(p, right, dtype=right_in.dtype, alpha=right_alpha),
            )
        except Exception as err:
            fail(job.src, f"cannot write the pair {job.left_dst} / {job.right_dst}: {err}")
            return
        with lock:
            summary.restored.append(job)  # type: ignore[arg-type]
            summary.megapixels += 2 * left_in.height * left_in.width / 1e6
        if on_done is not None:
            on_done(job, time.perf_counter() - t0)

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="irctl-write") as out_pool:
        for job, views in read_ahead(jobs, readers, depth=readers + 1, read=_read_pair):
            if isinstance(views, str):
                fail(job.src, views)
                continue
            left_in, right_in = views
            started = time.perf_counter()
            try:
                left, right = restore_pair(
                    restorer,
                    left_in,
                    right_in,
                    options,
                    seed=seed,
                    device=device,
                    callback=on_step,
                )
            except (RuntimeError, ValueError, MemoryError) as err:
                fail(job.src, f"restore failed: {str(err).strip().splitlines()[0]}")
                continue
            outputs = [
                (*_view_output(left, left_in, factor), left_in),
                (*_view_output(right, right_in, factor), right_in),
            ]
            out_pool.submit(write, job, outputs, started)
    summary.seconds = time.perf_counter() - tic
    return summary
