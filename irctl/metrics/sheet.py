"""Contact sheet for `irctl eval --sheet`: the best and worst images by one metric, side by side.

A table of means says *how much* a method gained; a person also wants to *see* where it works and
where it fails. The sheet shows, for the ``k`` best and ``k`` worst images by a metric, a centre
crop of the degraded input, the restored image and the ground truth, one row per image, with the
image name and its scores above each row::

    best 3, worst 3 of 120 images by psnr (higher is better), centre crops of 192 px
          input            restored          ground truth
    best 1   img_042   psnr 34.12  ssim 0.9312
    [crop]            [crop]            [crop]
    ...
    worst 1  img_007   psnr 21.40  ssim 0.6120
    [crop]            [crop]            [crop]

Design choices (and why):

* **Bounded memory by re-reading.** Evaluation streams and keeps only the small per-image rows;
  the sheet ranks those rows and then re-reads just the ``2k`` selected pairs (and their inputs),
  one image at a time. That is ``6k`` extra decodes at the end instead of keeping a crop of every
  image during the run (10 000 images x 3 crops of 192² x 3 bytes would be 3.3 GB).
* **Same scene region in all three tiles.** The crop is a centred square of ``crop`` pixels in
  ground-truth coordinates; an image of another size (a super-resolution input 4x smaller) gets
  the same region scaled to its size. Every tile is then resized with nearest-neighbour to
  ``crop x crop`` when needed (images smaller than the crop, small inputs), so pixels are shown
  as they are, never smoothed.
* **Display conversion only.** Grey becomes RGB, 16-bit and float become 8-bit (floats clipped to
  [0, 1]), alpha is dropped. The metrics were computed on the real values; this is for eyes.
* **Ranking respects the metric's direction** (``lower_is_better``); names not in it are
  higher-is-better. Rows without a finite-or-infinite value for the metric (NaN, missing) are not
  ranked. Ties are broken by name, so the sheet is deterministic. With fewer than ``2k`` images
  every image appears once (the better half as best rows, then the rest worst first).
* Written atomically (temp file + rename) as an 8-bit RGB PNG, like every irctl output.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from irctl.io.folders import discover
from irctl.io.images import Image, ImageReadError, read_image, write_image

__all__ = [
    "DEFAULT_CROP",
    "DEFAULT_K",
    "HEADER_HEIGHT",
    "LABEL_HEIGHT",
    "MARGIN",
    "SheetRow",
    "build_sheet",
    "index_inputs",
    "select_best_worst",
    "sheet_size",
    "write_sheet",
]

DEFAULT_K = 3
DEFAULT_CROP = 192

#: Layout, in pixels: outer margin and gap between tiles / rows.
MARGIN = 10
#: Title line plus column titles.
HEADER_HEIGHT = 58
#: The text line above each row of tiles (rank, name, scores).
LABEL_HEIGHT = 24

_FONT_SIZE = 15
_BACKGROUND = (250, 250, 250)
_TEXT = (25, 25, 25)
_MUTED = (100, 100, 100)
_BEST = (20, 120, 50)
_WORST = (185, 35, 25)
_BLANK_TILE = (215, 215, 215)
_RULE = (190, 190, 190)
_COLUMNS = ("input", "restored", "ground truth")

Row = Mapping[str, Any]


@dataclass(frozen=True)
class SheetRow:
    """One row of the sheet: which section (``"best"``/``"worst"``), rank in it, and the row."""

    section: str
    rank: int
    row: Row

    @property
    def name(self) -> str:
        return str(self.row["name"])


# --------------------------------------------------------------------------- ranking


def _score(row: Row, metric: str) -> float | None:
    value = row.get(metric)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def select_best_worst(
    rows: Iterable[Row], metric: str, k: int, lower_is_better: Iterable[str] = ()
) -> list[SheetRow]:
    """The ``k`` best rows (best first), then up to ``k`` worst rows (worst first), no repeats.

    "Best" is the lowest value when ``metric`` is in ``lower_is_better``, else the highest
    (``inf`` PSNR ranks best). Rows whose value is missing or NaN are left out; ties are broken
    by name. With fewer than ``2k`` ranked rows, each appears once: the better half (rounded
    up) as "best", the rest as "worst".
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    lower = metric in set(lower_is_better)
    scored = [(value, row) for row in rows if (value := _score(row, metric)) is not None]
    scored.sort(key=lambda item: (item[0] if lower else -item[0], str(item[1]["name"])))
    # Fewer than 2k images: split them, so the worst image is never labelled "best".
    best = scored[: min(k, math.ceil(len(scored) / 2))]
    worst = list(reversed(scored[len(best) :]))[:k]
    return [SheetRow("best", i + 1, row) for i, (_, row) in enumerate(best)] + [
        SheetRow("worst", i + 1, row) for i, (_, row) in enumerate(worst)
    ]


# --------------------------------------------------------------------------- inputs


