"""Folder-vs-folder evaluation: pair predictions with ground truth, compute fidelity metrics.

Library code only: nothing here prints. Problems with individual pairs (unreadable file, size or
channel mismatch, image too small for SSIM) are reported through ``on_error`` as one
``"path: reason"`` line each and the pair is skipped, so one bad file never costs the rest of a
long benchmark run. Problems with the request itself (unknown metric, missing folder, negative
crop) raise before any image is read.

Metrics run on the files' real bit-depth values, as BasicSR does: the reader hands us float32 in
[0, 1], and we turn integer files back into exact integers (``rint(pixels * 255)`` or
``* 65535``) so PSNR/SSIM see the same numbers BasicSR would load with OpenCV.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from irctl.io.folders import discover, pair_by_stem
from irctl.io.images import ImageReadError, read_image
from irctl.metrics.fidelity import METRICS, max_value_for
from irctl.metrics.report import summarize

__all__ = ["EvalResult", "evaluate_folders", "evaluate_pairs", "validate_metrics"]

Row = dict[str, str | float]


@dataclass(frozen=True)
class EvalResult:
    """Everything one evaluation produced.

    ``rows``: one ``{"name": stem, metric: value, ...}`` per successfully evaluated pair, in pair
    order. ``summary``: :func:`irctl.metrics.report.summarize` of ``rows``. ``errors``: one
    ``"path: reason"`` per pair that was skipped. ``unmatched_pred`` / ``unmatched_gt``: files
    with no counterpart in the other folder.
    """

    rows: list[Row]
    summary: dict[str, dict[str, float | int]]
    errors: list[str] = field(default_factory=list)
    unmatched_pred: list[Path] = field(default_factory=list)
    unmatched_gt: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every ground-truth image was evaluated (no failed pair, no missing
        prediction). Extra predictions without ground truth do not count as failures."""
        return not self.errors and not self.unmatched_gt


def validate_metrics(metrics: Iterable[str]) -> list[str]:
    """Normalise metric names (strip, lower-case, drop duplicates) and reject unknown ones.

    Raises ``ValueError`` naming the known metrics, so a typo fails before minutes of work.
    """
    names: list[str] = []
    for raw in metrics:
        name = raw.strip().lower()
        if name and name not in names:
            names.append(name)
    known = ", ".join(sorted(METRICS))
    if not names:
        raise ValueError(f"no metric given; known metrics: {known}")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        listed = ", ".join(repr(n) for n in unknown)
        raise ValueError(f"unknown metric {listed}; known metrics: {known}")
    return names


class _PairError(Exception):
    """A pair that cannot be evaluated; ``str()`` is the ``"path: reason"`` line."""


