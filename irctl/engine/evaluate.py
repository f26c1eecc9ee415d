"""Folder-vs-folder evaluation: pair predictions with ground truth, compute fidelity metrics.

Library code only: nothing here prints. Problems with individual pairs (unreadable file, size or
channel mismatch, image too small for SSIM) are reported through ``on_error`` as one
``"path: reason"`` line each and the pair is skipped, so one bad file never costs the rest of a
long benchmark run. Problems with the request itself (unknown metric, missing folder, negative
crop) raise before any image is read.

Metrics run on the files' real bit-depth values, as BasicSR does: the reader hands us float32 in
[0, 1], and we turn integer files back into exact integers (``rint(pixels * 255)`` or
``* 65535``) so PSNR/SSIM see the same numbers BasicSR would load with OpenCV.

Streaming, bounded memory: pairs are decoded and scored by a pool of ``workers`` threads (numpy,
scipy, OpenCV and the image decoders release the GIL for their heavy loops), but never more than
``2 * workers`` pairs are in flight (submitted and not yet collected), whatever the folder size.
Results are collected strictly in pair order, so rows, ``on_error`` lines and ``progress()``
ticks come out in the same deterministic order as a sequential run; a worker drops a pair's
pixels as soon as its metrics are computed, so a 10 000-image folder costs 10 000 small rows,
not 10 000 images.

Extra (e.g. perceptual) metrics plug in as one ``extra(pred01, gt01) -> {name: value}`` callable,
called in the collecting (main) thread, one pair at a time, in pair order: a scorer that holds a
network is never called concurrently.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from irctl.io.folders import discover, pair_by_stem
from irctl.io.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from irctl.metrics.fidelity import METRICS, max_value_for
from irctl.metrics.fidelity import crop_border as crop_border_fn
from irctl.metrics.report import summarize

__all__ = [
    "DEFAULT_WORKERS",
    "EvalResult",
    "ExtraScorer",
    "evaluate_folders",
    "evaluate_pairs",
    "validate_metrics",
]

Row = dict[str, str | float]

#: Per-pair scorer for metrics computed outside this module (e.g. pyiqa's perceptual metrics):
#: ``extra(pred01, gt01) -> {metric: value}`` with float32 HxWxC (C = 1 or 3) arrays in [0, 1].
ExtraScorer = Callable[[NDArray[np.float32], NDArray[np.float32]], Mapping[str, float]]

#: Decoding threads when the caller does not say (the project's reference machine has 2 cores).
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class EvalResult:
    """Everything one evaluation produced.

    ``rows``: one ``{"name": stem, metric: value, ...}`` per successfully evaluated pair, in pair
    order. ``summary``: :func:`irctl.metrics.report.summarize` of ``rows``. ``errors``: one
    ``"path: reason"`` per pair that was skipped. ``unmatched_pred`` / ``unmatched_gt``: files
    with no counterpart in the other folder. ``sources``: ``name → (prediction, ground truth)``
    for every row, so a report (the contact sheet) can go back to the files of a few rows.
    """

    rows: list[Row]
    summary: dict[str, dict[str, float | int]]
    errors: list[str] = field(default_factory=list)
    unmatched_pred: list[Path] = field(default_factory=list)
    unmatched_gt: list[Path] = field(default_factory=list)
    sources: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    #: stereo pairs among the images: one ``"<stem> (L+R mean)"`` row each (:func:`view_means`)
    pair_rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every ground-truth image was evaluated (no failed pair, no missing
        prediction). Extra predictions without ground truth do not count as failures."""
        return not self.errors and not self.unmatched_gt


def _normalise(name: str) -> str:
    return name.strip().lower()


