"""Folder evaluation, CSV reports and the `eval` command, on small synthetic image files."""

from __future__ import annotations

import csv
import json
import math
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import save_array as _save
from PIL import Image as PILImage
from typer.testing import CliRunner

from irctl.cli import eval_cmd
from irctl.cli.common import OneLineCommand
from irctl.engine import evaluate as evaluate_module
from irctl.engine.evaluate import evaluate_folders, evaluate_pairs, validate_metrics
from irctl.io.images import read_image
from irctl.metrics import perceptual
from irctl.metrics import sheet as sheet_module
from irctl.metrics.fidelity import mae, psnr, rmse_lab, ssim
from irctl.metrics.report import summarize, write_per_image_csv, write_summary_csv

SIZE = (24, 20)  # H, W: small but above the 11x11 SSIM window


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _image(dtype: type, channels: int, seed: int, shape: tuple[int, int] = SIZE) -> np.ndarray:
    top = np.iinfo(dtype).max
    full = (*shape, channels) if channels > 1 else shape
    return _rng(seed).integers(0, top + 1, full).astype(dtype)


def _noisy(img: np.ndarray, seed: int) -> np.ndarray:
    top = np.iinfo(img.dtype).max
    noise = _rng(seed).normal(0, 0.05 * top, img.shape)
    return np.clip(np.rint(img + noise), 0, top).astype(img.dtype)


