"""`irctl eval`: score restored images against ground truth (thin wrapper over the engine)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from irctl.cli.common import EXIT_OK, EXIT_PARTIAL_FAILURE, EXIT_USAGE, checked, stderr_console
from irctl.engine.evaluate import DEFAULT_WORKERS, EvalResult, evaluate_folders
from irctl.engine.options import check_device, check_metrics
from irctl.io.folders import check_folder_path, check_output_dir, check_output_file
from irctl.io.images import DEFAULT_MAX_PIXELS
from irctl.io.names import shown
from irctl.metrics.fidelity import LOWER_IS_BETTER
from irctl.metrics.report import write_per_image_csv, write_summary_csv
from irctl.metrics.sheet import DEFAULT_CROP, DEFAULT_K, build_sheet, index_inputs, write_sheet

#: Smallest --sheet-crop: below this the tiles are too small to judge anything.
_MIN_SHEET_CROP = 16


def evaluate(
    pred: Path = typer.Option(
        ...,
        "--pred",
        exists=True,
        file_okay=False,
        help="Folder of restored images (what the model produced).",
    ),
    gt: Path = typer.Option(
        ...,
        "--gt",
        exists=True,
        file_okay=False,
        help="Folder of ground-truth (clean reference) images, matched to --pred by file name.",
    ),
    metrics: str = typer.Option(
        "psnr,ssim",
        "--metrics",
        help="Comma-separated metrics: psnr, ssim, mae, rmse, rmse-lab (RMSE in CIELAB, the "
        "shadow-removal metric; colour images only); with the perceptual extra also lpips, "
        "lpips-vgg, dists, niqe, musiq, clipiqa (per image) and fid (folder vs folder). The "
        "first one ranks the --sheet.",
        callback=checked(check_metrics),
    ),
    crop_border: int = typer.Option(
        0,
        "--crop-border",
        min=0,
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
        file_okay=False,
        callback=checked(check_output_dir),
        help="Folder for per_image.csv and summary.csv. Default: `<pred>_metrics` next to --pred.",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Also print the summary as JSON on stdout (for scripts)."
    ),
    workers: int = typer.Option(
        DEFAULT_WORKERS,
        "--workers",
        min=1,
        help="Threads that read and score image pairs in parallel. At most 2 x workers pairs "
        "are in memory at once, however many images the folders hold.",
    ),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS,
        "--max-pixels",
        min=0,
        help="Largest image (width x height) to read; a larger one is that pair's error line, "
        "refused from its header before decoding (0 = no limit).",
    ),
    sheet: Path | None = typer.Option(
        None,
        "--sheet",
        dir_okay=False,
        callback=checked(lambda path: check_output_file(path, (".png",))),
        help="Also write a contact sheet to this .png file: centre crops of input | restored | "
        "ground truth for the --sheet-k best and worst images by the first metric, with their "
        "names and scores.",
    ),
    sheet_k: int = typer.Option(
        DEFAULT_K, "--sheet-k", min=1, help="Rows per section of the --sheet: k best and k worst."
    ),
    sheet_crop: int = typer.Option(
        DEFAULT_CROP,
        "--sheet-crop",
        min=_MIN_SHEET_CROP,
        help="Side in pixels of the square crop taken from the centre of each image for the "
        "--sheet (smaller images are enlarged, nearest-neighbour).",
    ),
    weights_dir: Path | None = typer.Option(
        None,
        "--weights-dir",
        file_okay=False,
        callback=checked(check_folder_path),
        help="Where the perceptual metrics' weight files are (becomes TORCH_HOME). Nothing is "
        "downloaded: a missing file is named with the directory it must go in.",
    ),
    device: str = typer.Option(
        "cpu", "--device", help="Device for perceptual metrics.", callback=checked(check_device)
    ),
    input_dir: Path | None = typer.Option(
        None,
        "--input",
        exists=True,
        file_okay=False,
        help="Folder of degraded input images, matched to --gt by file name, shown in the "
        "--sheet's first column (a grey 'no input' tile without it).",
    ),
) -> None:
    """Score restored images against their ground truth (PSNR, SSIM, MAE, RMSE, RMSE in LAB).

    Each image in --pred is paired with the image of the same name (ignoring the extension and
    --pred-suffix) in --gt; subfolders are searched too. Metrics follow BasicSR's conventions so
    numbers are comparable with published results: computed on the files' real 8-bit or 16-bit
    values, SSIM with an 11x11 Gaussian window (sigma 1.5) averaged over channels, optional
    border crop and Y-channel (luma) evaluation. PSNR is inf for a pixel-identical image; such
    values are counted separately and left out of the mean.

    rmse-lab is the shadow-removal "RMSE": the images are converted to CIELAB (scikit-image's
    rgb2lab, sRGB D65) and the root of the mean squared difference over all L, a, b values is
    taken, per image. It needs colour images (a grey pair is an error) and ignores --y-channel.

    Writes per_image.csv (one row per image) and summary.csv (mean, median, std, count per
    metric) and shows the summary table on stderr. With --sheet FILE.png, also writes a contact
    sheet: one row per image for the --sheet-k best and --sheet-k worst images by the first
    metric (lower is better for mae, rmse and rmse-lab, higher for psnr and ssim), each a
    --sheet-crop pixel crop from the image centre of the input (--input folder), the restored
    image and the ground truth.

    Images are read and scored by --workers threads, streaming: memory stays bounded however
    large the folders are.

    Perceptual metrics come from pyiqa (optional extra, PolyForm Noncommercial licence, its own
    environment: tools/perceptual-env.sh). Their weight files are never downloaded: before
    anything runs, each metric whose files are not in --weights-dir (TORCH_HOME) gets one error
    line naming the files and the directory; the other metrics are still computed and the exit
    status is 1. FID compares the two folders as wholes and has no per-image value.

    Exit status: 0 when every ground-truth image was scored; 1 when some pair could not be
    scored (unreadable, different size, grey vs colour) or a ground-truth image has no
    prediction (the others are still scored and written); 2 for usage errors such as an
    unknown metric or a missing folder.

    Example: irctl eval --pred restored/ --gt clean/ --metrics psnr,ssim --y-channel

    Example: irctl eval --pred restored/ --gt clean/ --input noisy/ --sheet sheet.png
    """
    console = stderr_console()

    def usage_error(message: str) -> typer.Exit:
        console.print(f"error: {message}", markup=False)
        return typer.Exit(EXIT_USAGE)

    metric_names = [m for m in (part.strip() for part in metrics.split(",")) if m]
    out_dir = out if out is not None else _default_out(pred)

    # The options' values were checked as they were parsed (ranges, callbacks); the input
    # folder's images are indexed before any image is read: a typo costs nothing.
    inputs = None
    if sheet is not None:
        if input_dir is not None:
            try:
                inputs = index_inputs(input_dir)
            except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
                raise usage_error(str(exc)) from None
    elif input_dir is not None:
        console.print("warning: --input is only used by --sheet; ignoring it", markup=False)

    from irctl.engine.evaluate import plan_perceptual

    perceptual = plan_perceptual(
        [m.lower() for m in metric_names],
        weights_dir=weights_dir,
        device=device,
        on_error=lambda msg: console.print(f"error: {msg}", markup=False),
    )
    skipped = set(perceptual.failed) | set(perceptual.folder)
    pair_metrics = [m for m in metric_names if m.lower() not in skipped]
    if not pair_metrics and not perceptual.folder:
        raise typer.Exit(EXIT_PARTIAL_FAILURE)  # every metric asked for was reported unusable

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
                pair_metrics,
                extra=perceptual.scorer.score_pair if perceptual.per_pair else None,
                extra_names=perceptual.per_pair,
                crop_border=crop_border,
                y_channel=y_channel,
                pred_suffix=pred_suffix,
                on_error=lambda msg: progress.console.print(f"error: {shown(msg)}", markup=False),
                progress=lambda: progress.advance(task),
                on_total=lambda n: progress.update(task, total=n),
                workers=workers,
                max_pixels=max_pixels,
            )
        except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
            # evaluate_folders raises these only before reading any image: a usage error.
            raise usage_error(str(exc)) from None

    if not result.rows and not result.errors and not result.unmatched_gt:
        raise usage_error(f"no images found in the ground-truth folder {gt}")

    folder_failed = False
    for metric in perceptual.folder:  # FID: one value for the two folders
        try:
            value = perceptual.scorer.score_folders(pred, gt)[metric]
        except ValueError as exc:
            console.print(f"error: {exc}", markup=False)
            folder_failed = True
            continue
        nan = float("nan")
        result.summary[metric] = {
            "mean": value,
            "median": nan,
            "std": nan,
            "count": len(result.rows),
            "n_inf": 0,
        }

    for path in result.unmatched_pred:
        console.print(f"warning: no ground truth for {shown(path)}", markup=False)
    for path in result.unmatched_gt:
        console.print(f"warning: no prediction for {shown(path)}", markup=False)

    try:
        per_image = write_per_image_csv(
            out_dir / "per_image.csv", result.rows + result.pair_rows, list(result.summary)
        )
        summary = write_summary_csv(out_dir / "summary.csv", result.summary)
    except OSError as exc:
        raise usage_error(f"cannot write reports to {out_dir}: {exc}") from None

    _print_table(console, result)
    console.print(f"wrote {per_image} and {summary}", markup=False)

    sheet_path = None
    if sheet is not None:
        if result.rows:
            try:
                sheet_path = _write_sheet(sheet, result, inputs, sheet_k, sheet_crop)
            except OSError as exc:
                raise usage_error(f"cannot write the contact sheet {sheet}: {exc}") from None
            console.print(f"wrote {sheet_path}", markup=False)
        else:
            console.print(
                "warning: no image could be scored; no contact sheet written", markup=False
            )

    if json_out:
        payload = _json_payload(result)
        payload["sheet"] = str(sheet_path) if sheet_path is not None else None
        payload["failed_metrics"] = list(perceptual.failed)  # named on stderr, not computed
        typer.echo(json.dumps(payload, indent=2))

    all_ok = result.ok and not perceptual.failed and not folder_failed
    raise typer.Exit(EXIT_OK if all_ok else EXIT_PARTIAL_FAILURE)


def _lower_is_better() -> frozenset[str]:
    """Fidelity metrics where lower is better, plus the perceptual ones when that module exists.

    The perceptual module (pyiqa bridge) is optional and imported only here, only for --sheet.
    """
    try:
        from irctl.metrics.perceptual import LOWER_IS_BETTER as perceptual_lower
    except ImportError:
        return LOWER_IS_BETTER
    return LOWER_IS_BETTER | frozenset(perceptual_lower)


def _write_sheet(
    path: Path, result: EvalResult, inputs: dict[str, Path] | None, k: int, crop: int
) -> Path:
    """Rank the rows by the first metric, re-read only the selected pairs, write the PNG."""
    names = list(result.summary)
    image = build_sheet(
        result.rows,
        result.sources,
        metric=names[0],
        k=k,
        crop=crop,
        lower_is_better=_lower_is_better(),
        inputs=inputs,
        metric_names=names,
    )
    return write_sheet(path, image)


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
        "stereo_pairs": [
            {key: _finite_or_none(val) for key, val in row.items()} for row in result.pair_rows
        ],
        "errors": [shown(error) for error in result.errors],
        # names as printable text, and their exact bytes in hex (irctl/io/names.py)
        "unmatched_pred": [shown(p) for p in result.unmatched_pred],
        "unmatched_pred_hex": [os.fsencode(p).hex() for p in result.unmatched_pred],
        "unmatched_gt": [shown(p) for p in result.unmatched_gt],
        "unmatched_gt_hex": [os.fsencode(p).hex() for p in result.unmatched_gt],
    }
