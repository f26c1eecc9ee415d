"""`irctl restore`: stream a folder (or a file list on stdin) through a restoration model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from irctl.cli.common import EXIT_OK, EXIT_PARTIAL_FAILURE, EXIT_USAGE, stderr_console
from irctl.config import PresetError


def restore(
    src: str = typer.Option(
        ..., "--src", "-i", help="Input folder, a single image, or '-' to read paths from stdin."
    ),
    dst: Path = typer.Option(..., "--dst", "-o", help="Output folder (created if missing)."),
    task: str = typer.Option(
        "denoise",
        "--task",
        "-t",
        help="denoise | dehaze | bokeh | shadow | stereo-sr; picks the task's bundled default "
        "model.",
    ),
    method: str = typer.Option(
        None,
        "--method",
        "-m",
        help="The task's bundled model of this method instead of its default: regression "
        "(one fast forward pass), refusion (pixel IR-SDE), latent_refusion.",
    ),
    preset: str = typer.Option(
        None, "--preset", "-p", help="Use this preset's bundled weights instead of the task's."
    ),
    weights: Path = typer.Option(
        None, "--weights", "-w", help="A .safetensors checkpoint (from `irctl train`)."
    ),
    sampler: str = typer.Option(
        None, "--sampler", help="sde | ode | posterior (default: the preset's)."
    ),
    steps: int = typer.Option(
        None, "--steps", help="Sampling steps (<= T) (default: the preset's)."
    ),
    tile: int = typer.Option(
        None, "--tile", help="Tile size in pixels, 0 = whole image (default: the preset's)."
    ),
    tile_overlap: int = typer.Option(
        None, "--tile-overlap", help="Overlap between tiles (pixels)."
    ),
    tile_batch: int = typer.Option(
        None, "--tile-batch", min=1, help="Tiles per network call (default: the preset's)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Random seed: same seed, same bytes (same device and --threads)."
    ),
    src_lens: str = typer.Option(
        None,
        "--src-lens",
        help="bokeh: the lens every input was taken with (e.g. Sony50mmf16.0BS).",
    ),
    tgt_lens: str = typer.Option(
        None, "--tgt-lens", help="bokeh: the lens the outputs should look taken with."
    ),
    lens_meta: Path = typer.Option(
        None,
        "--lens-meta",
        help="bokeh: per-image lenses, CSV (file,src_lens,tgt_lens) or JSON "
        "(default: lenses.csv or lenses.json in --src).",
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    threads: int = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: all cores)."
    ),
    ext: str = typer.Option(
        None, "--ext", help="Output format (png, tif, jpg) (default: same as input)."
    ),
    suffix: str = typer.Option("", "--suffix", help="Appended to output file stems, e.g. _out."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo images whose output already exists."
    ),
    recursive: bool = typer.Option(
        True, "--recursive/--no-recursive", help="Descend into sub-folders of --src."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Restore every image in SRC and write the results to DST, mirroring sub-folders.

    Examples:

      irctl restore --task denoise --src noisy/ --dst restored/

      find shots -name '*.png' | irctl restore --src - --dst restored/ --json

      irctl restore --task bokeh --src in/ --dst out/ --src-lens Sony50mmf16.0BS --tgt-lens Sony50mmf1.8BS

      irctl restore --task stereo-sr --src pairs/ --dst sr/

    Stereo models take left/right pairs, paired by name: scene_L.png + scene_R.png (also
    _left/_right, or the same name in L/ and R/ or left/ and right/ folders); they write
    scene_L.png and scene_R.png, both or neither. A file without its partner is an error.

    Outputs keep the input's format, bit depth (8/16-bit, float TIFF), alpha channel and
    grey/colour layout. Each output is written atomically, so an interrupted run can simply be
    started again: finished images are skipped (use --overwrite to redo them). A file that
    cannot be read or restored is reported on stderr in one line and the batch goes on; the exit
    code is then 1. Under torchrun, the file list (stereo: the pair list) is sharded by
    RANK/WORLD_SIZE.
    """
    import torch

    from irctl.engine.checkpoint import CheckpointError
    from irctl.engine.device import resolve_device
    from irctl.engine.restore import (
        describe_sampling,
        load_restorer,
        plan_jobs,
        resolve_options,
        run_jobs,
    )
    from irctl.engine.restore_pairs import plan_pair_jobs, run_pair_jobs
    from irctl.io.folders import discover, shard
    from irctl.io.images import remove_stale_partials
    from irctl.io.stereo import remove_stale_pair_partials

    console = stderr_console()

    def usage_error(message: str) -> typer.Exit:
        console.print(f"error: {message}", markup=False)
        return typer.Exit(EXIT_USAGE)

    try:
        files = discover(src, stdin=sys.stdin if src == "-" else None, recursive=recursive)
        torch_device = resolve_device(device)
        restorer = load_restorer(
            weights=weights, preset=preset, task=task, device=torch_device, method=method
        )
    except (FileNotFoundError, CheckpointError, PresetError, ValueError) as err:
        raise usage_error(str(err)) from None
    resolved = restorer.preset
    try:
        options = resolve_options(
            restorer,
            sampler=sampler,
            steps=steps,
            tile=tile,
            overlap=tile_overlap,
            tile_batch=tile_batch,
        )
    except ValueError as err:
        raise usage_error(str(err)) from None
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    stereo = resolved.network.views == 2
    if not stereo:  # pairs are sharded once paired, so a pair never straddles two ranks
        files = shard(files, rank, world)
    src_root = Path(src) if src != "-" and Path(src).is_dir() else None
    try:
        conditioner = _conditioner(resolved, src_root, src_lens, tgt_lens, lens_meta)
    except ValueError as err:
        raise usage_error(str(err)) from None
    dst.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_partials(dst) + remove_stale_pair_partials(dst):
        console.print(f"removed an unfinished temp file from an interrupted run: {stale}")
    planner = plan_pair_jobs if stereo else plan_jobs
    plan = planner(files, dst, src_root=src_root, ext=ext, suffix=suffix, overwrite=overwrite)
    if stereo:
        plan.jobs, plan.skipped = shard(plan.jobs, rank, world), shard(plan.skipped, rank, world)
        plan.errors = shard(plan.errors, rank, world)
    for path, reason in plan.errors:
        console.print(f"error: {path}: {reason}", markup=False)
    how = describe_sampling(restorer, options, seed)
    console.print(
        f"{resolved.name} ({resolved.method}) on {torch_device}: {len(plan.jobs)} "
        f"{'pairs' if stereo else 'images'} to restore, "
        f"{len(plan.skipped)} already done; {how}, tile {options.tiles.tile or 'off'}"
    )
    if threads:
        torch.set_num_threads(threads)
    elif torch_device.type == "cpu" and torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        files_task = progress.add_task("pairs" if stereo else "images", total=len(plan.jobs))
        steps_task = progress.add_task("steps", total=options.steps)

        def on_step(done: int, total: int) -> None:
            progress.update(steps_task, completed=done, total=total)

        def on_done(job, seconds: float) -> None:
            progress.advance(files_task)
            what = _describe(job)
            console.print(f"restored {what} ({seconds:.1f} s)", markup=False)

        def on_error(path: Path, reason: str) -> None:
            progress.advance(files_task)
            console.print(f"error: {path}: {reason}", markup=False)

        common = dict(
            seed=seed, device=torch_device, on_error=on_error, on_done=on_done, on_step=on_step
        )
        if stereo:
            summary = run_pair_jobs(restorer, plan.jobs, options, **common)
        else:
            summary = run_jobs(restorer, plan.jobs, options, conditioner=conditioner, **common)
    n_failed = len(summary.failed) + len(plan.errors)
    console.print(
        f"done: {len(summary.restored)} restored, {len(plan.skipped)} skipped, {n_failed} failed "
        f"in {summary.seconds:.1f} s"
    )
    if json_out:
        failed = [{"file": str(p), "reason": r} for p, r in plan.errors + summary.failed]
        typer.echo(
            json.dumps(
                {
                    "preset": resolved.name,
                    "restored": [_job_json(j) for j in summary.restored],
                    "skipped": [_job_json(j) for j in plan.skipped],
                    "failed": failed,
                    "seconds": summary.seconds,
                    "megapixels": summary.megapixels,
                }
            )
        )
    raise typer.Exit(EXIT_PARTIAL_FAILURE if n_failed else EXIT_OK)


