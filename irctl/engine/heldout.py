"""The README's quality tables: models and the classical baseline on the held-out photos.

The LQ inputs are synthesised from the preset's ``test`` photos (never trained on) with the
preset's degradation and a fixed seed per photo, then quantised to 8 bits as a file would be;
every output is quantised to 8 bits too before PSNR/SSIM (BasicSR conventions, RGB, no crop).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from irctl.config import DegradationConfig, Preset
from irctl.data.datasets import load_photos, synthesize_pair
from irctl.data.degrade import build_pair_synthesis
from irctl.engine.restore import restore_image
from irctl.io.images import Image, to_dtype, write_image
from irctl.methods.base import Conditioning, Restorer, SampleOptions
from irctl.methods.classical import CLASSICAL
from irctl.metrics.fidelity import (
    METRICS,
    hf_energy_ratio,
    masked_psnr,
    masked_ssim,
    psnr,
    ssim,
)
from irctl.tasks import get_task

HELDOUT_SEED = 1000


@dataclass(frozen=True)
class HeldoutPhoto:
    """One held-out case. Stereo cases hold both views on the channel axis (L‖R, 6 channels);
    an SR case's LQ is smaller than its GT."""

    name: str
    gt: np.ndarray  # uint8 HxWx3 (stereo: HxWx6)
    lq: np.ndarray  # float32 hxwx3 (or 6), on the 8-bit grid when the degradation quantises
    cond: Conditioning = field(
        default_factory=Conditioning
    )  # what the pair was made with (bokeh: its lenses)
    #: what the synthesis knew that a user's photo never tells (motion blur: its ``kernel``),
    #: for oracle rows only
    known: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def views(self) -> int:
        return self.gt.shape[2] // 3


@dataclass
class HeldoutRow:
    photo: str
    method: str
    psnr: float
    ssim: float
    seconds: float
    #: the task's own metrics (shadow: RMSE in LAB), by metric name
    extra: dict[str, float] = field(default_factory=dict)


_EXTRA_METRICS = {
    **METRICS,
    "hf-ratio": hf_energy_ratio,
    # BT.601 luma, as deraining (Rain100H) and SR benchmarks report PSNR and SSIM
    "psnr-y": lambda out, gt, max_value: psnr(out, gt, max_value=max_value, y_channel=True),
    "ssim-y": lambda out, gt, max_value: ssim(out, gt, max_value=max_value, y_channel=True),
    # SR benchmarks' convention (BasicSR): luma, ``scale`` pixels cropped from every edge
    "psnr-y-crop4": lambda out, gt, max_value: psnr(
        out, gt, max_value=max_value, y_channel=True, crop_border=4
    ),
    "psnr-y-crop2": lambda out, gt, max_value: psnr(
        out, gt, max_value=max_value, y_channel=True, crop_border=2
    ),
}

#: Metrics of a region of each case (the task's :meth:`~irctl.tasks.base.Task.metric_mask`:
#: an inpainting case's holes): (out, gt, max_value, mask) → value.
_MASKED_METRICS: dict[str, Callable[..., float]] = {
    "psnr-mask": lambda out, gt, max_value, mask: masked_psnr(out, gt, mask, max_value=max_value),
    "ssim-mask": lambda out, gt, max_value, mask: masked_ssim(out, gt, mask, max_value=max_value),
}


def heldout_setting(preset: Preset) -> tuple[object, ...]:
    """What decides a preset's held-out cases: two models can share a table when it is equal
    (degradation settings only training draws from, which the task names, do not count)."""
    training_only = get_task(preset.task).training_only
    degradation = dataclasses.replace(
        preset.degradation,
        **{name: getattr(DegradationConfig(), name) for name in training_only},
    )
    return degradation, preset.data.test


def heldout_photos(preset: Preset) -> list[HeldoutPhoto]:
    photos = []
    for i, name in enumerate(preset.data.test):
        synthesize = build_pair_synthesis(preset.degradation, heldout_index=i)
        (photo,) = load_photos([name], preset.degradation)
        lq, gt, cond, known = synthesize_pair(photo, synthesize, seed=HELDOUT_SEED + i)
        gt8 = to_dtype(np.clip(gt, 0.0, 1.0), np.uint8)
        photos.append(
            HeldoutPhoto(name, gt8, lq.astype(np.float32), Conditioning(cond), dict(known))
        )
    return photos


@dataclass(frozen=True)
class CaseMethod:
    """A row that reads more of a held-out case than a user's input holds: what the synthesis
    knew (Richardson–Lucy given the true kernel) or the ground truth itself (DiffIR given the
    IPR of the ground truth). Oracles and upper bounds: their labels say so."""

    run: Callable[[HeldoutPhoto], np.ndarray]


