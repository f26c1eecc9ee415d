"""`irctl restore` on stereo models: pairs in, pairs out, written as pairs, resumable, and the
views' roles follow their names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES, save_array
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.io.images import read_image
from irctl.presets import apply_overrides, load_preset

runner = CliRunner()

#: The suite's tiny settings (conftest), trained on the real pair only.
STEREO_OVERRIDES = [*TINY_OVERRIDES, 'data.train=["motorcycle"]']


@pytest.fixture(scope="module")
def regression_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NAFSSR (tied views) trained 3 steps: every layer has left its initial value."""
    from irctl.engine.train import train

    preset = apply_overrides(
        load_preset("stereo-sr-regression-tiny"),
        # the regression method has no [diffusion] table: overriding it would be an error
        [*(o for o in STEREO_OVERRIDES if not o.startswith("diffusion.")), "network.blocks=2"],
    )
    return train(preset, tmp_path_factory.mktemp("nafssr")).weights


@pytest.fixture(scope="module")
def refusion_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from irctl.engine.train import train

    preset = apply_overrides(
        load_preset("stereo-sr-tiny"),
        STEREO_OVERRIDES,
    )
    return train(preset, tmp_path_factory.mktemp("stereo-refusion")).weights


@pytest.fixture(scope="module")
def views() -> tuple[np.ndarray, np.ndarray]:
    """A small crop of the real motorcycle pair (8-bit), 20×28: the model upscales it ×4."""
    from irctl.data.datasets import load_photo

    left = load_photo("motorcycle_left")[200:220, 300:328]
    right = load_photo("motorcycle_right")[200:220, 300:328]
    return tuple((np.rint(v * 255)).astype(np.uint8) for v in (left, right))


def _restore(weights: Path, src: Path, dst: Path, *extra: str):
    args = ["restore", "--weights", str(weights), "--src", str(src), "--dst", str(dst)]
    return runner.invoke(app, [*args, "--json", *extra])


def test_pairs_in_pairs_out_at_four_times_the_size(regression_weights, views, tmp_path):
    left, right = views
    src = tmp_path / "in"
    save_array(src / "scene_L.png", left)
    save_array(src / "scene_R.png", right)
    save_array(src / "L" / "street.png", right)  # folder convention
    save_array(src / "R" / "street.png", left)
    result = _restore(regression_weights, src, tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
    )
    assert written == ["scene_L.png", "scene_R.png", "street_L.png", "street_R.png"]
    for name in written:
        image = read_image(tmp_path / "out" / name)
        assert image.pixels.shape == (80, 112, 3) and image.dtype == np.uint8
    summary = json.loads(result.stdout)
    assert {Path(r["dst_right"]).name for r in summary["restored"]} == {
        "scene_R.png",
        "street_R.png",
    }


def _swap_check(weights: Path, views, tmp_path: Path, *extra: str) -> None:
    """Restore (L, R) and (R, L) named x_L/x_R; the outputs must trade places (up to one 8-bit
    level of float round-off) and the two views' outputs must differ."""
    left, right = views
    save_array(tmp_path / "a" / "x_L.png", left)
    save_array(tmp_path / "a" / "x_R.png", right)
    save_array(tmp_path / "b" / "x_L.png", right)
    save_array(tmp_path / "b" / "x_R.png", left)
    for name in ("a", "b"):
        result = _restore(weights, tmp_path / name, tmp_path / f"{name}-out", *extra)
        assert result.exit_code == 0, result.output

    def pixels(folder: str, view: str) -> np.ndarray:
        return read_image(tmp_path / f"{folder}-out" / f"x_{view}.png").pixels * 255.0

    assert np.abs(pixels("a", "L") - pixels("b", "R")).max() <= 1.0
    assert np.abs(pixels("a", "R") - pixels("b", "L")).max() <= 1.0
    # ... and the two views' outputs do differ, so the comparison means something.
    assert np.abs(pixels("a", "L") - pixels("a", "R")).mean() > 5.0


def test_swapping_the_views_swaps_the_outputs(regression_weights, views, tmp_path):
    """The file named _L is restored as the left view: give the right image that name and the
    outputs trade places (the tied cross-view attention treats both views alike)."""
    _swap_check(regression_weights, views, tmp_path)


def test_unpaired_and_mismatched_inputs_fail_alone(regression_weights, views, tmp_path):
    left, right = views
    src = tmp_path / "in"
    save_array(src / "good_L.png", left)
    save_array(src / "good_R.png", right)
    save_array(src / "lonely_L.png", left)  # no partner
    save_array(src / "odd_L.png", left)
    save_array(src / "odd_R.png", right[:, :20])  # the views differ in size
    result = _restore(regression_weights, src, tmp_path / "out")
    assert result.exit_code == 1
    failed = {Path(f["file"]).name: f["reason"] for f in json.loads(result.stdout)["failed"]}
    assert set(failed) == {"lonely_L.png", "odd_L.png"}
    assert "differ in size" in failed["odd_L.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_L.png", "good_R.png"]


