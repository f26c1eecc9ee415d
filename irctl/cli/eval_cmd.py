"""`irctl eval`: score restored images against ground truth (thin wrapper over the engine)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from irctl.cli.common import EXIT_OK, EXIT_PARTIAL_FAILURE, EXIT_USAGE, stderr_console
from irctl.engine.evaluate import EvalResult, evaluate_folders
from irctl.metrics.report import write_per_image_csv, write_summary_csv


def evaluate(
    pred: Path = typer.Option(
        ..., "--pred", help="Folder of restored images (what the model produced)."
    ),
    gt: Path = typer.Option(
        ...,
        "--gt",
        help="Folder of ground-truth (clean reference) images, matched to --pred by file name.",
    ),
    metrics: str = typer.Option(
        "psnr,ssim", "--metrics", help="Comma-separated metrics: psnr, ssim, mae, rmse."
    ),
    crop_border: int = typer.Option(
        0,
        "--crop-border",
        help="Ignore this many pixels at every edge (super-resolution papers use the scale).",
    ),
    y_channel: bool = typer.Option(
        False,
        "--y-channel",
        help="Score only the luma (Y of BT.601 YCbCr), as most SR and deraining papers do.",
    ),
    pred_suffix: str = typer.Option(
        "",
        "--pred-suffix",
        help="Suffix of prediction names, e.g. '_restored' pairs img1_restored.png with img1.png.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder for per_image.csv and summary.csv. Default: <pred>_metrics next to --pred.",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Also print the summary as JSON on stdout (for scripts)."
    ),
) -> None:
    """Score restored images against their ground truth (PSNR, SSIM, MAE, RMSE).

    Each image in --pred is paired with the image of the same name (ignoring the extension and
    --pred-suffix) in --gt; subfolders are searched too. Metrics follow BasicSR's conventions so
    numbers are comparable with published results: computed on the files' real 8-bit or 16-bit
    values, SSIM with an 11x11 Gaussian window (sigma 1.5) averaged over channels, optional
    border crop and Y-channel (luma) evaluation. PSNR is inf for a pixel-identical image; such
    values are counted separately and left out of the mean.

    Writes per_image.csv (one row per image) and summary.csv (mean, median, std, count per
    metric) and shows the summary table on stderr.

    Exit status: 0 when every ground-truth image was scored; 1 when some pair could not be
    scored (unreadable, different size, grey vs colour) or a ground-truth image has no
    prediction (the others are still scored and written); 2 for usage errors such as an
    unknown metric or a missing folder.

    Example: irctl eval --pred restored/ --gt clean/ --metrics psnr,ssim --y-channel
    """
    console = stderr_console()

    def usage_error(message: str) -> typer.Exit:
        console.print(f"error: {message}", markup=False)
        return typer.Exit(EXIT_USAGE)

    metric_names = [m for m in (part.strip() for part in metrics.split(",")) if m]
    out_dir = out if out is not None else _default_out(pred)

    progress = Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # no bar escape codes in logs or pipes
    )
    with progress:
        task = progress.add_task("evaluating", total=None)
        try:
            result = evaluate_folders(
                pred,
                gt,
                metric_names,
                crop_border=crop_border,
                y_channel=y_channel,
                pred_suffix=pred_suffix,
                on_error=lambda msg: progress.console.print(f"error: {msg}", markup=False),
                progress=lambda: progress.advance(task),
                on_total=lambda n: progress.update(task, total=n),
            )
        except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
            # evaluate_folders raises these only before reading any image: a usage error.
            raise usage_error(str(exc)) from None

    if not result.rows and not result.errors and not result.unmatched_gt:
        raise usage_error(f"no images found in the ground-truth folder {gt}")

    for path in result.unmatched_pred:
        console.print(f"warning: no ground truth for {path}", markup=False)
    for path in result.unmatched_gt:
        console.print(f"warning: no prediction for {path}", markup=False)

    try:
        per_image = write_per_image_csv(
            out_dir / "per_image.csv", result.rows, list(result.summary)
        )
        summary = write_summary_csv(out_dir / "summary.csv", result.summary)
    except OSError as exc:
        raise usage_error(f"cannot write reports to {out_dir}: {exc}") from None

    _print_table(console, result)
    console.print(f"wrote {per_image} and {summary}", markup=False)

    if json_out:
        typer.echo(json.dumps(_json_payload(result), indent=2))

    raise typer.Exit(EXIT_OK if result.ok else EXIT_PARTIAL_FAILURE)


def _default_out(pred: Path) -> Path:
    """``<pred>_metrics`` beside the prediction folder (``resolve`` so ``--pred .`` works)."""
    resolved = pred.resolve()
    return resolved.parent / f"{resolved.name}_metrics"


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def _print_table(console: Console, result: EvalResult) -> None:
    table = Table(title=f"{len(result.rows)} image(s) evaluated", title_justify="left")
    table.add_column("metric")
    for column in ("mean", "median", "std", "count"):
        table.add_column(column, justify="right")
    for metric, stats in result.summary.items():
        table.add_row(
            metric,
            _fmt(stats["mean"]),
            _fmt(stats["median"]),
            _fmt(stats["std"]),
            str(stats["count"]),
        )
    console.print(table)
    for metric, stats in result.summary.items():
        if stats["n_inf"]:
            console.print(
                f"note: {stats['n_inf']} infinite {metric} value(s) (image identical to its "
                "ground truth) left out of the statistics",
                markup=False,
            )


def _finite_or_none(value: Any) -> Any:
    """JSON has no inf/NaN: ``null`` keeps the output parseable by any JSON reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_payload(result: EvalResult) -> dict[str, Any]:
    return {
        "summary": {
            metric: {key: _finite_or_none(val) for key, val in stats.items()}
            for metric, stats in result.summary.items()
        },
        "n_images": len(result.rows),
        "errors": list(result.errors),
        "unmatched_pred": [str(p) for p in result.unmatched_pred],
        "unmatched_gt": [str(p) for p in result.unmatched_gt],
    }
