"""Contact sheet: ranking, layout, tile content (crops, grey/16-bit display, blanks), writing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import save_array as _save
from PIL import Image as PILImage

from irctl.metrics.sheet import (
    HEADER_HEIGHT,
    LABEL_HEIGHT,
    MARGIN,
    build_sheet,
    index_inputs,
    select_best_worst,
    sheet_size,
    write_sheet,
)

CROP = 32
BLANK = (215, 215, 215)


def _rows(values: dict[str, float], metric: str = "m") -> list[dict]:
    return [{"name": name, metric: value} for name, value in sorted(values.items())]


def _random(seed: int, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top + 1, shape).astype(dtype)


def _tile(sheet: np.ndarray, row: int, column: int, crop: int = CROP) -> np.ndarray:
    top = HEADER_HEIGHT + row * (LABEL_HEIGHT + crop + MARGIN) + LABEL_HEIGHT
    left = MARGIN + column * (crop + MARGIN)
    return sheet[top : top + crop, left : left + crop]


def _is_blank(tile: np.ndarray) -> bool:
    """A blank tile: the grey background everywhere but its small centred text."""
    return float(np.mean(np.all(tile == BLANK, axis=2))) > 0.7


@pytest.fixture()
def dataset(tmp_path: Path) -> dict:
    """Eight 40x48 RGB images; ``names[i]`` has score ``i`` for metric "m"; inputs except #0."""
    sources, inputs, preds = {}, {}, {}
    for i in range(8):
        name = f"im{i}"
        pred = _random(i, (40, 48, 3))
        preds[name] = pred
        sources[name] = (
            _save(tmp_path / "pred" / f"{name}.png", pred),
            _save(tmp_path / "gt" / f"{name}.png", _random(100 + i, (40, 48, 3))),
        )
        if i:
            inputs[name] = _save(tmp_path / "input" / f"{name}.png", _random(200 + i, (40, 48, 3)))
    rows = _rows({f"im{i}": float(i) for i in range(8)})
    return {"rows": rows, "sources": sources, "inputs": inputs, "preds": preds}


# --------------------------------------------------------------------------- ranking


def test_select_respects_direction_and_orders_sections() -> None:
    rows = _rows({"a": 3.0, "b": 1.0, "c": 5.0, "d": 2.0, "e": 4.0, "f": 0.5})
    higher = select_best_worst(rows, "m", 2)
    assert [(r.section, r.rank, r.name) for r in higher] == [
        ("best", 1, "c"),
        ("best", 2, "e"),
        ("worst", 1, "f"),
        ("worst", 2, "b"),
    ]
    lower = select_best_worst(rows, "m", 2, lower_is_better={"m"})
    assert [r.name for r in lower] == ["f", "b", "c", "e"]


def test_select_unknown_direction_is_higher_is_better_and_skips_nan() -> None:
    rows = [
        {"name": "a", "psnr": math.inf},
        {"name": "b", "psnr": 20.0},
        {"name": "c", "psnr": math.nan},
        {"name": "d"},
        {"name": "e", "psnr": 20.0},
        {"name": "f", "psnr": 10.0},
    ]
    chosen = select_best_worst(rows, "psnr", 1, lower_is_better={"mae"})
    assert [(r.section, r.name) for r in chosen] == [("best", "a"), ("worst", "f")]
    ties = select_best_worst(rows, "psnr", 2)
    assert [r.name for r in ties] == ["a", "b", "f", "e"]  # ties broken by name


def test_select_with_fewer_than_2k_rows_shows_each_once() -> None:
    rows = _rows({"a": 1.0, "b": 2.0, "c": 3.0})
    chosen = select_best_worst(rows, "m", 3)
    assert [(r.section, r.rank, r.name) for r in chosen] == [
        ("best", 1, "c"),
        ("best", 2, "b"),
        ("worst", 1, "a"),
    ]
    assert [r.name for r in select_best_worst(rows[:1], "m", 3)] == ["a"]
    assert select_best_worst([], "m", 3) == []
    with pytest.raises(ValueError, match="k must be"):
        select_best_worst(rows, "m", 0)


# --------------------------------------------------------------------------- sheet


def test_sheet_shape_and_best_row_content(dataset: dict) -> None:
    sheet = build_sheet(
        dataset["rows"], dataset["sources"], metric="m", k=3, crop=CROP, inputs=dataset["inputs"]
    )
    assert sheet.dtype == np.uint8
    # header + 2k rows, each a label line over three crops; margins around and between.
    assert sheet.shape == (
        HEADER_HEIGHT + 6 * (LABEL_HEIGHT + CROP + MARGIN),
        3 * CROP + 4 * MARGIN,
        3,
    )
    assert sheet.shape[:2] == sheet_size(6, CROP)
    centre = (slice(4, 36), slice(8, 40))  # 32x32 in the middle of 40x48
    # Higher is better for "m" here: im7 best, im0 worst (the last worst row is im5).
    for row, name in enumerate(["im7", "im6", "im5", "im0", "im1", "im2"]):
        np.testing.assert_array_equal(_tile(sheet, row, 1), dataset["preds"][name][centre])
    gt7 = np.asarray(PILImage.open(dataset["sources"]["im7"][1]))
    np.testing.assert_array_equal(_tile(sheet, 0, 2), gt7[centre])
    in7 = np.asarray(PILImage.open(dataset["inputs"]["im7"]))
    np.testing.assert_array_equal(_tile(sheet, 0, 0), in7[centre])
    assert _is_blank(_tile(sheet, 3, 0))  # im0 has no input
    assert not _is_blank(_tile(sheet, 4, 0))


