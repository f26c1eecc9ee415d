"""Which model a run uses and how it runs: loading a Restorer from a checkpoint, a preset or a
task, the run's options validated once against what the model offers, and torch's threads.
Shared by restore, benchmark and compare."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from irctl.config import Preset
from irctl.engine.checkpoint import CheckpointError, load_checkpoint, load_modules
from irctl.methods import build_restorer
from irctl.methods.base import Restorer, SampleOptions
from irctl.presets import load_preset, preset_for_task, weights_path
from irctl.tasks import DEFAULT_TASK, get_task


class UsageError(ValueError):
    """A problem with the run's options or model, found before any image is restored."""


def load_restorer(
    *,
    weights: Path | None,
    preset: str | None,
    task: str | None,
    device: torch.device,
    method: str | None = None,
    random_weights: bool = False,
    unfinished: bool = False,
) -> Restorer:
    """Build the Restorer from a checkpoint (whose embedded preset wins), a preset's bundled
    weights, or the task's bundled model (its default, or the one of ``method``).
    ``random_weights``: the preset's networks with a seeded initialisation and no weights at
    all — for timing a model whose weights are not here (the official sizes); its outputs mean
    nothing. ``unfinished``: a checkpoint of an earlier training stage loads too (``irctl
    compare`` scores its :meth:`~irctl.methods.base.Restorer.unfinished_runs`); restoring
    needs the last stage."""
    if random_weights:
        if weights is not None or preset is None:
            raise ValueError("random weights need a --preset (and no --weights)")
        torch.manual_seed(0)
        restorer = build_restorer(load_preset(preset))
        for module in restorer.modules().values():
            module.to(device).eval()
        return restorer
    if weights is not None:
        ckpt = load_checkpoint(weights)
        resolved: Preset = ckpt.preset
    else:
        resolved = load_preset(preset or preset_for_task(task or DEFAULT_TASK, method))
        bundled = weights_path(resolved)
        if bundled is None or not bundled.is_file():
            raise CheckpointError(
                f"preset {resolved.name!r} has no bundled weights"
                + (f" (expected {bundled})" if bundled else "")
                + f"; train them with `irctl train --preset {resolved.name}` and pass --weights"
            )
        ckpt = load_checkpoint(bundled)
    restorer = build_restorer(resolved)
    finished = ckpt.stage == restorer.stages[-1]
    if not finished and not unfinished:
        raise CheckpointError(
            f"{weights or bundled}: holds the {ckpt.stage!r} stage of {resolved.name}; restoring "
            f"needs the finished {restorer.stages[-1]!r} stage"
        )
    needed = restorer.restore_modules() if finished else {}
    load_modules(needed, ckpt)
    # what only training needs (DiffIR's teacher) is loaded when the checkpoint kept it: the
    # restorer's upper-bound rows need it; so is whatever an unfinished stage holds
    extra = {
        name: module
        for name, module in restorer.modules().items()
        if name not in needed and ckpt.module_state(name)
    }
    load_modules(extra, ckpt)
    restorer.loaded_modules = frozenset(needed) | frozenset(extra)
    restorer.loaded_stage = ckpt.stage
    for module in restorer.modules().values():
        module.to(device).eval()
    return restorer


def resolve_options(restorer: Restorer, **overrides: Any) -> SampleOptions:
    """The run's options: the preset's defaults with the user's overrides (the keywords of
    :meth:`SampleOptions.from_preset`), validated once against what the model offers (a
    one-line ValueError: unknown sampler, steps out of range, a tile below the networks'
    padding multiple, an overlap not below the tile), right after the model loads and before
    any image is read. A model that runs one forward pass ignores sampler and steps."""
    options = SampleOptions.from_preset(restorer.preset, **overrides)
    if restorer.sampling is not None:
        restorer.sampling.check(options.sampler, options.steps)
    elif options.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {options.steps}")
    multiple = restorer.tile_multiple()
    if 0 < options.tiles.tile < multiple:
        raise ValueError(
            f"--tile {options.tiles.tile} is smaller than the network's padding multiple "
            f"{multiple}: use 0 (whole image) or at least {multiple}"
        )
    return options


def describe_sampling(restorer: Restorer, options: SampleOptions, seed: int) -> str:
    """'sampler posterior, 20 steps, seed 0', or 'single forward pass'; then ', self-ensemble
    of 8' when asked for."""
    ensemble = ""
    if options.self_ensemble:
        ensemble = f", self-ensemble of {len(get_task(restorer.preset.task).symmetries)}"
    if restorer.sampling is None:
        return "single forward pass" + ensemble
    return f"sampler {options.sampler}, {options.steps} steps, seed {seed}{ensemble}"


def set_threads(threads: int | None, device: torch.device) -> None:
    """torch's CPU threads: as asked, else at most one per core."""
    if threads:
        torch.set_num_threads(threads)
    elif device.type == "cpu" and torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)