def _describe(job) -> str:
    """'src → dst', or for a stereo pair both inputs and both outputs."""
    if hasattr(job, "pair"):
        return f"{job.pair.left} + {job.pair.right} → {job.left_dst} + {job.right_dst}"
    return f"{job.src} → {job.dst}"


def _job_json(job) -> dict[str, str]:
    """A job for --json: src/dst, plus src_right/dst_right for a stereo pair."""
    row = {"src": str(job.src), "dst": str(job.dst)}
    if hasattr(job, "pair"):
        row.update(src_right=str(job.pair.right), dst_right=str(job.right_dst))
    return row


def _conditioner(preset, src_root, src_lens, tgt_lens, lens_meta):
    """Per-image conditioning for models that take it (bokeh: lenses), else None. Lens options
    given to a model that takes no lens are a usage error, not silently ignored."""
    from irctl.io.lens_meta import build_lens_conditioner

    lens_given = src_lens is not None or tgt_lens is not None or lens_meta is not None
    if not preset.network.cond_scalars:
        if lens_given:
            raise ValueError(f"{preset.name} ({preset.task}) takes no lens; drop the lens options")
        return None
    return build_lens_conditioner(
        meta=lens_meta,
        src_root=src_root,
        src_lens=src_lens,
        tgt_lens=tgt_lens,
        preset_default=preset.degradation.lens_default,
    )
