"""`irctl compare` short of parsing and printing: models, the task's classical baselines and the
input, scored on the task's held-out photos; writes table.md, per_image.csv, every output image
and the models' own reports (irctl/engine/heldout.py does the scoring)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from irctl.config import PresetError
from irctl.engine.checkpoint import CheckpointError
from irctl.engine.device import resolve_device
from irctl.engine.heldout import (
    HeldoutRow,
    MethodFn,
    classical_method,
    heldout_photos,
    heldout_setting,
    markdown_table,
    model_method,
    model_reports,
    oracle_model_method,
    run_heldout,
)
from irctl.engine.models import UsageError, load_restorer, resolve_options
from irctl.methods.base import Restorer, SampleOptions
from irctl.methods.classical import CLASSICAL
from irctl.metrics.report import write_per_image_csv
from irctl.presets import available_presets, load_preset, weights_path
from irctl.tasks import get_task


@dataclass(frozen=True)
class CompareRequest:
    task: str
    out: Path
    #: presets (bundled weights) or .safetensors files; None: every bundled model of the task
    models: list[str] | None = None
    #: classical baselines; None: the task's
    classical: list[str] | None = None
    #: (sampler, steps) runs of each diffusion model; None: each model's own comparison runs
    samplers: list[tuple[str, int]] | None = None
    seed: int = 0
    device: str = "auto"
    #: each model row also run as a self-ensemble (irctl/symmetry.py), in a row of its own
    self_ensemble: bool = False


@dataclass
class CompareOutcome:
    rows: list[HeldoutRow]
    table: str
    reports: dict[str, str]  # file stem → Markdown (a latent model's compressor)


def compare_models(
    request: CompareRequest,
    on_info: Callable[[str], None],
    on_row: Callable[[HeldoutRow, dict[str, str]], None],
) -> CompareOutcome:
    """Raises :class:`UsageError` (one line) for models, baselines or samplers that cannot be
    compared; ``on_row(row, metric headers)`` sees every row as it is scored."""
    try:
        device = resolve_device(request.device)
        restorers = [_load(name, device) for name in request.models or _bundled(request.task)]
    except (CheckpointError, PresetError, ValueError) as err:
        raise UsageError(str(err)) from None
    if not restorers:
        raise UsageError(f"no model with weights for task {request.task!r}")
    reference = restorers[0].preset
    task = get_task(reference.task)
    for r in restorers[1:]:
        if heldout_setting(r.preset) != heldout_setting(reference):
            raise UsageError(
                f"{r.preset.name} and {reference.name} differ in degradation or held-out "
                "photos; compare models of one task setting at a time"
            )
    baselines = request.classical if request.classical is not None else list(task.classical)
    baselines = [name for name in baselines if name]
    unknown = [name for name in baselines if name not in CLASSICAL]
    if unknown:
        raise UsageError(f"unknown classical method(s) {unknown}; known: {list(CLASSICAL)}")
    methods: dict[str, MethodFn] = {name: classical_method(name, reference) for name in baselines}
    for r in restorers:
        methods.update(_model_runs(r, request, device))
    photos = heldout_photos(reference)
    on_info(
        f"held-out photos {', '.join(p.name for p in photos)}; degradation {reference.degradation}"
    )
    input_label, input_fn = task.input_row(reference.degradation)
    rows = run_heldout(
        photos,
        methods,
        save_dir=request.out,
        on_row=lambda row: on_row(row, task.metrics),
        extra_metrics=tuple(task.metrics),
        input_label=input_label,
        input_fn=input_fn,
        view_suffixes=task.view_suffixes,
        metric_mask=task.metric_mask,
    )
    table = markdown_table(rows, baseline=input_label, headers=task.metrics)
    request.out.mkdir(parents=True, exist_ok=True)
    (request.out / "table.md").write_text(table)
    write_per_image_csv(
        request.out / "per_image.csv",
        [
            {
                "name": f"{r.photo}/{r.method}",
                "psnr": r.psnr,
                "ssim": r.ssim,
                **r.extra,
                "seconds": r.seconds,
            }
            for r in rows
        ],
    )
    reports: dict[str, str] = {}
    for r in filter(_finished, restorers):
        reports.update(model_reports(r, photos, resolve_options(r), device))
    for stem, report in reports.items():
        (request.out / f"{stem}.md").write_text(report)
    return CompareOutcome(rows, table, reports)


def _bundled(task: str) -> list[str]:
    presets = [load_preset(name) for name in available_presets()]
    return [
        p.name
        for p in presets
        if p.task == task and (w := weights_path(p)) is not None and w.is_file()
    ]


def _load(name: str, device) -> Restorer:
    """A preset's bundled model or a checkpoint file, which may hold an earlier training stage
    (scored by its :meth:`~irctl.methods.base.Restorer.unfinished_runs` alone)."""
    if name.endswith(".safetensors"):
        restorer = load_restorer(
            weights=Path(name), preset=None, task=None, device=device, unfinished=True
        )
        stage = restorer.loaded_stage
        if not _finished(restorer) and not restorer.unfinished_runs(stage):
            raise ValueError(
                f"{name}: holds the {stage!r} stage of {restorer.preset.name}, which scores "
                f"nothing before the finished {restorer.stages[-1]!r} stage"
            )
        return restorer
    return load_restorer(weights=None, preset=name, task=None, device=device)


def _finished(restorer: Restorer) -> bool:
    return restorer.loaded_stage == restorer.stages[-1]


def _model_runs(restorer: Restorer, request: CompareRequest, device) -> dict[str, MethodFn]:
    """The table rows of one model: one per sampler run, or one for a single forward pass; then
    its parts run alone (:meth:`~irctl.methods.base.Restorer.component_runs`) and its upper
    bounds (:meth:`~irctl.methods.base.Restorer.oracle_runs`), labelled as such. A checkpoint
    of an earlier stage gives only its unfinished runs, labelled with the stage."""
    name = restorer.preset.name
    complete = get_task(restorer.preset.task).complete
    if not _finished(restorer):
        stage = restorer.loaded_stage
        return {
            f"{name} after {stage} {label}": oracle_model_method(restorer, run, device, complete)
            for label, run in restorer.unfinished_runs(stage).items()
        }
    oracles = {
        f"{name} {label}": oracle_model_method(
            restorer, lambda lq, gt, run=run: run(lq), device, complete
        )
        for label, run in restorer.component_runs().items()
    }
    oracles.update(
        {
            f"{name} {label}": oracle_model_method(restorer, run, device, complete)
            for label, run in restorer.oracle_runs().items()
        }
    )
    plain: dict[str, SampleOptions] = {}
    if restorer.sampling is None:
        plain[name] = resolve_options(restorer)
    else:
        for sampler, steps in request.samplers or restorer.sampling.comparison:
            try:
                options = resolve_options(restorer, sampler=sampler, steps=steps)
            except ValueError as err:
                raise UsageError(f"{name}: {err}") from None
            plain[f"{name} ({sampler}, {steps} steps)"] = options
    runs: dict[str, MethodFn] = {}
    members = len(get_task(restorer.preset.task).symmetries)
    for label, options in plain.items():
        runs[label] = model_method(restorer, options, request.seed, device, complete)
        if request.self_ensemble:
            ensemble = dataclasses.replace(options, self_ensemble=True)
            runs[f"{label} self-ensemble of {members}"] = model_method(
                restorer, ensemble, request.seed, device, complete
            )
    return {**runs, **oracles}