def _load(path: Path) -> tuple[NDArray, float]:
    """Read an image as HxWxC on its file's own scale, plus that scale's peak value.

    Integer files come back as the exact integers stored in the file (``rint`` undoes the
    reader's division by 255 / 65535; float32 keeps those values within 1e-4 of an integer, so
    rounding is exact). Float files stay float in [0, 1].
    """
    try:
        image = read_image(path)
    except ImageReadError as exc:
        raise _PairError(str(exc)) from exc
    except OSError as exc:  # a reader bug should not abort a whole benchmark
        raise _PairError(f"{path}: {exc}") from exc
    dtype = np.dtype(image.dtype)
    try:
        max_value = max_value_for(dtype)
    except ValueError as exc:
        raise _PairError(f"{path}: {exc}") from exc
    pixels = np.asarray(image.pixels, dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if np.issubdtype(dtype, np.integer):
        return np.rint(pixels * max_value).astype(dtype), max_value
    return pixels, max_value


def _evaluate_pair(
    pred_path: Path,
    gt_path: Path,
    names: Sequence[str],
    *,
    crop_border: int,
    y_channel: bool,
) -> Row:
    """Metrics for one pair, or ``_PairError`` with a user-facing reason."""
    gt, gt_max = _load(gt_path)
    pred, pred_max = _load(pred_path)
    (gh, gw, gc), (ph, pw, pc) = gt.shape, pred.shape
    if (ph, pw) != (gh, gw):
        raise _PairError(
            f"{pred_path}: size {pw}x{ph} does not match ground truth {gt_path} ({gw}x{gh})"
        )
    if pc != gc:
        kinds = {1: "grey", 3: "RGB"}
        raise _PairError(
            f"{pred_path}: prediction is {kinds.get(pc, f'{pc}-channel')} but ground truth "
            f"{gt_path} is {kinds.get(gc, f'{gc}-channel')}"
        )
    if pred_max != gt_max:
        # Different bit depths (e.g. an 8-bit PNG prediction for a 16-bit TIFF ground truth):
        # compare on the ground truth's scale. 255 → 65535 is an exact ×257.
        pred = pred.astype(np.float64) * (gt_max / pred_max)
    row: Row = {"name": gt_path.stem}
    for name in names:
        try:
            row[name] = METRICS[name](
                pred, gt, max_value=gt_max, crop_border=crop_border, y_channel=y_channel
            )
        except ValueError as exc:  # e.g. image smaller than the SSIM window after cropping
            raise _PairError(f"{pred_path}: {name}: {exc}") from exc
    return row


def evaluate_pairs(
    pairs: Iterable[tuple[Path, Path]],
    metrics: Sequence[str],
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    on_error: Callable[[str], None],
    progress: Callable[[], None] | None = None,
) -> list[Row]:
    """Evaluate ``(prediction, ground_truth)`` pairs; one row per pair that could be evaluated.

    A pair that fails (unreadable file, different size, grey vs RGB, too small) calls
    ``on_error("path: reason")`` exactly once and is skipped. ``progress()`` is called once per
    pair, failed or not. ``y_channel`` on grey images uses the grey values directly (BasicSR).
    Raises ``ValueError`` for unknown metrics or a negative ``crop_border`` before reading
    anything.
    """
    names = validate_metrics(metrics)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    rows: list[Row] = []
    for pred_path, gt_path in pairs:
        try:
            rows.append(
                _evaluate_pair(
                    Path(pred_path),
                    Path(gt_path),
                    names,
                    crop_border=crop_border,
                    y_channel=y_channel,
                )
            )
        except _PairError as exc:
            on_error(str(exc))
        if progress is not None:
            progress()
    return rows


def _check_folder(path: Path, label: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{label} folder not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"{label} path is not a folder: {path}")


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    metrics: Sequence[str],
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    pred_suffix: str = "",
    on_error: Callable[[str], None] | None = None,
    progress: Callable[[], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> EvalResult:
    """Evaluate every prediction in ``pred_dir`` against the same-stem image in ``gt_dir``.

    Folders are scanned recursively; ``pred_suffix`` is stripped from prediction stems before
    matching (``img1_restored.png`` ↔ ``img1.png`` with ``pred_suffix="_restored"``). Errors
    are both collected in :attr:`EvalResult.errors` and forwarded to ``on_error`` when given;
    ``on_total(n_pairs)`` is called once before evaluation starts, so a progress bar can size
    itself. Raises ``ValueError`` (bad metric or crop, or two files with the same stem in one
    folder, which would make the pairing a guess) or ``FileNotFoundError`` /
    ``NotADirectoryError`` (bad folder) before any image is read.
    """
    names = validate_metrics(metrics)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    _check_folder(pred_dir, "prediction")
    _check_folder(gt_dir, "ground-truth")

    pairs, unmatched_pred, unmatched_gt = pair_by_stem(
        discover(pred_dir), discover(gt_dir), pred_suffix=pred_suffix
    )
    if on_total is not None:
        on_total(len(pairs))

    errors: list[str] = []

    def record(message: str) -> None:
        errors.append(message)
        if on_error is not None:
            on_error(message)

    rows = evaluate_pairs(
        pairs,
        names,
        crop_border=crop_border,
        y_channel=y_channel,
        on_error=record,
        progress=progress,
    )
    return EvalResult(
        rows=rows,
        summary=summarize(rows, names),
        errors=errors,
        unmatched_pred=list(unmatched_pred),
        unmatched_gt=list(unmatched_gt),
    )
