"""Folder evaluation, CSV reports and the `eval` command, on small synthetic image files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import typer
from PIL import Image as PILImage
from typer.testing import CliRunner

from irctl.cli import eval_cmd
from irctl.engine.evaluate import evaluate_folders, evaluate_pairs, validate_metrics
from irctl.metrics.fidelity import mae, psnr, ssim
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


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")
    else:
        PILImage.fromarray(array).save(path)
    return path


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
    with pytest.raises(ValueError, match=r"unknown metric 'lpips'.*mae, psnr, rmse, ssim"):
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
    app.command()(eval_cmd.evaluate)
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
        (["--metrics", "psnr,lpips"], "unknown metric 'lpips'"),
        (["--crop-border", "-1"], "crop_border"),
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
    assert result.stderr.strip() == f"error: prediction folder not found: {tmp_path / 'missing'}"