def test_resume_redoes_a_half_written_pair_and_skips_complete_ones(
    regression_weights, views, tmp_path
):
    """A run killed between the two renames leaves a right view without its left (the left is
    renamed last): the pair is not done, so a rerun writes it; a complete pair is skipped."""
    left, right = views
    src = tmp_path / "in"
    for stem in ("a", "b"):
        save_array(src / f"{stem}_L.png", left)
        save_array(src / f"{stem}_R.png", right)
    out = tmp_path / "out"
    assert _restore(regression_weights, src, out).exit_code == 0
    reference = (out / "a_R.png").read_bytes()
    (out / "a_L.png").unlink()
    (out / "a_R.png").write_bytes(b"stale right view from a killed run")
    partial = out / ".a_L.png.999999.deadbeef.partial.png"
    partial.write_bytes(b"temp of a killed writer")
    result = _restore(regression_weights, src, out)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [Path(r["src"]).name for r in summary["restored"]] == ["a_L.png"]
    assert [Path(r["src"]).name for r in summary["skipped"]] == ["b_L.png"]
    assert (out / "a_R.png").read_bytes() == reference
    assert not partial.exists()


def test_refusion_stereo_restores_a_pair_deterministically(refusion_weights, views, tmp_path):
    left, right = views
    src = tmp_path / "in"
    save_array(src / "p_left.png", left)
    save_array(src / "p_right.png", np.dstack([right, np.full(right.shape[:2], 200, np.uint8)]))
    for run in ("one", "two"):
        result = _restore(refusion_weights, src, tmp_path / run, "--seed", "3")
        assert result.exit_code == 0, result.output
    for view in ("L", "R"):
        a = (tmp_path / "one" / f"p_{view}.png").read_bytes()
        assert a == (tmp_path / "two" / f"p_{view}.png").read_bytes()
    image = read_image(tmp_path / "one" / "p_R.png")
    assert image.pixels.shape == (80, 112, 3)
    assert image.alpha is not None and image.alpha.shape == (80, 112)
    assert np.all(image.alpha == 200)  # a constant alpha stays constant when upscaled


def test_eval_scores_stereo_outputs_per_view_and_per_pair(tmp_path):
    """`irctl eval` on stereo outputs: one row per view file, plus one "(L+R mean)" row per pair
    holding the mean of its two views; the summary stays over views."""
    import csv

    from irctl.metrics.fidelity import psnr

    rng = np.random.default_rng(0)
    gt = {f"s_{v}": rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for v in ("L", "R")}
    gt["mono"] = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    noise = {"s_L": 3, "s_R": 12, "mono": 5}
    for name, image in gt.items():
        save_array(tmp_path / "gt" / f"{name}.png", image)
        noisy = np.clip(
            image.astype(int) + rng.integers(-noise[name], noise[name] + 1, image.shape), 0, 255
        )
        save_array(tmp_path / "pred" / f"{name}.png", noisy.astype(np.uint8))
    args = ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    result = runner.invoke(
        app, [*args, "--metrics", "psnr,ssim", "--out", str(tmp_path / "r"), "--json"]
    )
    assert result.exit_code == 0, result.output
    with open(tmp_path / "r" / "per_image.csv") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"mono", "s_L", "s_R", "s (L+R mean)"}
    expected = np.mean([float(rows["s_L"]["psnr"]), float(rows["s_R"]["psnr"])])
    assert float(rows["s (L+R mean)"]["psnr"]) == pytest.approx(expected, abs=1e-4)
    left_psnr = psnr(
        read_image(tmp_path / "pred" / "s_L.png").pixels * 255, gt["s_L"], max_value=255
    )
    assert float(rows["s_L"]["psnr"]) == pytest.approx(left_psnr, abs=1e-3)
    payload = json.loads(result.stdout)
    assert payload["n_images"] == 3 and [r["name"] for r in payload["stereo_pairs"]] == [
        "s (L+R mean)"
    ]


def test_refusion_noise_follows_the_views_so_a_swap_swaps_the_samples(
    refusion_weights, views, tmp_path
):
    """Each view's noise is seeded by the run's seed and that view's pixels, so the diffusion
    model's outputs swap with the inputs too (tied cross-view weights)."""
    _swap_check(refusion_weights, views, tmp_path, "--seed", "7")


def test_grouped_noise_draws_each_group_from_its_own_generator() -> None:
    import torch

    from irctl.methods.refusion import view_noise

    lq = torch.rand(1, 6, 4, 5, generator=torch.Generator().manual_seed(0))
    noise = view_noise(torch.Generator().manual_seed(9), lq, views=2)
    swapped = view_noise(torch.Generator().manual_seed(9), lq.roll(3, dims=1), views=2)
    x = torch.zeros(1, 6, 4, 5)
    first, second = noise(x), swapped(x)
    # Each view's noise follows the view: swap the views, and their noise swaps with them.
    assert torch.equal(first[:, :3], second[:, 3:])
    assert torch.equal(first[:, 3:], second[:, :3])
    assert not torch.equal(first[:, :3], first[:, 3:])
    # A second draw continues each view's own stream.
    assert not torch.equal(noise(x), first)
