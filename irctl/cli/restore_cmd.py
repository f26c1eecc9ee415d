"""`irctl restore`: stream a folder (or a file list on stdin) through a restoration model.

Parse, call :func:`irctl.engine.restore.restore_folder`, print, exit. The flags of one task
(bokeh's lenses) come from the task registry, not from this file."""

from __future__ import annotations

import inspect
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

from irctl.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL_FAILURE,
    EXIT_USAGE,
    checked,
    markdown_safe,
    preset_option,
    self_ensemble_option,
    stderr_console,
    task_option,
    tile_layout_option,
    weights_option,
)
from irctl.engine.options import check_device, check_method
from irctl.io.folders import check_ext, check_output_dir, check_source, check_suffix
from irctl.io.images import DEFAULT_MAX_PIXELS
from irctl.io.names import json_name, shown
from irctl.methods import METHODS
from irctl.tasks import TASKS, all_task_options


def restore(
    src: str = typer.Option(
        ...,
        "--src",
        "-i",
        help="Input folder, a single image, or '-' to read paths from stdin.",
        callback=checked(check_source),
    ),
    dst: Path = typer.Option(
        ...,
        "--dst",
        "-o",
        file_okay=False,
        help="Output folder (created if missing; skipped when it lies inside --src).",
        callback=checked(check_output_dir),
    ),
    task: str = task_option(f"{' | '.join(TASKS)}; picks the task's bundled default model."),
    method: str = typer.Option(
        None,
        "--method",
        "-m",
        help=f"The task's bundled model of this method instead of its default: "
        f"{' | '.join(METHODS)}.",
        callback=checked(check_method),
    ),
    preset: str = preset_option(None, "Use this preset's bundled weights instead of the task's."),
    weights: Path = weights_option("A .safetensors checkpoint (from `irctl train`)."),
    sampler: str = typer.Option(
        None,
        "--sampler",
        help="One of the model's samplers (default: the preset's); a wrong name lists them.",
    ),
    steps: int = typer.Option(
        None, "--steps", min=1, help="Sampling steps (<= T) (default: the preset's)."
    ),
    tile: int = typer.Option(
        None,
        "--tile",
        min=0,
        help="Tile size in pixels, 0 = whole image, else at least the network's padding "
        "multiple (default: the preset's).",
    ),
    tile_overlap: int = typer.Option(
        None, "--tile-overlap", min=0, help="Overlap between tiles (pixels), below --tile."
    ),
    tile_batch: int = typer.Option(
        None, "--tile-batch", min=1, help="Tiles per network call (default: the preset's)."
    ),
    tile_layout: str = tile_layout_option(),
    self_ensemble: bool = self_ensemble_option(),
    seed: int = typer.Option(
        0, "--seed", help="Random seed: same seed, same bytes (same device and --threads)."
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto | cpu | cuda | cuda:N.", callback=checked(check_device)
    ),
    threads: int = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: all cores)."
    ),
    ext: str = typer.Option(
        None,
        "--ext",
        help="Output format (png, tif, jpg) (default: same as input).",
        callback=checked(check_ext),
    ),
    suffix: str = typer.Option(
        "",
        "--suffix",
        help="Appended to output file stems, e.g. _out.",
        callback=checked(check_suffix),
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo images whose output already exists."
    ),
    recursive: bool = typer.Option(
        True, "--recursive/--no-recursive", help="Descend into sub-folders of --src."
    ),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS,
        "--max-pixels",
        min=0,
        help="Largest input image (width x height) to read; a larger one is refused from its "
        "header, before decoding (0 = no limit).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    **task_options: object,
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

      irctl restore --task inpaint --src photos/ --dst filled/

    Inpainting takes each photo.png with its mask photo_mask.png beside it (or under
    --mask-dir), white = hole (--mask-white kept for masks white where pixels are kept); the
    known pixels come back exactly. An image without its mask is an error.

    Outputs keep the input's format, bit depth (8/16-bit, float TIFF), alpha channel and
    grey/colour layout. Each output is written atomically, so an interrupted run can simply be
    started again: finished images are skipped (use --overwrite to redo them); a truncated,
    empty or wrong-sized output is redone, with a line. Runs started on one --dst at the same
    time split the work (claim files beside the outputs). A file that cannot be read or
    restored is reported on stderr in one line and the batch goes on; the exit code is then 1.
    Under torchrun, the job list (a stereo pair is one job) is sharded by RANK/WORLD_SIZE.
    """
    from irctl.engine.models import UsageError
    from irctl.engine.restore import RestoreRequest, restore_folder

    console = stderr_console()
    request = RestoreRequest(
        src=src,
        dst=dst,
        task=task,
        method=method,
        preset=preset,
        weights=weights,
        sampler=sampler,
        steps=steps,
        tile=tile,
        tile_overlap=tile_overlap,
        tile_batch=tile_batch,
        tile_layout=tile_layout,
        self_ensemble=self_ensemble,
        seed=seed,
        device=device,
        threads=threads,
        ext=ext,
        suffix=suffix,
        overwrite=overwrite,
        recursive=recursive,
        max_pixels=max_pixels,
        task_options=dict(task_options),
        rank=int(os.environ.get("RANK", 0)),
        world=int(os.environ.get("WORLD_SIZE", 1)),
    )
    reporter = _ConsoleReporter(console)
    try:
        with reporter.progress:
            outcome = restore_folder(request, reporter, stdin=sys.stdin if src == "-" else None)
    except UsageError as err:
        console.print(f"error: {shown(str(err))}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    summary = outcome.summary
    n_failed = len(outcome.failed)
    console.print(
        f"done: {len(summary.restored)} restored, {len(outcome.plan.skipped)} skipped, "
        f"{len(summary.claimed)} claimed by another run, {n_failed} failed "
        f"in {summary.seconds:.1f} s"
    )
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "preset": outcome.preset,
                    "restored": [job.as_json() for job in summary.restored],
                    "skipped": [job.as_json() for job in outcome.plan.skipped],
                    "claimed": [job.as_json() for job in summary.claimed],
                    "failed": [
                        {**json_name("file", p), "reason": shown(r)} for p, r in outcome.failed
                    ],
                    "seconds": summary.seconds,
                    "megapixels": summary.megapixels,
                }
            )
        )
    raise typer.Exit(EXIT_PARTIAL_FAILURE if n_failed else EXIT_OK)


class _ConsoleReporter:
    """Rich progress bars and one line per job on stderr."""

    def __init__(self, console) -> None:
        self.console = console
        self.progress = Progress(
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
        self.jobs_bar = None
        self.steps_bar = None

    def info(self, message: str) -> None:
        self.console.print(shown(message), markup=False)

    def error(self, path: Path, reason: str) -> None:
        """One line whatever the name: a newline or a byte that is not UTF-8 is escaped."""
        if self.jobs_bar is not None:
            self.progress.advance(self.jobs_bar)
        self.console.print(f"error: {shown(path)}: {shown(reason)}", markup=False)

    def start(self, noun: str, jobs: int, steps: int) -> None:
        self.jobs_bar = self.progress.add_task(noun, total=jobs)
        self.steps_bar = self.progress.add_task("steps", total=steps)

    def step(self, done: int, total: int) -> None:
        self.progress.update(self.steps_bar, completed=done, total=total)

    def done(self, job, seconds: float) -> None:
        self.progress.advance(self.jobs_bar)
        self.console.print(f"restored {job.describe()} ({seconds:.1f} s)", markup=False)


def _with_task_options(command):
    """``command`` with one keyword-only option per task flag (irctl/tasks/), in place of its
    ``**task_options``: Typer reads the signature, so the flags appear in --help."""
    signature = inspect.signature(command)
    params = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    for option, _owners in all_task_options().values():
        params.append(
            inspect.Parameter(
                option.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, option.flag, help=markdown_safe(option.help)),
                annotation=option.type,
            )
        )
    command.__signature__ = signature.replace(parameters=params)
    return command


restore = _with_task_options(restore)
