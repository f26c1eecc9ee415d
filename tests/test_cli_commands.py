"""`irctl train`, `benchmark`, `compare`, `--version`, and the presets/examples shipped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES
from typer.testing import CliRunner

from irctl import __version__
from irctl.cli.app import app
from irctl.engine.checkpoint import load_checkpoint
from irctl.methods import build_restorer
from irctl.presets import available_presets, load_preset, weights_path

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_train_cli_writes_a_checkpoint_with_the_preset_embedded(tmp_path: Path) -> None:
    sets = [arg for o in TINY_OVERRIDES for arg in ("--set", o)]
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "--preset", "denoise-tiny", "--out", str(out), *sets, "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["step"] == 3
    ckpt = load_checkpoint(out / "weights.safetensors")
    assert ckpt.step == 3 and ckpt.preset.network.width == 8
    assert (out / "weights.state.safetensors").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 3


def test_train_cli_rejects_unknown_override(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--preset", "denoise-tiny", "--out", str(tmp_path), "--set", "train.nope=1"]
    )
    assert result.exit_code == 2 and "nope" in result.stderr


@pytest.mark.slow
def test_benchmark_reports_rows_and_measures_tiling(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(
        app,
        [
            "benchmark",
            "--weights",
            str(tiny_weights),
            "--sizes",
            "48",
            "--tiles",
            "32,64",
            "--steps",
            "3",
            "--tile-overlap",
            "8",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["size"], r["tile"]) for r in rows] == [(48, 32), (48, 64)]
    for r in rows:
        assert r["seconds"] > 0 and r["peak_memory_mib"] > 0
    # A tile covering the image is the untiled computation; a smaller one differs (NAFNet's
    # channel attention pools over its whole input, so its receptive field is global), by an
    # amount this 3-step-trained model leaves large but well short of the [0, 1] pixel range.
    assert rows[1]["max_abs_diff_vs_untiled"] == 0.0
    assert rows[1]["psnr_vs_untiled"] is None  # identical: inf, written as JSON null
    assert 0.0 < rows[0]["max_abs_diff_vs_untiled"] < 0.5
    # The PSNR is the typical difference, so it is bounded by the worst pixel's.
    assert rows[0]["psnr_vs_untiled"] >= -20 * math.log10(rows[0]["max_abs_diff_vs_untiled"])


def test_compare_scores_models_on_heldout_photos(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        [
            "compare",
            "--models",
            str(tiny_weights),
            "--classical",
            "",
            "--samplers",
            "posterior:2",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    test_photos = load_preset("denoise-tiny").data.test
    assert {r["photo"] for r in rows} == set(test_photos)
    inputs = [r for r in rows if r["method"] == "input"]
    # sigma-25 noise on 8-bit photos: PSNR = 20.2 dB give or take clipping.
    assert all(19.5 < r["psnr"] < 21.5 for r in inputs)
    assert (out / "table.md").read_text().startswith("| method |")
    assert (out / "input" / f"{test_photos[0]}.png").is_file()


@pytest.mark.parametrize("name", available_presets())
def test_presets_hold_out_their_test_photos(name: str) -> None:
    preset = load_preset(name)
    assert preset.data.test, "every preset names held-out photos"
    assert not set(preset.data.test) & set(preset.data.train)
    assert not set(preset.data.val) & set(preset.data.train)


@pytest.mark.parametrize(
    "task,folder",
    [
        ("denoise", "noisy"),
        ("dehaze", "hazy"),
        ("bokeh", "in"),
        ("shadow", "shadowed"),
        ("stereo-sr", "lr"),
        ("sr4", "lr"),
        ("deblur", "blurred"),
        ("desnow", "snowy"),
        ("defocus", "defocused"),
        ("derain-dehaze", "rainy"),
        ("inpaint", "holes"),
    ],
)
def test_bundled_examples_are_the_heldout_inputs(task: str, folder: str) -> None:
    from irctl.engine.heldout import heldout_photos
    from irctl.io.images import read_image, to_dtype
    from irctl.io.lens_meta import build_lens_conditioner
    from irctl.presets import default_preset_for_task

    src = REPO / "examples" / task / folder
    lenses = build_lens_conditioner(meta=None, src_root=src, src_lens=None, tgt_lens=None)
    for photo in heldout_photos(load_preset(default_preset_for_task(task))):
        names = (
            [f"{photo.name}.png"]
            if photo.views == 1
            else [
                f"{photo.name}_L.png",
                f"{photo.name}_R.png",
            ]
        )
        for v, name in enumerate(names):
            shipped = read_image(src / name)
            np.testing.assert_array_equal(
                to_dtype(shipped.pixels, np.uint8),
                to_dtype(photo.lq[..., 3 * v : 3 * v + 3], np.uint8),
            )
        if photo.lq.shape[2] == 4:  # inpainting: the holes, white, in <name>_mask.png
            mask = read_image(src / f"{photo.name}_mask.png").pixels.mean(axis=2) >= 0.5
            np.testing.assert_array_equal(mask, photo.lq[..., 3] >= 0.5)
        if photo.cond.scalars:  # bokeh: lenses.csv names the pair the photo was rendered with
            assert lenses(src / f"{photo.name}.png").scalars == pytest.approx(photo.cond.scalars)


@pytest.mark.parametrize("name", [p for p in available_presets() if load_preset(p).weights])
def test_bundled_weights_load_and_match_their_preset(name: str) -> None:
    preset = load_preset(name)
    path = weights_path(preset)
    assert path is not None and path.is_file(), f"bundled weights missing: {path}"
    ckpt = load_checkpoint(path)
    # The embedded preset is the shipped TOML: `--task`, `--preset` and `--weights` agree.
    assert ckpt.preset == preset
    assert ckpt.stage == build_restorer(preset).stages[-1]  # every stage trained
    assert ckpt.step == preset.train.for_stage(ckpt.stage).iterations