#: A method under comparison: (LQ float HxWx3, conditioning) → restored float HxWx3, or a
#: :class:`CaseMethod`.
MethodFn = Callable[[np.ndarray, Conditioning], np.ndarray] | CaseMethod


def model_method(
    restorer: Restorer,
    options: SampleOptions,
    seed: int,
    device: torch.device,
    complete: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> MethodFn:
    """A model as a table row; ``complete`` is the task's (irctl/tasks/base.py), so the table
    scores what `restore` writes."""

    def run(lq: np.ndarray, cond: Conditioning) -> np.ndarray:
        image = Image(pixels=lq, alpha=None, dtype=np.dtype(np.uint8))
        out = restore_image(restorer, image, options, seed=seed, device=device, cond=cond)
        return complete(out, lq) if complete is not None else out

    return run


def unchanged_psnr(
    restorer: Restorer,
    options: SampleOptions,
    seed: int,
    device: torch.device,
    names: tuple[str, ...] | None = None,
) -> dict[str, float]:
    """PSNR of the restorer's output against its own input for each held-out photo (or each of
    ``names``) given *clean* (8-bit, nothing to restore): how far a model moves a photo it
    should leave alone — a shadow remover handed a photo without a cast shadow. Higher is
    better; ∞ = untouched."""
    clean = {
        name: to_dtype(load_photos([name], restorer.preset.degradation)[0], np.uint8)
        for name in names or restorer.preset.data.test
    }
    return psnr_against_itself(restorer, options, seed, device, clean)


def psnr_against_itself(
    restorer: Restorer,
    options: SampleOptions,
    seed: int,
    device: torch.device,
    images8: dict[str, np.ndarray],
) -> dict[str, float]:
    """PSNR of the restorer's output of each 8-bit image (by name) against that image, scored
    as :func:`run_heldout` scores a table."""
    cases = [
        HeldoutPhoto(name, image8, image8 / np.float32(255.0)) for name, image8 in images8.items()
    ]
    label = "model"
    rows = run_heldout(cases, {label: model_method(restorer, options, seed, device)})
    return {row.photo: row.psnr for row in rows if row.method == label}


def case_tensors(photo: HeldoutPhoto, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A case's LQ and ground truth (in [0, 1]) as 1×C×H×W float32 tensors on ``device``."""
    lq = torch.from_numpy(photo.lq.transpose(2, 0, 1).copy())[None]
    gt = torch.from_numpy((photo.gt / 255.0).astype(np.float32).transpose(2, 0, 1).copy())[None]
    return lq.to(device), gt.to(device)


def oracle_model_method(
    restorer: Restorer,
    oracle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    complete: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> CaseMethod:
    """One of the restorer's :meth:`~irctl.methods.base.Restorer.oracle_runs` as a table row:
    ``oracle(LQ, GT)`` (1×C×H×W tensors on ``device``) on the whole image, untiled."""

    def run(photo: HeldoutPhoto) -> np.ndarray:
        with torch.inference_mode():
            out = oracle(*case_tensors(photo, device))
        restored = out[0].float().cpu().numpy().transpose(1, 2, 0)
        return complete(restored, photo.lq) if complete is not None else restored

    return CaseMethod(run)


def classical_method(name: str, preset: Preset) -> CaseMethod:
    """A classical baseline as a row; it gets what the case's synthesis knew (an oracle's
    kernel) and ignores it unless it is an oracle."""
    fn = CLASSICAL[name]
    return CaseMethod(lambda photo: fn(photo.lq, preset.degradation, photo.known))


def folder_name(label: str) -> str:
    """A shell-friendly folder name for a method label: 'x (sde, 100 steps)' → 'x-sde-100-steps'."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-")


def _save_views(
    save_dir: Path, folder: str, name: str, image8: np.ndarray, suffixes: tuple[str, ...]
) -> None:
    """One PNG per view of a case (every 3 channels), named <name><suffix>.png."""
    for v, suffix in enumerate(suffixes):
        file_name = f"{name}{suffix}.png"
        view = image8[..., 3 * v : 3 * v + 3]
        write_image(save_dir / folder / file_name, view / 255.0, dtype=np.uint8)


def _per_view_mean(metric: Callable[..., float], out8: np.ndarray, gt8: np.ndarray) -> float:
    """A metric of a (possibly stereo) case: the mean over its views, as stereo SR reports it."""
    views = gt8.shape[2] // 3
    return float(
        np.mean(
            [
                metric(out8[..., 3 * v : 3 * v + 3], gt8[..., 3 * v : 3 * v + 3], max_value=255)
                for v in range(views)
            ]
        )
    )


def _case_metrics(
    photo: HeldoutPhoto,
    names: tuple[str, ...],
    metric_mask: Callable[[np.ndarray], np.ndarray | None] | None,
) -> dict[str, Callable[..., float]]:
    """The extra metrics of one case, by name, as (out, gt, max_value) → value: the masked
    ones bound to the case's mask."""
    masked = [name for name in names if name in _MASKED_METRICS]
    mask = metric_mask(photo.lq) if masked and metric_mask is not None else None
    if masked and mask is None:
        raise ValueError(f"{', '.join(masked)} need a mask, and {photo.name} has none")
    return {
        name: (
            partial(_MASKED_METRICS[name], mask=mask)
            if name in _MASKED_METRICS
            else _EXTRA_METRICS[name]
        )
        for name in names
    }


def run_heldout(
    photos: list[HeldoutPhoto],
    methods: dict[str, MethodFn],
    *,
    save_dir: Path | None = None,
    on_row: Callable[[HeldoutRow], None] | None = None,
    extra_metrics: tuple[str, ...] = (),
    input_label: str = "input",
    input_fn: MethodFn | None = None,
    view_suffixes: tuple[str, ...] = ("",),
    metric_mask: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> list[HeldoutRow]:
    """Score every method on every photo; the input is always the first row (``input_fn``
    turns the LQ into a comparable image: an SR table's bicubic upsampling; default the LQ
    itself). ``extra_metrics`` names further metrics (e.g. ``rmse-lab``, ``hf-ratio``). A case
    of several views (every 3 channels; stereo L‖R) is scored per view and averaged, and its
    images saved as one file per view named by ``view_suffixes`` (the task's). The masked
    metrics (``psnr-mask``, ``ssim-mask``) score the pixels ``metric_mask`` (the task's) picks
    from each case's LQ."""
    rows = []
    first: MethodFn = input_fn or (lambda lq, _cond: lq)
    all_methods: dict[str, MethodFn] = {input_label: first, **methods}
    for photo in photos:
        metrics = _case_metrics(photo, extra_metrics, metric_mask)
        if save_dir is not None:
            _save_views(save_dir, "gt", photo.name, photo.gt, view_suffixes)
        for label, fn in all_methods.items():
            tic = time.perf_counter()
            out = fn.run(photo) if isinstance(fn, CaseMethod) else fn(photo.lq, photo.cond)
            seconds = time.perf_counter() - tic if label != input_label else 0.0
            out8 = to_dtype(np.clip(out, 0.0, 1.0), np.uint8)
            if save_dir is not None:
                _save_views(save_dir, folder_name(label), photo.name, out8, view_suffixes)
            row = HeldoutRow(
                photo=photo.name,
                method=label,
                psnr=_per_view_mean(psnr, out8, photo.gt),
                ssim=_per_view_mean(ssim, out8, photo.gt),
                seconds=seconds,
                extra={
                    name: _per_view_mean(metric, out8, photo.gt) for name, metric in metrics.items()
                },
            )
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def markdown_table(
    rows: list[HeldoutRow], baseline: str = "input", headers: dict[str, str] | None = None
) -> str:
    """Mean PSNR/SSIM (and the rows' extra metrics) per method, with the PSNR gain over
    ``baseline``, as a Markdown table. ``headers`` names the extra metrics' columns."""
    methods = list(dict.fromkeys(r.method for r in rows))
    extras = list(dict.fromkeys(name for r in rows for name in r.extra))
    headers = headers or {}

    def mean(m: str, value: Callable[[HeldoutRow], float]) -> float:
        return float(np.mean([value(r) for r in rows if r.method == m]))

    base = mean(baseline, lambda r: r.psnr)
    extra_heads = "".join(f" {headers.get(name, name)} |" for name in extras)
    lines = [
        f"| method | PSNR (dB) | gain over {baseline} (dB) | SSIM |{extra_heads} seconds / image |",
        "|---|---:|---:|---:|" + "---:|" * len(extras) + "---:|",
    ]
    for m in methods:
        p = mean(m, lambda r: r.psnr)
        extra_cells = "".join(
            f" {mean(m, lambda r, name=name: r.extra[name]):.2f} |" for name in extras
        )
        lines.append(
            f"| {m} | {p:.2f} | {p - base:+.2f} | {mean(m, lambda r: r.ssim):.4f} |"
            f"{extra_cells} {mean(m, lambda r: r.seconds):.1f} |"
        )
    return "\n".join(lines) + "\n"


def model_reports(
    restorer: Restorer, photos: list[HeldoutPhoto], options: SampleOptions, device: torch.device
) -> dict[str, str]:
    """The model's own extra tables on the held-out photos (:meth:`Restorer.reports`)."""
    cases = [(photo.name, *case_tensors(photo, device)) for photo in photos]
    return restorer.reports(cases, options)