def validate_metrics(metrics: Iterable[str], extra_names: Iterable[str] = ()) -> list[str]:
    """Normalise metric names (strip, lower-case, drop duplicates) and reject unknown ones.

    Known names are those of :data:`irctl.metrics.fidelity.METRICS` plus ``extra_names`` (the
    metrics an ``extra`` scorer provides). Raises ``ValueError`` naming the known metrics, so a
    typo fails before minutes of work.
    """
    known_names = set(METRICS) | {n for n in map(_normalise, extra_names) if n}
    names: list[str] = []
    for raw in metrics:
        name = _normalise(raw)
        if name and name not in names:
            names.append(name)
    known = ", ".join(sorted(known_names))
    if not names:
        raise ValueError(f"no metric given; known metrics: {known}")
    unknown = [n for n in names if n not in known_names]
    if unknown:
        listed = ", ".join(repr(n) for n in unknown)
        raise ValueError(f"unknown metric {listed}; known metrics: {known}")
    return names


class _PairError(Exception):
    """A pair that cannot be evaluated; ``str()`` is the ``"path: reason"`` line."""


def _load(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[NDArray, float]:
    """Read an image as HxWxC on its file's own scale, plus that scale's peak value.

    Integer files come back as the exact integers stored in the file (``rint`` undoes the
    reader's division by 255 / 65535; float32 keeps those values within 1e-4 of an integer, so
    rounding is exact). Float files stay float in [0, 1].
    """
    try:
        image = read_image(path, max_pixels=max_pixels)
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


_Scored = tuple[Row, tuple[NDArray[np.float32], NDArray[np.float32]] | None]


def _evaluate_pair(
    pred_path: Path,
    gt_path: Path,
    names: Sequence[str],
    *,
    crop_border: int,
    y_channel: bool,
    for_extra: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> _Scored:
    """Fidelity metrics for one pair, or ``_PairError`` with a user-facing reason.

    With ``for_extra``, also returns the pair as float32 [0, 1] arrays (ground truth's scale,
    ``crop_border`` applied, never Y-converted) for an extra scorer; otherwise ``None``, and the
    decoded pixels die with this call.
    """
    gt, gt_max = _load(gt_path, max_pixels)
    pred, pred_max = _load(pred_path, max_pixels)
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
            reason = str(exc)
            if not reason.startswith(name):  # "rmse-lab needs colour ..." names itself
                reason = f"{name}: {reason}"
            raise _PairError(f"{pred_path}: {reason}") from exc
    if not for_extra:
        return row, None
    try:
        pred_c, gt_c = crop_border_fn(pred, crop_border), crop_border_fn(gt, crop_border)
    except ValueError as exc:
        raise _PairError(f"{pred_path}: {exc}") from exc
    return row, (_to_unit(pred_c, gt_max), _to_unit(gt_c, gt_max))


def _to_unit(pixels: NDArray, max_value: float) -> NDArray[np.float32]:
    """File-scale pixels → float32 in [0, 1] (clipped: float files may overshoot)."""
    unit = np.asarray(pixels, dtype=np.float32) / np.float32(max_value)
    return np.clip(unit, 0.0, 1.0, out=unit)


def evaluate_pairs(
    pairs: Iterable[tuple[Path, Path]],
    metrics: Sequence[str],
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    on_error: Callable[[str], None],
    progress: Callable[[], None] | None = None,
    workers: int = DEFAULT_WORKERS,
    extra: ExtraScorer | None = None,
    extra_names: Iterable[str] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Row]:
    """Evaluate ``(prediction, ground_truth)`` pairs; one row per pair that could be evaluated.

    Streams: ``pairs`` is consumed lazily and at most ``2 * workers`` pairs are in flight at a
    time (see the module docstring); rows come back in pair order whatever ``workers`` is.

    A pair that fails (unreadable file, different size, grey vs RGB, too small, grey for
    rmse-lab) calls ``on_error("path: reason")`` exactly once and is skipped. ``progress()`` is
    called once per pair, failed or not. ``on_error`` and ``progress`` are only ever called from
    the calling thread. ``y_channel`` on grey images uses the grey values directly (BasicSR).

    Metrics named in :data:`~irctl.metrics.fidelity.METRICS` are computed here; the others must
    be in ``extra_names`` and come from ``extra(pred01, gt01)``, called once per pair that passed
    the fidelity metrics, with float32 HxWxC arrays in [0, 1] (``crop_border`` applied,
    ``y_channel`` not), in the calling thread. Only the requested names are taken from its
    result; a ``ValueError`` from it, or a missing name, is that pair's error.

    Raises ``ValueError`` for unknown metrics, a negative ``crop_border``, ``workers < 1`` or
    extra metrics without a scorer before reading anything.
    """
    names = validate_metrics(metrics, extra_names)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    fidelity = [n for n in names if n in METRICS]
    wanted_extra = [n for n in names if n not in METRICS]
    if wanted_extra and extra is None:
        raise ValueError(f"no scorer for metric(s) {', '.join(wanted_extra)}")
    for_extra = bool(wanted_extra)

    rows: list[Row] = []
    pending: deque[tuple[Path, Future[_Scored]]] = deque()
    max_in_flight = 2 * workers

    def collect() -> None:
        pred_path, future = pending.popleft()
        try:
            row, arrays = future.result()
        except _PairError as exc:
            on_error(str(exc))
        else:
            if arrays is None:
                rows.append(row)
            else:
                try:
                    row.update(_extra_values(extra, arrays, wanted_extra))
                    rows.append(row)
                except ValueError as exc:
                    on_error(f"{pred_path}: {exc}")
                del arrays
        if progress is not None:
            progress()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="irctl-eval") as pool:
        try:
            for pred_path, gt_path in pairs:
                if len(pending) >= max_in_flight:
                    collect()
                future = pool.submit(
                    _evaluate_pair,
                    Path(pred_path),
                    Path(gt_path),
                    fidelity,
                    crop_border=crop_border,
                    y_channel=y_channel,
                    for_extra=for_extra,
                    max_pixels=max_pixels,
                )
                pending.append((Path(pred_path), future))
            while pending:
                collect()
        except BaseException:
            # Ctrl-C or a bug: drop what has not started; the pool waits for the few running.
            for _, future in pending:
                future.cancel()
            raise
    return rows


def _extra_values(
    extra: ExtraScorer | None,
    arrays: tuple[NDArray[np.float32], NDArray[np.float32]],
    wanted: Sequence[str],
) -> dict[str, float]:
    assert extra is not None  # checked by evaluate_pairs before any work
    values = extra(*arrays)
    missing = [n for n in wanted if n not in values]
    if missing:
        raise ValueError(f"the scorer returned no value for {', '.join(missing)}")
    return {n: float(values[n]) for n in wanted}


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
    workers: int = DEFAULT_WORKERS,
    extra: ExtraScorer | None = None,
    extra_names: Iterable[str] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EvalResult:
    """Evaluate every prediction in ``pred_dir`` against the same-stem image in ``gt_dir``.

    Folders are scanned recursively; ``pred_suffix`` is stripped from prediction stems before
    matching (``img1_restored.png`` ↔ ``img1.png`` with ``pred_suffix="_restored"``). Errors
    are both collected in :attr:`EvalResult.errors` and forwarded to ``on_error`` when given;
    ``on_total(n_pairs)`` is called once before evaluation starts, so a progress bar can size
    itself. ``workers``, ``extra`` and ``extra_names`` are passed to :func:`evaluate_pairs`.
    Raises ``ValueError`` (bad metric, crop or worker count, or two files with the same stem in
    one folder, which would make the pairing a guess) or ``FileNotFoundError`` /
    ``NotADirectoryError`` (bad folder) before any image is read.
    """
    extra_names = list(extra_names)
    names = validate_metrics(metrics, extra_names)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
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
        workers=workers,
        extra=extra,
        extra_names=extra_names,
        max_pixels=max_pixels,
    )
    by_stem = {gt_path.stem: (pred_path, gt_path) for pred_path, gt_path in pairs}
    sources = {str(row["name"]): by_stem[str(row["name"])] for row in rows}
    return EvalResult(
        rows=rows,
        summary=summarize(rows, names),
        errors=errors,
        unmatched_pred=list(unmatched_pred),
        unmatched_gt=list(unmatched_gt),
        sources=sources,
        pair_rows=view_means(rows, sources),
    )


