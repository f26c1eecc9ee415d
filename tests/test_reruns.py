"""Running a command again must not eat its own earlier results: a --dst inside --src is not
restored again, and `irctl train` into a folder holding a run needs --resume or --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import TINY_OVERRIDES
from PIL import Image as PILImage
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.io.folders import discover

runner = CliRunner()
SETS = [arg for o in TINY_OVERRIDES for arg in ("--set", o)]


def _photos(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pixels = ((np.arange(16 * 16 * 3) * (i + 3)) % 251).astype(np.uint8).reshape(16, 16, 3)
        PILImage.fromarray(pixels).save(folder / name)


def test_discover_skips_the_output_folder_inside_the_source(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _photos(photos, ["a.png", "b.png"])
    _photos(photos / "restored", ["a.png"])
    _photos(photos / "holiday", ["c.png"])
    found = discover(photos, exclude=photos / "restored")
    assert found == [photos / "a.png", photos / "b.png", photos / "holiday" / "c.png"]
    # the same folder by another spelling is still the same folder
    assert discover(photos, exclude=tmp_path / "photos" / "." / "restored") == found
    assert len(discover(photos)) == 4  # nothing excluded without it


def test_restore_into_a_folder_inside_src_twice_restores_nothing_new(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _photos(photos, ["a.png", "b.png"])
    args = ["restore", "--src", str(photos), "--dst", str(photos / "restored"), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert len(json.loads(first.stdout)["restored"]) == 2
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert summary["restored"] == [] and len(summary["skipped"]) == 2
    assert not (photos / "restored" / "restored").exists()


def test_train_refuses_a_folder_holding_a_run_without_resume_or_overwrite(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    log = out / "log.jsonl"
    log.write_text('{"step": 100, "loss": 0.1}\n')
    result = runner.invoke(app, ["train", "--preset", "denoise-tiny", "--out", str(out), *SETS])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and str(out) in line
    assert "--resume" in line and "--overwrite" in line
    assert log.read_text() == '{"step": 100, "loss": 0.1}\n'  # untouched
    both = runner.invoke(
        app, ["train", "--preset", "denoise-tiny", "--out", str(out), "--resume", "--overwrite"]
    )
    assert both.exit_code == 2 and len(both.stderr.splitlines()) == 1, both.output


def test_train_overwrite_starts_over_and_resume_says_where_it_continues(tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["train", "--preset", "denoise-tiny", "--out", str(out), *SETS]
    first = runner.invoke(app, [*base, "--stop-at", "2"])
    assert first.exit_code == 0, first.output
    # a line as the stage starts, before its first logged step: preset, steps, device
    assert "training denoise-tiny steps 1..2 of 3" in first.stderr
    weights = (out / "weights.safetensors").read_bytes()
    again = runner.invoke(app, base)
    assert again.exit_code == 2 and "--overwrite" in again.stderr, again.output
    assert (out / "weights.safetensors").read_bytes() == weights
    resumed = runner.invoke(app, [*base, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "steps 3..3 of 3, resumed from step 2" in resumed.stderr
    over = runner.invoke(app, [*base, "--overwrite", "--json"])
    assert over.exit_code == 0, over.output
    assert "training denoise-tiny steps 1..3 of 3" in over.stderr
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # a fresh log, not the old one continued
