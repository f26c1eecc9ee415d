"""The README's quality tables: models and the classical baseline on the held-out photos.

The LQ inputs are synthesised from the preset's ``test`` photos (never trained on) with the
preset's degradation and a fixed seed per photo, then quantised to 8 bits as a file would be;
every output is quantised to 8 bits too before PSNR/SSIM (BasicSR conventions, RGB, no crop).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from irctl.config import Preset
from irctl.data.datasets import load_photo, synthesize_pair
from irctl.data.degrade import build_pair_synthesis
from irctl.engine.restore import restore_image
from irctl.io.images import Image, to_dtype, write_image
from irctl.methods.base import Conditioning, Restorer, SampleOptions
from irctl.methods.classical import CLASSICAL
from irctl.metrics.fidelity import psnr, ssim

HELDOUT_SEED = 1000


@dataclass(frozen=True)
class HeldoutPhoto:
    name: str
    gt: np.ndarray  # uint8 HxWx3
    lq: np.ndarray  # float32 HxWx3, on the 8-bit grid when the degradation quantises
    cond: tuple[float, ...] = ()  # the conditioning scalars the pair was made with (bokeh lenses)


@dataclass
class HeldoutRow:
    photo: str
    method: str
    psnr: float
    ssim: float
    seconds: float


def heldout_photos(preset: Preset) -> list[HeldoutPhoto]:
    synthesize = build_pair_synthesis(preset.degradation)
    photos = []
    for i, name in enumerate(preset.data.test):
        lq, gt, cond = synthesize_pair(load_photo(name), synthesize, seed=HELDOUT_SEED + i)
        gt8 = to_dtype(np.clip(gt, 0.0, 1.0), np.uint8)
        photos.append(HeldoutPhoto(name, gt8, lq.astype(np.float32), cond))
    return photos


#: A method under comparison: (LQ float HxWx3, conditioning) → restored float HxWx3.
MethodFn = Callable[[np.ndarray, Conditioning], np.ndarray]


def model_method(
    restorer: Restorer, options: SampleOptions, seed: int, device: torch.device
) -> MethodFn:
    def run(lq: np.ndarray, cond: Conditioning) -> np.ndarray:
        image = Image(pixels=lq, alpha=None, dtype=np.dtype(np.uint8))
        return restore_image(restorer, image, options, seed=seed, device=device, cond=cond)

    return run


def classical_method(name: str, preset: Preset) -> MethodFn:
    fn = CLASSICAL[name]
    return lambda lq, _cond: fn(lq, preset.degradation)


def folder_name(label: str) -> str:
    """A shell-friendly folder name for a method label: 'x (sde, 100 steps)' → 'x-sde-100-steps'."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-")


def run_heldout(
    photos: list[HeldoutPhoto],
    methods: dict[str, MethodFn],
    *,
    save_dir: Path | None = None,
    on_row: Callable[[HeldoutRow], None] | None = None,
) -> list[HeldoutRow]:
    """Score every method on every photo; ``input`` (the LQ itself) is always the first row."""
    rows = []
    all_methods: dict[str, MethodFn] = {"input": lambda lq, _cond: lq, **methods}
    for photo in photos:
        if save_dir is not None:
            write_image(save_dir / "gt" / f"{photo.name}.png", photo.gt / 255.0, dtype=np.uint8)
        for label, fn in all_methods.items():
            tic = time.perf_counter()
            out = fn(photo.lq, Conditioning(scalars=photo.cond))
            seconds = time.perf_counter() - tic if label != "input" else 0.0
            out8 = to_dtype(np.clip(out, 0.0, 1.0), np.uint8)
            if save_dir is not None:
                path = save_dir / folder_name(label) / f"{photo.name}.png"
                write_image(path, out8 / 255.0, dtype=np.uint8)
            row = HeldoutRow(
                photo=photo.name,
                method=label,
                psnr=psnr(out8, photo.gt, max_value=255),
                ssim=ssim(out8, photo.gt, max_value=255),
                seconds=seconds,
            )
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def markdown_table(rows: list[HeldoutRow], baseline: str = "input") -> str:
    """Mean PSNR/SSIM per method, with the PSNR gain over ``baseline``, as a Markdown table."""
    methods = list(dict.fromkeys(r.method for r in rows))
    mean = {
        m: (
            float(np.mean([r.psnr for r in rows if r.method == m])),
            float(np.mean([r.ssim for r in rows if r.method == m])),
            float(np.mean([r.seconds for r in rows if r.method == m])),
        )
        for m in methods
    }
    base = mean[baseline][0]
    lines = [
        "| method | PSNR (dB) | gain over input (dB) | SSIM | seconds / image |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in methods:
        p, s, sec = mean[m]
        lines.append(f"| {m} | {p:.2f} | {p - base:+.2f} | {s:.4f} | {sec:.1f} |")
    return "\n".join(lines) + "\n"
