"""`irctl train`: train any method/task from a preset."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from irctl.cli.common import EXIT_USAGE, checked, preset_option, stderr_console
from irctl.config import PresetError
from irctl.engine.checkpoint import CheckpointError
from irctl.engine.options import check_checkpoint, check_device, check_overrides
from irctl.io.folders import check_output_dir
from irctl.presets import apply_overrides, load_preset


def train(
    preset: str = preset_option(..., "Preset name (e.g. denoise-tiny) or path to a .toml file."),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        file_okay=False,
        help="Run folder for checkpoints and log.jsonl (default: `runs/<preset>`).",
        callback=checked(check_output_dir),
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue bit-exactly from the checkpoint in --out."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Start over in a run folder that holds a previous run (its weights, optimiser "
        "state and log are replaced); without it or --resume such a folder is refused.",
    ),
    init: Path = typer.Option(
        None,
        "--init",
        exists=True,
        dir_okay=False,
        callback=checked(check_checkpoint),
        help="Fine-tune: start from this irctl checkpoint's weights (a bundled model, a "
        "finished run, or an authors' release after `irctl import`) instead of a fresh "
        "initialisation; the preset gives the data, degradation and recipe.",
    ),
    stop_at: int = typer.Option(
        None,
        "--stop-at",
        min=1,
        help="Stop (checkpointed) after this step; resume later with --resume.",
    ),
    stage: str = typer.Option(
        None,
        "--stage",
        help="Train one stage only (e.g. compressor, then diffusion for latent presets); "
        "default: every stage in order.",
    ),
    iterations: int = typer.Option(
        None,
        "--iterations",
        min=1,
        help="Override train.iterations (total length of the schedule).",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override any preset value, e.g. --set train.lr=3e-4 (repeatable).",
        callback=checked(check_overrides),
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
    device: str = typer.Option(
        "auto", "--device", help="auto | cpu | cuda | cuda:N.", callback=checked(check_device)
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print the final result as JSON on stdout."
    ),
) -> None:
    """Train a model from a preset on pairs synthesised from the photos scikit-image ships.

    Writes OUT/weights.safetensors (EMA weights with the resolved preset embedded — all that
    `irctl restore --weights` needs), OUT/weights.state.safetensors (optimiser state for an exact
    --resume) and OUT/log.jsonl. Photos listed as `test` in the preset are never trained on.

    `--init` fine-tunes an existing model on the preset's data instead of starting from
    scratch.

    Latent presets train in two stages, the U-Net compressor first (OUT/compressor/) and then
    the diffusion model in its frozen latent (OUT/); OUT/weights.safetensors holds both.
    """
    import os

    import torch

    from irctl.engine.device import resolve_device
    from irctl.engine.train import check_init, check_run_folder
    from irctl.engine.train import train as run_training

    console = stderr_console(quiet=int(os.environ.get("RANK", "0")) != 0)  # torchrun: rank 0 talks
    try:
        resolved = load_preset(preset)
        overrides = list(set_) + (
            [f"train.iterations={iterations}"] if iterations is not None else []
        )
        resolved = apply_overrides(resolved, overrides)
        out = out or Path("runs") / resolved.name
        todo = check_run_folder(resolved, out, resume=resume, overwrite=overwrite, stage=stage)
        if init is not None:
            check_init(resolved, init)
    except (CheckpointError, PresetError, ValueError) as err:
        console.print(f"error: {err}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    if threads:
        torch.set_num_threads(threads)
    steps = [resolved.train.for_stage(name).iterations for name in todo]
    plan = ", ".join(f"{name} {n}" for name, n in zip(todo, steps, strict=True))
    plan = f"{steps[0]} steps" if len(todo) == 1 else f"{plan} steps"
    console.print(
        f"training [bold]{escape(resolved.name)}[/] ({resolved.method}, task {resolved.task}) "
        f"for {plan} → {escape(str(out))}"
    )

    def log(record: dict) -> None:
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()]
        console.print("  " + "  ".join(parts))

    try:
        torch_device = resolve_device(device)
        result = run_training(
            resolved,
            out,
            resume=resume,
            stop_at=stop_at,
            log=log,
            device=torch_device,
            stage=stage,
            overwrite=overwrite,
            init=init,
            info=lambda line: console.print(line, markup=False),
        )
    except (CheckpointError, PresetError, ValueError) as err:
        console.print(f"error: {err}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    console.print(f"done at step {result.step}: {result.weights}")
    if json_out:
        typer.echo(
            json.dumps(
                {"weights": str(result.weights), "step": result.step, "val": result.last_val}
            )
        )