def view_means(rows: list[Row], sources: Mapping[str, tuple[Path, Path]]) -> list[Row]:
    """One row per stereo pair whose two views were both scored: ``"<stem> (L+R mean)"`` with
    the mean of the two views' values, as stereo SR reports them (per view, and averaged).

    Pairs are found among the ground-truth files with the naming rules of ``irctl restore``
    (irctl/io/stereo.py: ``_L``/``_R``, ``_left``/``_right``); files that do not pair are
    simply single images. The per-view rows stay as they are, and the summary is over views.
    """
    from irctl.io.stereo import pair_views

    row_by_gt = {sources[str(row["name"])][1]: row for row in rows}
    pairs, _unpaired = pair_views(list(row_by_gt))
    means: list[Row] = []
    for pair in pairs:
        left, right = row_by_gt.get(pair.left), row_by_gt.get(pair.right)
        if left is None or right is None:
            continue
        shared = [k for k in left if k != "name" and k in right]
        means.append(
            {"name": f"{pair.stem} (L+R mean)"}
            | {k: (float(left[k]) + float(right[k])) / 2.0 for k in shared}
        )
    return means


@dataclass
class PerceptualPlan:
    """Which perceptual metrics can run: per-pair ones through ``scorer.score_pair``, FID
    through ``scorer.score_folders``; ``failed`` are those that cannot (each already reported)."""

    scorer: Any | None = None
    per_pair: list[str] = field(default_factory=list)
    folder: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def plan_perceptual(
    metrics: list[str],
    *,
    weights_dir: Path | None,
    device: str,
    on_error: Callable[[str], None],
) -> PerceptualPlan:
    """Check every requested perceptual metric's weight files before anything runs.

    A metric whose files are missing is reported in one line (which files, which directory)
    and dropped; the others still run. Where pyiqa is not installed at all (the core
    environment) each perceptual metric gets one line saying so and how to install it; pyiqa
    itself is imported only when at least one metric has all its files.
    """
    from irctl.metrics import perceptual

    wanted = [m for m in metrics if m in perceptual.PERCEPTUAL_METRICS]
    plan = PerceptualPlan()
    if not wanted:
        return plan
    if not perceptual.pyiqa_installed():  # the core environment: no weights to speak of
        for metric in wanted:
            on_error(f"{metric}: {perceptual.NOT_INSTALLED}")
        plan.failed.extend(wanted)
        return plan
    directory = perceptual.weights_directory(weights_dir)
    usable = []
    for metric in wanted:
        missing = perceptual.missing_weights(metric, weights_dir)
        if missing:
            on_error(str(perceptual.MissingWeights(metric, missing, directory)))
            plan.failed.append(metric)
        else:
            usable.append(metric)
    if not usable:
        return plan
    try:
        plan.scorer = perceptual.PerceptualScorer(usable, weights_dir=weights_dir, device=device)
    except perceptual.MissingWeights as exc:  # a file the table did not know (newer pyiqa)
        on_error(str(exc))
        plan.failed.extend(usable)
        return plan
    except perceptual.PerceptualUnavailable as exc:
        on_error(f"{', '.join(usable)}: {exc}")
        plan.failed.extend(usable)
        return plan
    plan.per_pair = [m for m in usable if m not in perceptual.FOLDER_METRICS]
    plan.folder = [m for m in usable if m in perceptual.FOLDER_METRICS]
    return plan
