"""End-to-end `irctl restore`: formats, determinism, bad input, atomic outputs, kill and resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.io.images import read_image, write_image

runner = CliRunner()


def _restore(*args: str, input: str | None = None):
    return runner.invoke(app, ["restore", *args], input=input)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_restores_folder_and_writes_nothing_else(tiny_weights: Path, src_folder: Path, tmp_path):
    dst = tmp_path / "dst"
    result = _restore(
        "--weights", str(tiny_weights), "--src", str(src_folder), "--dst", str(dst), "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(summary["restored"]) == 3 and summary["failed"] == []
    assert sorted(p.name for p in dst.rglob("*")) == ["img0.png", "img1.png", "img2.png"]
    for name in ("img0.png", "img1.png", "img2.png"):
        out, inp = read_image(dst / name), read_image(src_folder / name)
        assert out.pixels.shape == inp.pixels.shape and out.dtype == np.uint8


def test_same_seed_same_bytes_and_seed_matters(tiny_weights: Path, src_folder: Path, tmp_path):
    digests = []
    for run, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        dst = tmp_path / run
        result = _restore(
            "--weights",
            str(tiny_weights),
            "--src",
            str(src_folder),
            "--dst",
            str(dst),
            "--seed",
            seed,
        )
        assert result.exit_code == 0, result.output
        digests.append([_digest(dst / f"img{i}.png") for i in range(3)])
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_bit_depth_alpha_grey_and_tiff_carried_through(tiny_weights: Path, tmp_path, photo_crops):
    src = tmp_path / "src"
    rgb = photo_crops[1]
    alpha16 = np.random.default_rng(0).integers(0, 65536, rgb.shape[:2], dtype=np.uint16)
    write_image(src / "deep.png", rgb, dtype=np.uint16, alpha=alpha16)
    write_image(src / "grey.png", rgb.mean(axis=2, keepdims=True), dtype=np.uint8)
    write_image(src / "float.tif", rgb * 1.5 - 0.1, dtype=np.float32)
    dst = tmp_path / "dst"
    result = _restore("--weights", str(tiny_weights), "--src", str(src), "--dst", str(dst))
    assert result.exit_code == 0, result.output
    deep = read_image(dst / "deep.png")
    assert deep.dtype == np.uint16 and deep.channels == 3
    np.testing.assert_array_equal(deep.alpha, alpha16)  # alpha untouched, bit for bit
    grey = read_image(dst / "grey.png")
    assert grey.channels == 1 and grey.dtype == np.uint8
    flt = read_image(dst / "float.tif")
    assert flt.dtype == np.float32 and flt.pixels.max() > 1.0  # float range kept, not clipped to 1


def test_bad_inputs_are_reported_and_the_batch_goes_on(
    tiny_weights: Path, src_folder: Path, tmp_path
):
    good = src_folder / "img0.png"
    data = good.read_bytes()
    (src_folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (src_folder / "notes.jpg").write_text("this is not a JPEG\n")
    (src_folder / "empty.png").write_bytes(b"")
    os.symlink(tmp_path / "does-not-exist.png", src_folder / "unreadable.png")
    dst = tmp_path / "dst"
    result = _restore("--weights", str(tiny_weights), "--src", str(src_folder), "--dst", str(dst))
    assert result.exit_code == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    bad = ["truncated.png", "notes.jpg", "empty.png", "unreadable.png"]
    for name in bad:
        matching = [line for line in error_lines if name in line]
        assert len(matching) == 1, (name, error_lines)
    assert len(error_lines) == len(bad)
    assert sorted(p.name for p in dst.iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_stdin_file_list_and_skip_existing(tiny_weights: Path, src_folder: Path, tmp_path):
    dst = tmp_path / "dst"
    listing = f"{src_folder / 'img0.png'}\n# a comment\n{src_folder / 'img2.png'}\n"
    first = _restore(
        "--weights", str(tiny_weights), "--src", "-", "--dst", str(dst), "--json", input=listing
    )
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in dst.iterdir()) == ["img0.png", "img2.png"]
    before = (dst / "img0.png").stat().st_mtime_ns
    again = _restore(
        "--weights", str(tiny_weights), "--src", "-", "--dst", str(dst), "--json", input=listing
    )
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["restored"] == [] and len(summary["skipped"]) == 2
    assert (dst / "img0.png").stat().st_mtime_ns == before


def test_pickle_weights_are_refused(tmp_path, src_folder: Path):
    import torch

    bad = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, bad)
    result = _restore("--weights", str(bad), "--src", str(src_folder), "--dst", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "pickle" in result.stderr and "safetensors" in result.stderr


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume(tiny_weights: Path, tmp_path, photo_crops):
    src = tmp_path / "src"
    n = 8
    for i in range(n):
        write_image(src / f"p{i}.png", np.tile(photo_crops[i % 3], (3, 3, 1)), dtype=np.uint8)
    dst = tmp_path / "dst"
    cmd = [
        sys.executable,
        "-m",
        "irctl",
        "restore",
        "--weights",
        str(tiny_weights),
        "--src",
        str(src),
        "--dst",
        str(dst),
        "--steps",
        "20",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = [p for p in dst.glob("*.png")] if dst.exists() else []
        if len(done) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in dst.glob("*.png")}
    assert 0 < len(finished) < n, "the kill should land mid-batch"
    for p in dst.iterdir():  # everything visible is a complete, readable image
        if not p.name.startswith("."):
            read_image(p)
    rerun = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert len(summary["skipped"]) == len(finished)
    assert len(summary["restored"]) == n - len(finished)
    assert sorted(p.name for p in dst.iterdir()) == sorted(f"p{i}.png" for i in range(n))
    for name, mtime in finished.items():
        assert (dst / name).stat().st_mtime_ns == mtime  # finished files were not redone


@pytest.mark.parametrize(
    "args, message", [(["--steps", "500"], "between 1 and T"), (["--sampler", "magic"], "sampler")]
)
def test_bad_sampler_options_are_usage_errors(tiny_weights, src_folder, tmp_path, args, message):
    dst = tmp_path / "dst"
    result = _restore(
        "--weights", str(tiny_weights), "--src", str(src_folder), "--dst", str(dst), *args
    )
    assert result.exit_code == 2 and message in result.stderr
    assert not dst.exists() or not any(dst.iterdir())


def test_threads_option_sets_torch_threads(tiny_weights: Path, src_folder: Path, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        args = ["--weights", str(tiny_weights), "--src", str(src_folder), "--dst"]
        result = _restore(*args, str(tmp_path / "one"), "--threads", "1")
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        assert _restore(*args, str(tmp_path / "zero"), "--threads", "0").exit_code == 2
    finally:
        torch.set_num_threads(before)


def test_method_picks_the_tasks_bundled_model_of_that_method(tmp_path, photo_crops) -> None:
    from irctl.presets import preset_for_task

    assert preset_for_task("dehaze") == "dehaze-latent-tiny"
    assert preset_for_task("dehaze", "regression") == "dehaze-regression-tiny"
    assert preset_for_task("dehaze", "refusion") == "dehaze-pixel-tiny"
    src = tmp_path / "src"
    write_image(src / "a.png", photo_crops[0][:32, :32], dtype=np.uint8)
    result = _restore(
        "--task",
        "denoise",
        "--method",
        "regression",
        "--src",
        str(src),
        "--dst",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output
    assert "denoise-regression-tiny (regression)" in result.output
    wrong = _restore(
        "--task",
        "denoise",
        "--method",
        "latent_refusion",
        "--src",
        str(src),
        "--dst",
        str(tmp_path / "x"),
    )
    assert wrong.exit_code == 2
    assert "methods: refusion, regression" in wrong.output
