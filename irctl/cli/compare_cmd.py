"""`irctl compare`: the held-out quality table (models vs the classical method vs the input)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from irctl.cli.common import (
    EXIT_USAGE,
    checked,
    self_ensemble_option,
    stderr_console,
    task_option,
)
from irctl.engine.options import (
    check_classical,
    check_device,
    check_models,
    parse_sampler_runs,
)
from irctl.io.folders import check_output_dir


def compare(
    task: str = task_option("Task whose held-out photos to use."),
    models: str = typer.Option(
        None,
        "--models",
        help="Comma-separated presets (bundled weights) or .safetensors files "
        "(default: every preset of the task with bundled weights).",
        callback=checked(check_models),
    ),
    classical: str = typer.Option(
        None,
        "--classical",
        help="Classical baselines, comma-separated (default: the task's; '' for none).",
        callback=checked(check_classical),
    ),
    samplers: str = typer.Option(
        None,
        "--samplers",
        help="Diffusion models run once per sampler:steps pair, comma-separated (default: "
        "each model's own comparison runs, e.g. the paper's sampler at T steps).",
        callback=checked(parse_sampler_runs),
    ),
    self_ensemble: bool = self_ensemble_option(),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option(
        "auto", "--device", help="auto | cpu | cuda | cuda:N.", callback=checked(check_device)
    ),
    out: Path = typer.Option(
        Path("results") / "heldout",
        "--out",
        "-o",
        file_okay=False,
        help="Folder for table.md, CSV and images.",
        callback=checked(check_output_dir),
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
    json_out: bool = typer.Option(False, "--json", help="Print all rows as JSON on stdout."),
) -> None:
    """Score models and the classical baseline on the task's held-out photos (never trained on).

    Stereo tasks score each view and average them; an SR table's first row is the bicubic
    upsampling of the input.

    Writes OUT/table.md (the README's table), OUT/per_image.csv and every output image under
    `OUT/<method>/` so they can be looked at, not only measured.
    """
    from irctl.engine.compare import CompareRequest, compare_models
    from irctl.engine.models import UsageError

    console = stderr_console()
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        request = CompareRequest(
            task=task,
            out=out,
            models=_names(models),
            classical=_names(classical),
            samplers=_sampler_runs(samplers),
            seed=seed,
            device=device,
            self_ensemble=self_ensemble,
        )
        outcome = compare_models(
            request, lambda line: console.print(line, markup=False), _row_printer(console)
        )
    except UsageError as err:
        console.print(f"error: {err}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    console.print(outcome.table, markup=False)
    for report in outcome.reports.values():
        console.print(report, markup=False)
    if json_out:
        typer.echo(json.dumps([asdict(r) for r in outcome.rows]))


def _names(text: str | None) -> list[str] | None:
    """'a, b' → ['a', 'b']; None (not given) stays None."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _sampler_runs(text: str | None) -> list[tuple[str, int]] | None:
    """'sde:100,posterior:20' → [('sde', 100), ('posterior', 20)] (checked as parsed)."""
    return None if text is None else parse_sampler_runs(text)


def _row_printer(console):
    def on_row(row, headers: dict[str, str]) -> None:
        extras = "".join(f"{headers[k]} {v:6.2f}  " for k, v in row.extra.items())
        console.print(
            f"  {row.photo:10s} {row.method:45s} PSNR {row.psnr:6.2f}  SSIM {row.ssim:.4f}  "
            f"{extras}{row.seconds:6.1f} s",
            markup=False,
        )

    return on_row