@pytest.fixture()
def folders(tmp_path: Path) -> dict:
    """pred/ and gt/ with four good pairs (8-bit RGB, 8-bit grey, 16-bit RGB TIFF, a nested
    one), a size mismatch, an unreadable prediction, a missing prediction and an extra one."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    specs = {
        "a": (".png", np.uint8, 3),
        "b": (".png", np.uint8, 1),
        "c": (".tif", np.uint16, 3),
        "sub/d": (".png", np.uint8, 3),
    }
    for i, (name, (ext, dtype, channels)) in enumerate(specs.items()):
        gt = _image(dtype, channels, seed=i)
        pred = _noisy(gt, seed=100 + i)
        _save(gt_dir / f"{name}{ext}", gt)
        _save(pred_dir / f"{name}{ext}", pred)
        arrays[Path(name).name] = (pred, gt)
    _save(gt_dir / "e.png", _image(np.uint8, 3, seed=10))
    _save(pred_dir / "e.png", _image(np.uint8, 3, seed=11, shape=(24, 22)))  # size mismatch
    _save(gt_dir / "f.png", _image(np.uint8, 3, seed=12))
    (pred_dir / "f.png").write_bytes(b"this is not a PNG")  # unreadable
    _save(gt_dir / "g.png", _image(np.uint8, 3, seed=13))  # no prediction
    _save(pred_dir / "h.png", _image(np.uint8, 3, seed=14))  # no ground truth
    return {"pred": pred_dir, "gt": gt_dir, "arrays": arrays}


def _max(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max)


# --------------------------------------------------------------------------- engine


def test_evaluate_folders_values_errors_and_unmatched(folders: dict) -> None:
    seen_errors: list[str] = []
    ticks: list[None] = []
    totals: list[int] = []
    result = evaluate_folders(
        folders["pred"],
        folders["gt"],
        ["psnr", "ssim", "mae"],
        on_error=seen_errors.append,
        progress=lambda: ticks.append(None),
        on_total=totals.append,
    )
    assert [row["name"] for row in result.rows] == ["a", "b", "c", "d"]
    for row in result.rows:
        pred, gt = folders["arrays"][row["name"]]
        top = _max(gt.dtype)
        # Exact: the reader's [0, 1] floats are turned back into the stored integers.
        assert row["psnr"] == psnr(pred, gt, max_value=top)
        assert row["ssim"] == ssim(pred, gt, max_value=top)
        assert row["mae"] == mae(pred, gt, max_value=top)

    assert result.errors == seen_errors
    assert len(result.errors) == 2
    size_error, read_error = result.errors
    assert size_error.startswith(str(folders["pred"] / "e.png") + ": ")
    assert "22x24" in size_error and "20x24" in size_error
    assert read_error.startswith(str(folders["pred"] / "f.png") + ": ")

    assert totals == [6] and len(ticks) == 6
    assert result.unmatched_gt == [folders["gt"] / "g.png"]
    assert result.unmatched_pred == [folders["pred"] / "h.png"]
    assert not result.ok
    assert result.summary["psnr"]["count"] == 4
    assert result.summary["psnr"]["mean"] == pytest.approx(
        np.mean([row["psnr"] for row in result.rows])
    )


def test_crop_and_y_channel_are_passed_through(folders: dict) -> None:
    result = evaluate_folders(
        folders["pred"], folders["gt"], ["psnr"], crop_border=2, y_channel=True
    )
    for row in result.rows:
        pred, gt = folders["arrays"][row["name"]]
        expected = psnr(pred, gt, max_value=_max(gt.dtype), crop_border=2, y_channel=True)
        assert row["psnr"] == expected
    grey = next(row for row in result.rows if row["name"] == "b")
    pred, gt = folders["arrays"]["b"]
    assert grey["psnr"] == psnr(pred, gt, max_value=255.0, crop_border=2)  # grey is its own Y


def test_grey_vs_rgb_is_a_pair_error(tmp_path: Path) -> None:
    rgb = _image(np.uint8, 3, seed=0)
    pred = _save(tmp_path / "pred" / "x.png", rgb[..., 0])
    gt = _save(tmp_path / "gt" / "x.png", rgb)
    errors: list[str] = []
    rows = evaluate_pairs([(pred, gt)], ["psnr"], on_error=errors.append)
    assert rows == []
    assert len(errors) == 1 and "grey" in errors[0] and "RGB" in errors[0]


def test_too_small_for_ssim_is_a_pair_error(tmp_path: Path) -> None:
    img = _image(np.uint8, 3, seed=0, shape=(8, 8))
    pred = _save(tmp_path / "p.png", img)
    gt = _save(tmp_path / "g.png", img)
    errors: list[str] = []
    rows = evaluate_pairs([(pred, gt)], ["psnr", "ssim"], on_error=errors.append)
    assert rows == [] and len(errors) == 1 and "ssim" in errors[0]


def test_8bit_prediction_against_16bit_ground_truth(tmp_path: Path) -> None:
    img8 = _image(np.uint8, 3, seed=0)
    pred = _save(tmp_path / "p.png", img8)
    gt = _save(tmp_path / "g.tif", img8.astype(np.uint16) * np.uint16(257))
    rows = evaluate_pairs([(pred, gt)], ["psnr", "mae"], on_error=pytest.fail)
    assert rows[0]["psnr"] == math.inf and rows[0]["mae"] == 0.0


def test_pred_suffix(tmp_path: Path) -> None:
    img = _image(np.uint8, 3, seed=0)
    _save(tmp_path / "pred" / "a_restored.png", img)
    _save(tmp_path / "gt" / "a.png", img)
    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt", ["psnr"], pred_suffix="_restored")
    assert result.rows == [{"name": "a", "psnr": math.inf}]
    assert result.ok and result.summary["psnr"]["n_inf"] == 1


def test_bad_requests_raise_before_any_work(folders: dict) -> None:
    calls: list[str] = []
    with pytest.raises(
        ValueError, match=r"unknown metric 'lpips'.*mae, psnr, rmse, rmse-lab, ssim"
    ):
        evaluate_folders(folders["pred"], folders["gt"], ["psnr", "lpips"], on_error=calls.append)
    with pytest.raises(FileNotFoundError, match="prediction folder not found"):
        evaluate_folders(folders["pred"] / "nope", folders["gt"], ["psnr"])
    with pytest.raises(ValueError, match="crop_border"):
        evaluate_pairs([], ["psnr"], crop_border=-1, on_error=calls.append)
    assert calls == []
    _save(folders["gt"] / "a.tif", _image(np.uint8, 3, seed=0))  # same stem as gt/a.png
    with pytest.raises(ValueError, match="ambiguous stem 'a'"):
        evaluate_folders(folders["pred"], folders["gt"], ["psnr"], on_error=calls.append)
    assert calls == []
    assert validate_metrics([" PSNR", "ssim", "psnr", ""]) == ["psnr", "ssim"]


def test_rmse_lab_in_folders_and_grey_pair_error(folders: dict) -> None:
    errors: list[str] = []
    result = evaluate_folders(
        folders["pred"], folders["gt"], ["rmse-lab", "psnr"], crop_border=1, on_error=errors.append
    )
    assert [row["name"] for row in result.rows] == ["a", "c", "d"]  # b is grey
    for row in result.rows:
        pred, gt = folders["arrays"][row["name"]]
        assert row["rmse-lab"] == rmse_lab(pred, gt, max_value=_max(gt.dtype), crop_border=1)
    grey = [e for e in errors if "b.png" in e]
    assert grey == [
        f"{folders['pred'] / 'b.png'}: rmse-lab needs colour (RGB) images, got a grey image"
    ]


# --------------------------------------------------------------------------- streaming


def _many(tmp_path: Path, n: int, *, bad: tuple[int, ...] = ()) -> list[tuple[Path, Path]]:
    """``n`` tiny 8-bit pairs (16x16); predictions at the indices in ``bad`` are not images."""
    pairs = []
    for i in range(n):
        gt = _image(np.uint8, 3, seed=100 + i, shape=(16, 16))
        gt_path = _save(tmp_path / "gt" / f"img{i:03d}.png", gt)
        pred_path = tmp_path / "pred" / f"img{i:03d}.png"
        if i in bad:
            pred_path.parent.mkdir(parents=True, exist_ok=True)
            pred_path.write_bytes(b"not an image")
        else:
            _save(pred_path, _noisy(gt, seed=200 + i))
        pairs.append((pred_path, gt_path))
    return pairs


def _jittery_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads that take 0-3 ms depending on the file, so threads finish out of order."""

    def read(path, **options):
        time.sleep((zlib.crc32(str(path).encode()) % 4) / 1000)
        return read_image(path, **options)

    monkeypatch.setattr(evaluate_module, "read_image", read)