def test_sheet_lower_is_better(dataset: dict) -> None:
    sheet = build_sheet(
        dataset["rows"],
        dataset["sources"],
        metric="m",
        k=2,
        crop=CROP,
        lower_is_better={"m"},
    )
    np.testing.assert_array_equal(_tile(sheet, 0, 1), dataset["preds"]["im0"][4:36, 8:40])
    np.testing.assert_array_equal(_tile(sheet, 2, 1), dataset["preds"]["im7"][4:36, 8:40])
    assert all(_is_blank(_tile(sheet, row, 0)) for row in range(4))  # no inputs given


def test_sheet_reads_only_the_selected_files(dataset: dict) -> None:
    from irctl.io.images import read_image

    read: list[Path] = []

    def counting(path: Path):
        read.append(Path(path))
        return read_image(path)

    build_sheet(dataset["rows"], dataset["sources"], metric="m", k=1, crop=CROP, read=counting)
    assert sorted(p.stem for p in read) == ["im0", "im0", "im7", "im7"]


def test_grey_16bit_small_and_low_resolution_images(tmp_path: Path) -> None:
    grey = _random(1, (20, 24))  # smaller than the crop: enlarged, nearest
    grey_pred = _save(tmp_path / "g_pred.png", grey)
    grey_gt = _save(tmp_path / "g_gt.png", grey)
    deep = _random(2, (40, 40, 3), np.uint16)
    deep_pred = _save(tmp_path / "d_pred.tif", deep)
    deep_gt = _save(tmp_path / "d_gt.tif", deep)
    low = _random(3, (20, 20, 3))  # half-resolution input: same scene region, enlarged
    low_in = _save(tmp_path / "d_in.png", low)
    rows = [{"name": "g", "m": 2.0}, {"name": "d", "m": 1.0}]
    sources = {"g": (grey_pred, grey_gt), "d": (deep_pred, deep_gt)}
    sheet = build_sheet(rows, sources, metric="m", k=1, crop=CROP, inputs={"d": low_in})

    tile = _tile(sheet, 0, 1)  # "g": grey 20x24, centred 20x20 square, nearest to 32x32
    assert np.array_equal(tile[..., 0], tile[..., 1]) and np.array_equal(tile[..., 1], tile[..., 2])
    square = grey[:, 2:22]
    expected = np.asarray(PILImage.fromarray(square).resize((CROP, CROP), PILImage.NEAREST))
    np.testing.assert_array_equal(tile[..., 0], expected)

    deep8 = np.rint(deep[4:36, 4:36] / 65535.0 * 255.0).astype(np.uint8)  # 16-bit → 8-bit
    np.testing.assert_array_equal(_tile(sheet, 1, 2), deep8)
    low_tile = _tile(sheet, 1, 0)  # ground-truth rows 4..36 are input rows 2..18
    expected_low = PILImage.fromarray(low[2:18, 2:18]).resize((CROP, CROP), PILImage.NEAREST)
    np.testing.assert_array_equal(low_tile, np.asarray(expected_low))


def test_unreadable_files_become_labelled_blank_tiles(tmp_path: Path) -> None:
    gt = _save(tmp_path / "gt.png", _random(0, (40, 40, 3)))
    broken = tmp_path / "in.png"
    broken.write_bytes(b"not a png")
    rows = [{"name": "x", "m": 1.0}]
    sheet = build_sheet(
        rows,
        {"x": (tmp_path / "deleted.png", gt)},
        metric="m",
        k=1,
        crop=CROP,
        inputs={"x": broken},
    )
    assert _is_blank(_tile(sheet, 0, 0)) and _is_blank(_tile(sheet, 0, 1))
    assert not _is_blank(_tile(sheet, 0, 2))


@pytest.mark.parametrize("bitmap_font", [False, True])
def test_odd_names_and_long_labels_do_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bitmap_font: bool
) -> None:
    if bitmap_font:  # Pillow without FreeType: a Latin-1-only bitmap font
        from PIL import ImageFont

        from irctl.metrics import sheet as sheet_module

        monkeypatch.setattr(sheet_module, "_font", ImageFont.load_default_imagefont)
    img = _save(tmp_path / "a.png", _random(0, (40, 40, 3)))
    name = "图像_" + "x" * 200
    sheet = build_sheet(
        [{"name": name, "m": 1.0, "other": math.inf}],
        {name: (img, img)},
        metric="m",
        k=1,
        crop=CROP,
        metric_names=["m", "other"],
    )
    assert sheet.shape[:2] == sheet_size(1, CROP)


# --------------------------------------------------------------------------- I/O


def test_write_sheet_is_an_atomic_png(tmp_path: Path) -> None:
    sheet = _random(0, (30, 40, 3))
    path = write_sheet(tmp_path / "out" / "sheet.png", sheet)
    np.testing.assert_array_equal(np.asarray(PILImage.open(path)), sheet)
    assert [p.name for p in path.parent.iterdir()] == ["sheet.png"]
    with pytest.raises(ValueError, match=r"\.png"):
        write_sheet(tmp_path / "sheet.jpg", sheet)
    with pytest.raises(ValueError, match="8-bit"):
        write_sheet(tmp_path / "s.png", sheet.astype(np.uint16))


def test_index_inputs(tmp_path: Path) -> None:
    a = _save(tmp_path / "in" / "sub" / "a.png", _random(0, (4, 4, 3)))
    b = _save(tmp_path / "in" / "b.tif", _random(1, (4, 4, 3)))
    assert index_inputs(tmp_path / "in") == {"a": a, "b": b}
    with pytest.raises(FileNotFoundError, match="input folder not found"):
        index_inputs(tmp_path / "missing")
    _save(tmp_path / "in" / "a.jpg", _random(2, (4, 4, 3)))
    with pytest.raises(ValueError, match="ambiguous stem 'a'"):
        index_inputs(tmp_path / "in")
