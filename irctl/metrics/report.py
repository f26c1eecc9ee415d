"""CSV reports for `irctl eval`: one row per image, plus a per-metric summary.

Design choices (and why):

* Floats are written with ``repr`` precision (shortest string that round-trips), so a CSV can be
  re-read and re-averaged without drift; ``inf`` (PSNR of a perfect reconstruction) is written as
  ``inf``, which ``float()`` and pandas both parse.
* Summaries skip non-finite values for mean/median/std: one pixel-identical image would otherwise
  turn the mean PSNR into ``inf``. BasicSR averages PSNR over images the same way (arithmetic
  mean of per-image values) but never has to deal with ``inf`` in practice, so we report how many
  values were left out (``n_inf``) instead of hiding them; ``count`` is the number of values the
  statistics were computed from. ``std`` is the population standard deviation (numpy's default,
  ``ddof=0``) of those values.
* Files are written atomically (temp file in the same folder, then ``os.replace``) so an
  interrupted run never leaves a half-written report that looks complete.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SUMMARY_FIELDS",
    "format_value",
    "summarize",
    "write_per_image_csv",
    "write_summary_csv",
]

#: Columns of the summary CSV after ``metric``, in order.
SUMMARY_FIELDS: tuple[str, ...] = ("mean", "median", "std", "count", "n_inf")


def format_value(value: Any) -> str:
    """CSV text for one cell: floats at ``repr`` precision (``inf``/``-inf``/``nan`` spelled out),
    ints as-is, ``None`` as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Metric columns in first-seen order across rows (``name`` excluded)."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key != "name":
                seen.setdefault(key, None)
    return list(seen)


def write_per_image_csv(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    metric_names: Sequence[str] | None = None,
) -> Path:
    """Write ``name,<metric>,...`` with one line per image; returns the path written.

    Column order is ``metric_names`` when given, else the order in which keys first appear in
    ``rows``. A value missing from a row becomes an empty cell.
    """
    columns = list(metric_names) if metric_names is not None else _metric_columns(rows)
    header = ["name", *columns]
    lines: list[list[str]] = [header]
    lines.extend([format_value(row.get(col)) for col in header] for row in rows)
    return _atomic_write_csv(Path(path), lines)


def summarize(
    rows: Iterable[Mapping[str, Any]], metric_names: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    """Per-metric ``{"mean", "median", "std", "count", "n_inf"}`` over the finite values.

    ``count`` is the number of finite values used; ``n_inf`` the number of ``±inf`` values left
    out (e.g. PSNR of images identical to their ground truth). NaN and missing values are ignored.
    With no finite value, mean/median/std are NaN.
    """
    rows = list(rows)
    summary: dict[str, dict[str, float | int]] = {}
    for metric in metric_names:
        values = np.array(
            [float(row[metric]) for row in rows if row.get(metric) is not None],
            dtype=np.float64,
        )
        finite = values[np.isfinite(values)]
        n_inf = int(np.count_nonzero(np.isinf(values)))
        if finite.size:
            stats = (float(finite.mean()), float(np.median(finite)), float(finite.std()))
        else:
            stats = (math.nan, math.nan, math.nan)
        summary[metric] = {
            "mean": stats[0],
            "median": stats[1],
            "std": stats[2],
            "count": int(finite.size),
            "n_inf": n_inf,
        }
    return summary


def write_summary_csv(
    path: str | os.PathLike[str], summary: Mapping[str, Mapping[str, float | int]]
) -> Path:
    """Write ``metric,mean,median,std,count,n_inf``, one line per metric; returns the path."""
    lines: list[list[str]] = [["metric", *SUMMARY_FIELDS]]
    lines.extend(
        [metric, *(format_value(stats.get(field)) for field in SUMMARY_FIELDS)]
        for metric, stats in summary.items()
    )
    return _atomic_write_csv(Path(path), lines)


def _atomic_write_csv(path: Path, lines: Sequence[Sequence[str]]) -> Path:
    """Write to a ``.partial`` temp file next to ``path`` then ``os.replace`` it into place.

    Same directory so the rename never crosses filesystems (``os.replace`` is atomic only
    within one). Opened with mode ``"x"`` under a unique name rather than ``mkstemp`` so the
    report gets the user's normal umask permissions instead of 0600. The parent folder is
    created if needed.
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.partial")
    try:
        # a name that is not UTF-8 is written as the bytes it is, not a crash after scoring
        with open(tmp, "x", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            fh.write(buffer.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path