@pytest.mark.parametrize("workers", [1, 3])
def test_streaming_matches_sequential_and_keeps_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    pairs = _many(tmp_path, 12, bad=(3, 8))
    _jittery_reader(monkeypatch)
    metrics = ["psnr", "ssim", "mae", "rmse-lab"]
    expected_rows = []
    for i, (pred_path, gt_path) in enumerate(pairs):
        if i in (3, 8):
            continue
        pred = np.asarray(PILImage.open(pred_path))
        gt = np.asarray(PILImage.open(gt_path))
        row = {"name": gt_path.stem}
        row.update({m: evaluate_module.METRICS[m](pred, gt, max_value=255.0) for m in metrics})
        expected_rows.append(row)

    errors: list[str] = []
    ticks: list[None] = []
    rows = evaluate_pairs(
        iter(pairs),  # consumed lazily: a generator works
        metrics,
        on_error=errors.append,
        progress=lambda: ticks.append(None),
        workers=workers,
    )
    assert rows == expected_rows  # same values, same order as a plain loop
    assert [e.split(":")[0] for e in errors] == [str(pairs[3][0]), str(pairs[8][0])]
    assert len(ticks) == 12
    again = evaluate_pairs(pairs, metrics, on_error=lambda _: None, workers=workers)
    assert again == rows


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_pairs_in_flight_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """A slow consumer must not let decoding run ahead: at most 2 x workers pairs in flight.

    Alive decoded images are counted as images read minus two per pair already collected
    (``progress`` runs when a pair is collected): an upper bound, since a worker drops its
    pixels even before the pair is collected.
    """
    pairs = _many(tmp_path, 30)
    lock = threading.Lock()
    state = {"read": 0, "done": 0, "max": 0}

    def read(path, **options):
        image = read_image(path, **options)
        with lock:
            state["read"] += 1
            state["max"] = max(state["max"], state["read"] - 2 * state["done"])
        return image

    def progress() -> None:
        time.sleep(0.002)  # slower than decoding a 16x16 PNG
        with lock:
            state["done"] += 1

    monkeypatch.setattr(evaluate_module, "read_image", read)
    rows = evaluate_pairs(pairs, ["psnr"], on_error=pytest.fail, progress=progress, workers=workers)
    assert len(rows) == 30 and state["read"] == 60
    assert state["max"] <= 2 * (2 * workers) + 2, state