def index_inputs(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Images under ``folder`` (recursively) by file stem, to pair inputs with ground truth.

    Raises ``FileNotFoundError`` / ``NotADirectoryError`` for a bad folder and ``ValueError`` for
    two files with the same stem (which input belongs to the image would be a guess).
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"input folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"input path is not a folder: {root}")
    index: dict[str, Path] = {}
    for path in discover(root):
        if path.stem in index:
            raise ValueError(f"ambiguous stem {path.stem!r}: {index[path.stem]} and {path}")
        index[path.stem] = path
    return index


# --------------------------------------------------------------------------- layout


def _row_height(crop: int) -> int:
    return LABEL_HEIGHT + crop + MARGIN


def sheet_size(n_rows: int, crop: int) -> tuple[int, int]:
    """``(height, width)`` of a sheet: header + ``n_rows`` rows of three ``crop``-px tiles."""
    # Outer margins on both sides plus a MARGIN-wide gap between the three tiles.
    return HEADER_HEIGHT + n_rows * _row_height(crop), 3 * crop + 4 * MARGIN


def _tile_x(column: int, crop: int) -> int:
    return MARGIN + column * (crop + MARGIN)


def _font(size: int = _FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font: scalable (Pillow >= 10.1 with FreeType), else the small bitmap."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()


# --------------------------------------------------------------------------- tiles


def _display_rgb(image: Image) -> np.ndarray:
    """8-bit RGB for display: clip [0, 1], round, grey repeated to three channels."""
    pixels = np.clip(np.nan_to_num(image.pixels, nan=0.0), 0.0, 1.0)
    rgb8 = np.rint(pixels * 255.0).astype(np.uint8)
    if rgb8.shape[2] == 1:
        rgb8 = np.repeat(rgb8, 3, axis=2)
    return rgb8


def _region(gt_size: tuple[int, int], crop: int) -> tuple[int, int, int]:
    """Top, left and side of the centred square crop in ground-truth coordinates."""
    h, w = gt_size
    side = min(crop, h, w)
    return (h - side) // 2, (w - side) // 2, side


def _crop_tile(
    rgb8: np.ndarray, gt_size: tuple[int, int], region: tuple[int, int, int], crop: int
) -> np.ndarray:
    """The region (ground-truth coordinates) of an image of any size, as a crop x crop tile."""
    top, left, side = region
    h, w = rgb8.shape[:2]
    gh, gw = gt_size
    if (h, w) == (gh, gw):
        y0, y1, x0, x1 = top, top + side, left, left + side
    else:  # another size (e.g. a low-resolution input): the same part of the scene
        y0, y1 = math.floor(top * h / gh), math.ceil((top + side) * h / gh)
        x0, x1 = math.floor(left * w / gw), math.ceil((left + side) * w / gw)
        y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
    tile = rgb8[y0:y1, x0:x1]
    if tile.shape[:2] != (crop, crop):
        tile = np.asarray(
            PILImage.fromarray(np.ascontiguousarray(tile)).resize(
                (crop, crop), PILImage.Resampling.NEAREST
            )
        )
    return tile


def _blank_tile(crop: int, text: str, font: Any) -> np.ndarray:
    tile = PILImage.new("RGB", (crop, crop), _BLANK_TILE)
    draw = ImageDraw.Draw(tile)
    text = _fit(draw, text, font, crop - 4)
    width = draw.textlength(text, font=font)
    draw.text(((crop - width) / 2, crop / 2 - _FONT_SIZE / 2), text, fill=_MUTED, font=font)
    return np.asarray(tile)


def _safe_text(draw: ImageDraw.ImageDraw, text: str, font: Any) -> str:
    """``text`` if the font can encode it (the bitmap fallback is Latin-1 only), else escaped."""
    try:
        draw.textlength(text, font=font)
        return text
    except UnicodeError:
        return text.encode("latin-1", "replace").decode("latin-1")


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: float) -> str:
    """Cut ``text`` with "..." so it fits in ``width`` pixels."""
    text = _safe_text(draw, text, font)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _format_score(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isinf(number) or math.isnan(number):
        return str(number)
    if abs(number) >= 100:
        return f"{number:.1f}"
    if abs(number) >= 1:
        return f"{number:.2f}"
    return f"{number:.4f}"


# --------------------------------------------------------------------------- sheet


def build_sheet(
    rows: Sequence[Row],
    sources: Mapping[str, tuple[Path, Path]],
    *,
    metric: str,
    k: int = DEFAULT_K,
    crop: int = DEFAULT_CROP,
    lower_is_better: Iterable[str] = (),
    inputs: Mapping[str, Path] | None = None,
    metric_names: Sequence[str] | None = None,
    read: Callable[[Path], Image] = read_image,
) -> np.ndarray:
    """The contact sheet as an 8-bit RGB array (``sheet_size(n_rows, crop)``).

    ``rows`` are evaluation rows (``{"name": ..., metric: value, ...}``); ``sources`` maps a row's
    name to its ``(restored, ground truth)`` files and ``inputs`` (optional) to its input file. A
    missing or unreadable file becomes a grey tile saying so ("no input", "unreadable"), never an
    exception. ``metric_names`` orders the scores printed on each row (default: ``metric`` first,
    then the row's other metrics). Only the selected rows' files are read (see module docstring).
    """
    if crop < 1:
        raise ValueError(f"crop must be >= 1, got {crop}")
    selected = select_best_worst(rows, metric, k, lower_is_better)
    lower = metric in set(lower_is_better)
    height, width = sheet_size(len(selected), crop)
    canvas = PILImage.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()

    n_best = sum(1 for item in selected if item.section == "best")
    n_ranked = sum(1 for row in rows if _score(row, metric) is not None)
    title = (
        f"best {n_best}, worst {len(selected) - n_best} of {n_ranked} images by {metric} "
        f"({'lower' if lower else 'higher'} is better)"
    )
    detail = f", centre crops of {crop} px"
    if draw.textlength(title + detail, font=font) <= width - 2 * MARGIN:
        title += detail  # only when it fits: the ranking is what must be readable
    draw.text((MARGIN, MARGIN), _fit(draw, title, font, width - 2 * MARGIN), fill=_TEXT, font=font)
    for column, label in enumerate(_COLUMNS):
        text = _fit(draw, label, font, crop)
        x = _tile_x(column, crop) + (crop - draw.textlength(text, font=font)) / 2
        draw.text((x, MARGIN + 24), text, fill=_MUTED, font=font)

    shown = list(metric_names) if metric_names is not None else [metric]
    for index, item in enumerate(selected):
        top = HEADER_HEIGHT + index * _row_height(crop)
        if item.section == "worst" and item.rank == 1 and index > 0:
            draw.line([(MARGIN, top - 2), (width - MARGIN, top - 2)], fill=_RULE, width=2)
        _draw_label(draw, item, shown, metric, font, top, width)
        pred_path, gt_path = sources[item.name]
        input_path = inputs.get(item.name) if inputs is not None else None
        tiles = _row_tiles(input_path, pred_path, gt_path, crop, font, read)
        for column, tile in enumerate(tiles):
            canvas.paste(PILImage.fromarray(tile), (_tile_x(column, crop), top + LABEL_HEIGHT))
    return np.asarray(canvas)


def _draw_label(
    draw: ImageDraw.ImageDraw,
    item: SheetRow,
    shown: Sequence[str],
    metric: str,
    font: Any,
    top: int,
    width: int,
) -> None:
    rank = f"{item.section} {item.rank}"
    colour = _BEST if item.section == "best" else _WORST
    y = top + 3
    draw.text((MARGIN, y), rank, fill=colour, font=font)
    x = MARGIN + draw.textlength(rank, font=font) + 12
    names = [metric, *(n for n in shown if n != metric)]
    scores = "  ".join(f"{n} {_format_score(item.row[n])}" for n in names if n in item.row)
    text = _fit(draw, f"{item.name}   {scores}", font, width - MARGIN - x)
    draw.text((x, y), text, fill=_TEXT, font=font)


def _row_tiles(
    input_path: Path | None,
    pred_path: Path,
    gt_path: Path,
    crop: int,
    font: Any,
    read: Callable[[Path], Image],
) -> list[np.ndarray]:
    """Input, restored and ground-truth tiles; the ground truth fixes the crop region."""

    def load(path: Path | None) -> np.ndarray | None:
        if path is None:
            return None
        try:
            return _display_rgb(read(path))
        except (ImageReadError, OSError, ValueError):
            return None

    gt = load(gt_path)
    pred = load(pred_path)
    reference = gt if gt is not None else pred
    gt_size = reference.shape[:2] if reference is not None else (crop, crop)
    region = _region(gt_size, crop)

    def tile(pixels: np.ndarray | None, missing: str) -> np.ndarray:
        if pixels is None:
            return _blank_tile(crop, missing, font)
        return _crop_tile(pixels, gt_size, region, crop)

    inp = load(input_path)
    missing_input = "no input" if input_path is None else "input unreadable"
    return [tile(inp, missing_input), tile(pred, "unreadable"), tile(gt, "unreadable")]


def write_sheet(path: str | os.PathLike[str], sheet: np.ndarray) -> Path:
    """Write an 8-bit RGB sheet atomically as PNG (the name must end in ``.png``)."""
    destination = Path(path)
    if destination.suffix.lower() != ".png":
        raise ValueError(f"the contact sheet is a PNG: {destination} must end in .png")
    array = np.asarray(sheet)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an 8-bit HxWx3 sheet, got {array.dtype} {array.shape}")
    write_image(destination, array.astype(np.float32) / np.float32(255.0), dtype=np.uint8)
    return destination
