"""`irctl compare`: the held-out quality table (models vs the classical method vs the input)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from irctl.cli.common import EXIT_USAGE, stderr_console
from irctl.config import PresetError
from irctl.tasks import DEFAULT_TASK


def compare(
    task: str = typer.Option(
        DEFAULT_TASK, "--task", "-t", help="Task whose held-out photos to use."
    ),
    models: str = typer.Option(
        None,
        "--models",
        help="Comma-separated presets (bundled weights) or .safetensors files "
        "(default: every preset of the task with bundled weights).",
    ),
    classical: str = typer.Option(
        None, "--classical", help="Classical baselines, comma-separated (default: the task's)."
    ),
    samplers: str = typer.Option(
        None,
        "--samplers",
        help="Diffusion models run once per sampler:steps pair, comma-separated (default: "
        "each model's own comparison runs, e.g. the paper's sampler at T steps).",
    ),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    out: Path = typer.Option(
        Path("results") / "heldout", "--out", "-o", help="Folder for table.md, CSV and images."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print all rows as JSON on stdout."),
) -> None:
    """Score models and the classical baseline on the task's held-out photos (never trained on).

    Stereo tasks score each view and average them; an SR table's first row is the bicubic
    upsampling of the input.

    Writes OUT/table.md (the README's table), OUT/per_image.csv and every output image under
    OUT/<method>/ so they can be looked at, not only measured.
    """
    from irctl.engine.checkpoint import CheckpointError
    from irctl.engine.device import resolve_device
    from irctl.engine.heldout import (
        classical_method,
        heldout_photos,
        heldout_setting,
        markdown_table,
        model_method,
        model_reports,
        run_heldout,
    )
    from irctl.engine.restore import load_restorer, resolve_options
    from irctl.methods.classical import CLASSICAL
    from irctl.metrics.report import write_per_image_csv
    from irctl.presets import available_presets, load_preset, weights_path
    from irctl.tasks import get_task

    console = stderr_console()
    try:
        torch_device = resolve_device(device)
        if models:
            model_list = [m.strip() for m in models.split(",") if m.strip()]
        else:
            task_presets = [load_preset(n) for n in available_presets()]
            model_list = [
                p.name
                for p in task_presets
                if p.task == task and (w := weights_path(p)) is not None and w.is_file()
            ]
        restorers = [
            load_restorer(weights=Path(m), preset=None, task=None, device=torch_device)
            if m.endswith(".safetensors")
            else load_restorer(weights=None, preset=m, task=None, device=torch_device)
            for m in model_list
        ]
    except (CheckpointError, PresetError, ValueError) as err:
        console.print(f"error: {err}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    if not restorers:
        console.print(f"error: no model with weights for task {task!r}", markup=False)
        raise typer.Exit(EXIT_USAGE)
    task_spec = get_task(restorers[0].preset.task)
    classical_list = (
        [c.strip() for c in classical.split(",") if c.strip()]
        if classical is not None
        else [task_spec.classical]
        if task_spec.classical
        else []
    )
    unknown = [c for c in classical_list if c not in CLASSICAL]
    if unknown:
        console.print(f"error: unknown classical method(s) {unknown}; known: {list(CLASSICAL)}")
        raise typer.Exit(EXIT_USAGE)
    reference = restorers[0].preset
    for r in restorers[1:]:
        if heldout_setting(r.preset) != heldout_setting(reference):
            console.print(
                f"error: {r.preset.name} and {reference.name} differ in degradation or held-out "
                "photos; compare models of one task setting at a time",
                markup=False,
            )
            raise typer.Exit(EXIT_USAGE)
    methods = {c: classical_method(c, reference) for c in classical_list}
    try:
        sampler_specs = [
            (name, int(n))
            for name, _, n in (spec.partition(":") for spec in (samplers or "").split(","))
            if name
        ]
    except ValueError:
        console.print(f"error: --samplers expects name:steps pairs, got {samplers!r}")
        raise typer.Exit(EXIT_USAGE) from None
    for r in restorers:
        if r.sampling is None:
            options = resolve_options(r)
            methods[r.preset.name] = model_method(r, options, seed, torch_device)
            continue
        for name, n in sampler_specs or r.sampling.comparison:
            try:
                options = resolve_options(r, sampler=name, steps=n)
            except ValueError as err:
                console.print(f"error: {r.preset.name}: {err}", markup=False)
                raise typer.Exit(EXIT_USAGE) from None
            methods[f"{r.preset.name} ({name}, {n} steps)"] = model_method(
                r, options, seed, torch_device
            )
    photos = heldout_photos(reference)
    console.print(
        f"held-out photos {', '.join(p.name for p in photos)}; degradation {reference.degradation}"
    )

    task_metrics = task_spec.metrics

    def on_row(row) -> None:
        extras = "".join(f"{task_metrics[k]} {v:6.2f}  " for k, v in row.extra.items())
        console.print(
            f"  {row.photo:10s} {row.method:45s} PSNR {row.psnr:6.2f}  SSIM {row.ssim:.4f}  "
            f"{extras}{row.seconds:6.1f} s",
            markup=False,
        )

    input_label, input_fn = task_spec.input_row(reference.degradation)
    rows = run_heldout(
        photos,
        methods,
        save_dir=out,
        on_row=on_row,
        extra_metrics=tuple(task_metrics),
        input_label=input_label,
        input_fn=input_fn,
        view_suffixes=task_spec.view_suffixes,
    )
    table = markdown_table(rows, baseline=input_label, headers=task_metrics)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    write_per_image_csv(
        out / "per_image.csv",
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
    console.print(table, markup=False)
    for r in restorers:
        for stem, report in model_reports(r, photos, resolve_options(r), torch_device).items():
            (out / f"{stem}.md").write_text(report)
            console.print(report, markup=False)
    if json_out:
        typer.echo(json.dumps([asdict(r) for r in rows]))