def test_extra_scorer_is_merged_in_order(tmp_path: Path) -> None:
    pairs = _many(tmp_path, 4, bad=(1,))
    seen: list[tuple[tuple[int, ...], str, float, float, str]] = []

    def extra(pred01: np.ndarray, gt01: np.ndarray) -> dict[str, float]:
        seen.append(
            (
                pred01.shape,
                str(pred01.dtype),
                float(min(pred01.min(), gt01.min())),
                float(max(pred01.max(), gt01.max())),
                threading.current_thread().name,
            )
        )
        if len(seen) == 2:
            raise ValueError("too small for this network")
        return {"fake": float(np.abs(pred01 - gt01).mean()), "ignored": 1.0}

    errors: list[str] = []
    rows = evaluate_pairs(
        pairs,
        ["psnr", "FAKE"],
        crop_border=2,
        on_error=errors.append,
        workers=3,
        extra=extra,
        extra_names=["fake"],
    )
    assert [row["name"] for row in rows] == ["img000", "img003"]
    assert list(rows[0]) == ["name", "psnr", "fake"]  # only the requested extra names
    gt = np.asarray(PILImage.open(pairs[0][1]), dtype=np.float32)[2:-2, 2:-2] / 255
    pred = np.asarray(PILImage.open(pairs[0][0]), dtype=np.float32)[2:-2, 2:-2] / 255
    assert rows[0]["fake"] == pytest.approx(float(np.abs(pred - gt).mean()), rel=1e-6)
    assert errors[0].startswith(str(pairs[1][0]) + ": ")  # unreadable: no extra call
    assert errors[1] == f"{pairs[2][0]}: too small for this network"
    assert all(shape == (12, 12, 3) and dtype == "float32" for shape, dtype, *_ in seen)
    assert all(lo >= 0.0 and hi <= 1.0 for _, _, lo, hi, _ in seen)
    assert {name for *_, name in seen} == {threading.current_thread().name}  # caller's thread


def test_extra_requests_are_validated(tmp_path: Path) -> None:
    assert validate_metrics(["psnr", " LPIPS"], extra_names=["lpips"]) == ["psnr", "lpips"]
    with pytest.raises(ValueError, match=r"unknown metric 'dists'; known metrics: lpips, mae"):
        validate_metrics(["dists"], extra_names=["lpips"])
    with pytest.raises(ValueError, match="no scorer for metric"):
        evaluate_pairs([], ["lpips"], on_error=pytest.fail, extra_names=["lpips"])
    with pytest.raises(ValueError, match="workers must be >= 1"):
        evaluate_pairs([], ["psnr"], on_error=pytest.fail, workers=0)
    pairs = _many(tmp_path, 1)
    errors: list[str] = []
    rows = evaluate_pairs(
        pairs, ["lpips"], on_error=errors.append, extra=lambda p, g: {}, extra_names=["lpips"]
    )
    assert rows == [] and errors == [f"{pairs[0][0]}: the scorer returned no value for lpips"]


def test_sources_name_the_files_of_every_row(folders: dict) -> None:
    result = evaluate_folders(folders["pred"], folders["gt"], ["psnr"])
    assert set(result.sources) == {row["name"] for row in result.rows}
    assert result.sources["d"] == (
        folders["pred"] / "sub" / "d.png",
        folders["gt"] / "sub" / "d.png",
    )


# --------------------------------------------------------------------------- reports


def test_report_csvs_and_summary(tmp_path: Path) -> None:
    rows = [
        {"name": "a", "psnr": 30.123456789012345, "ssim": 0.9},
        {"name": "b", "psnr": math.inf, "ssim": 1.0},
        {"name": "c", "psnr": 20.0, "ssim": 0.5},
    ]
    summary = summarize(rows, ["psnr", "ssim"])
    assert summary["psnr"] == {
        "mean": pytest.approx(25.0617284),
        "median": pytest.approx(25.0617284),
        "std": pytest.approx(5.0617284),
        "count": 2,
        "n_inf": 1,
    }
    assert summary["ssim"]["count"] == 3 and summary["ssim"]["n_inf"] == 0

    per_image = write_per_image_csv(tmp_path / "out" / "per_image.csv", rows, ["ssim", "psnr"])
    with per_image.open(newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["name", "ssim", "psnr"]
    assert table[1] == ["a", "0.9", repr(rows[0]["psnr"])]
    assert float(table[1][2]) == rows[0]["psnr"]  # repr precision round-trips exactly
    assert table[2][2] == "inf" and float(table[2][2]) == math.inf

    path = write_summary_csv(tmp_path / "out" / "summary.csv", summary)
    with path.open(newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert list(lines[0]) == ["metric", "mean", "median", "std", "count", "n_inf"]
    assert [line["metric"] for line in lines] == ["psnr", "ssim"]
    assert lines[0]["n_inf"] == "1" and float(lines[0]["mean"]) == summary["psnr"]["mean"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "per_image.csv",
        "summary.csv",
    ]  # no temp files left behind


def test_summary_with_no_finite_values() -> None:
    stats = summarize([{"name": "a", "psnr": math.inf}], ["psnr"])["psnr"]
    assert stats["count"] == 0 and stats["n_inf"] == 1 and math.isnan(stats["mean"])


# --------------------------------------------------------------------------- CLI


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command(cls=OneLineCommand)(eval_cmd.evaluate)  # irctl's one-line usage errors
    return app


def test_cli_all_good_exit_0_with_json(tmp_path: Path) -> None:
    for i, name in enumerate(["a", "b"]):
        gt = _image(np.uint8, 3, seed=i)
        _save(tmp_path / "gt" / f"{name}.png", gt)
        _save(tmp_path / "pred" / f"{name}.png", _noisy(gt, seed=10 + i))
    _save(tmp_path / "pred" / "extra.png", _image(np.uint8, 3, seed=5))

    result = CliRunner().invoke(
        _cli(),
        ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n_images"] == 2 and payload["errors"] == [] and payload["unmatched_gt"] == []
    assert payload["unmatched_pred"] == [str(tmp_path / "pred" / "extra.png")]
    assert set(payload["summary"]) == {"psnr", "ssim"}
    assert payload["summary"]["psnr"]["count"] == 2
    assert "warning: no ground truth for" in result.stderr

    out = tmp_path / "pred_metrics"  # default: <pred>_metrics next to --pred
    with (out / "per_image.csv").open(newline="") as fh:
        assert next(csv.reader(fh)) == ["name", "psnr", "ssim"]
    assert (out / "summary.csv").is_file()


def test_cli_partial_failure_exit_1(folders: dict, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = CliRunner().invoke(
        _cli(),
        [
            "--pred",
            str(folders["pred"]),
            "--gt",
            str(folders["gt"]),
            "--metrics",
            "psnr,rmse",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 2
    assert f"warning: no prediction for {folders['gt'] / 'g.png'}" in result.stderr
    payload = json.loads(result.stdout)
    assert payload["n_images"] == 4 and len(payload["errors"]) == 2
    with (out / "per_image.csv").open(newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["name", "psnr", "rmse"] and len(table) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "psnr,sharpness"], "unknown metric 'sharpness'"),
        (["--crop-border", "-1"], "'--crop-border': Input should be greater than or equal to 0"),
    ],
)
def test_cli_usage_errors_exit_2(folders: dict, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        _cli(), ["--pred", str(folders["pred"]), "--gt", str(folders["gt"]), *args]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert result.stdout == ""


def test_cli_missing_folder_exit_2(tmp_path: Path) -> None:
    (tmp_path / "gt").mkdir()
    result = CliRunner().invoke(
        _cli(), ["--pred", str(tmp_path / "missing"), "--gt", str(tmp_path / "gt")]
    )
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert (
        line.startswith("error: ")
        and f"'--pred': dir '{tmp_path / 'missing'}' does not exist" in line
    )


# --------------------------------------------------------------------------- CLI: sheet


def _ranked_folders(tmp_path: Path, n: int = 8) -> Path:
    """gt/, pred/ (noise growing with the index: img0 best, img{n-1} worst) and input/."""
    for i in range(n):
        gt = _image(np.uint8, 3, seed=i, shape=(40, 48))
        noise = _rng(50 + i).normal(0, 2 + 6 * i, gt.shape)
        pred = np.clip(np.rint(gt + noise), 0, 255).astype(np.uint8)
        _save(tmp_path / "gt" / f"img{i}.png", gt)
        _save(tmp_path / "pred" / f"img{i}.png", pred)
        if i != 0:
            _save(tmp_path / "input" / f"img{i}.png", _noisy(gt, seed=90 + i))
    return tmp_path


@pytest.mark.parametrize("metrics", ["psnr,ssim", "mae,psnr", "rmse-lab"])
def test_cli_sheet_is_written(tmp_path: Path, metrics: str) -> None:
    root = _ranked_folders(tmp_path)
    target = tmp_path / "sheets" / "sheet.png"
    result = CliRunner().invoke(
        _cli(),
        [
            "--pred", str(root / "pred"), "--gt", str(root / "gt"), "--input", str(root / "input"),
            "--metrics", metrics, "--sheet", str(target), "--sheet-k", "2", "--sheet-crop", "32",
            "--workers", "3", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sheet"] == str(target)
    assert f"wrote {target}" in result.stderr
    sheet = np.asarray(PILImage.open(target))
    assert sheet.shape == (*sheet_module.sheet_size(4, 32), 3) and sheet.dtype == np.uint8
    # Whatever the metric's direction, the best row is img0 (least noise), the worst img7.
    best = sheet[sheet_module.HEADER_HEIGHT + sheet_module.LABEL_HEIGHT :][:32]
    restored = best[:, 32 + 2 * sheet_module.MARGIN : 64 + 2 * sheet_module.MARGIN]
    pred0 = np.asarray(PILImage.open(root / "pred" / "img0.png"))
    np.testing.assert_array_equal(restored, pred0[4:36, 8:40])
    assert sorted(p.name for p in target.parent.iterdir()) == ["sheet.png"]  # no temp files


def test_cli_sheet_without_perceptual_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """perceptual.py may not exist yet (or pyiqa may be missing): the sheet still works."""
    monkeypatch.setitem(sys.modules, "irctl.metrics.perceptual", None)  # import -> ImportError
    assert eval_cmd._lower_is_better() == {"mae", "rmse", "rmse-lab"}
    root = _ranked_folders(tmp_path, n=3)
    target = tmp_path / "s.png"
    result = CliRunner().invoke(
        _cli(),
        ["--pred", str(root / "pred"), "--gt", str(root / "gt"), "--metrics", "ssim",
         "--sheet", str(target)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # 3 images, k = 3: each shown once (2 best, 1 worst), no --input: "no input" tiles.
    assert np.asarray(PILImage.open(target)).shape[:2] == sheet_module.sheet_size(3, 192)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sheet", "sheet.jpg"], "must end in .png"),
        (
            ["--sheet", "s.png", "--sheet-k", "0"],
            "'--sheet-k': Input should be greater than or equal to 1",
        ),
        (
            ["--sheet", "s.png", "--sheet-crop", "4"],
            "'--sheet-crop': Input should be greater than or equal to 16",
        ),
        (["--sheet", "s.png", "--input", "nowhere"], "'nowhere' does not exist"),
        (["--workers", "0"], "'--workers': Input should be greater than or equal to 1"),
    ],
)
def test_cli_sheet_usage_errors_exit_2(
    folders: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        _cli(), ["--pred", str(folders["pred"]), "--gt", str(folders["gt"]), *args]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert (
        not (tmp_path / "s.png").exists() and not (folders["pred"].parent / "pred_metrics").exists()
    )


def test_cli_partial_failure_still_writes_sheet(folders: dict, tmp_path: Path) -> None:
    target = tmp_path / "sheet.png"
    result = CliRunner().invoke(
        _cli(),
        ["--pred", str(folders["pred"]), "--gt", str(folders["gt"]), "--metrics", "psnr",
         "--sheet", str(target), "--sheet-crop", "16"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # e.png, f.png failed; g.png has no prediction
    assert np.asarray(PILImage.open(target)).shape[:2] == sheet_module.sheet_size(4, 16)


def test_cli_perceptual_weights_missing_are_named_and_the_rest_is_scored(tmp_path: Path) -> None:
    """Works with or without the perceptual extra: without it, each perceptual metric is one
    line saying pyiqa is not installed; with it, missing files are named before pyiqa loads."""
    for i, name in enumerate(["a", "b"]):
        gt = _image(np.uint8, 3, seed=i)
        _save(tmp_path / "gt" / f"{name}.png", gt)
        _save(tmp_path / "pred" / f"{name}.png", _noisy(gt, seed=10 + i))
    weights = tmp_path / "no-weights"
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _cli(),
        [
            "--pred",
            str(tmp_path / "pred"),
            "--gt",
            str(tmp_path / "gt"),
            "--metrics",
            "psnr,lpips,fid",
            "--weights-dir",
            str(weights),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    lpips_line = next(line for line in errors if line.startswith("error: lpips:"))
    if perceptual.pyiqa_installed():
        assert "LPIPS_v0.1_alex" in lpips_line and str(weights.absolute()) in lpips_line
    else:  # the core environment says what is missing first: pyiqa itself
        assert lpips_line == f"error: lpips: {perceptual.NOT_INSTALLED}"
    assert next(line for line in errors if line.startswith("error: fid:"))
    payload = json.loads(result.stdout)
    assert set(payload["summary"]) == {"psnr"} and payload["summary"]["psnr"]["count"] == 2
    assert payload["failed_metrics"] == ["lpips", "fid"]
    with (out / "per_image.csv").open(newline="") as fh:
        assert next(csv.reader(fh)) == ["name", "psnr"]


def test_stereo_views_are_scored_per_view(tmp_path: Path) -> None:
    """A stereo pair is two files (``_L`` / ``_R``): each view gets its own row."""
    for i, view in enumerate(["scene_L", "scene_R"]):
        gt = _image(np.uint8, 3, seed=20 + i)
        _save(tmp_path / "gt" / f"{view}.png", gt)
        _save(tmp_path / "pred" / f"{view}.png", _noisy(gt, seed=30 + i))
    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt", ["psnr"])
    assert [r["name"] for r in result.rows] == ["scene_L", "scene_R"]
    assert result.rows[0]["psnr"] != result.rows[1]["psnr"] and result.ok
