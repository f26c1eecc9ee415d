"""Record the golden outputs that tests/test_golden_outputs.py holds every bundled model to.

Each bundled preset restores a small crop of its task's bundled example through the CLI
(`irctl restore`, one thread, seed 0), once untiled with its default sampler and once tiled
(32-pixel tiles, 3 tiles per network call) with the SDE sampler (a model without it, DiffIR,
with its own sampler and steps in both runs: the manifest's ``preset_runs``); the outputs are stored as
8-bit PNGs with a manifest of the runs. A refactor that changes what a user gets changes these
bytes.

    python tools/record_golden.py            # writes tests/data/golden/

Run it only when an output change is deliberate, and say in the commit why and by how much.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.methods import build_restorer
from irctl.presets import available_presets, load_preset, weights_path

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "data" / "golden"

#: task → (example folder, files to crop, crop box (top, left, height, width))
INPUTS: dict[str, tuple[str, tuple[str, ...], tuple[int, int, int, int]]] = {
    "denoise": ("examples/denoise/noisy", ("chelsea.png",), (40, 60, 64, 96)),
    "dehaze": ("examples/dehaze/hazy", ("chelsea.png",), (40, 60, 64, 96)),
    "bokeh": ("examples/bokeh/in", ("chelsea.png",), (40, 60, 64, 96)),
    "shadow": ("examples/shadow/shadowed", ("chelsea.png",), (40, 60, 64, 96)),
    "stereo-sr": ("examples/stereo-sr/lr", ("chelsea_L.png", "chelsea_R.png"), (20, 30, 32, 48)),
    # an LR input: 40×48 is three 32-pixel tiles down and two across
    "sr4": ("examples/sr4/lr", ("chelsea.png",), (10, 15, 40, 48)),
    "deblur": ("examples/deblur/blurred", ("chelsea.png",), (40, 60, 64, 96)),
    "desnow": ("examples/desnow/snowy", ("chelsea.png",), (40, 60, 64, 96)),
    "defocus": ("examples/defocus/defocused", ("chelsea.png",), (40, 60, 64, 96)),
    "derain-dehaze": ("examples/derain-dehaze/rainy", ("chelsea.png",), (40, 60, 64, 96)),
    "inpaint": ("examples/inpaint/holes", ("chelsea.png", "chelsea_mask.png"), (40, 60, 64, 96)),
}

#: run name → restore options (a regression model ignores sampler and steps)
RUNS: dict[str, list[str]] = {
    "untiled": ["--steps", "2", "--tile", "0"],
    "tiled": [
        "--sampler",
        "sde",
        "--steps",
        "3",
        "--tile",
        "32",
        "--tile-overlap",
        "8",
        "--tile-batch",
        "3",
    ],
}


def runs_for(name: str) -> dict[str, list[str]]:
    """:data:`RUNS`, or for a model whose sampling offers neither the SDE sampler nor 2 and 3
    steps (DiffIR: one sampler, its fixed chain) the same two runs with its own sampler and
    steps: untiled, and tiled alike."""
    sampling = build_restorer(load_preset(name)).sampling
    if sampling is None or (
        "sde" in sampling.samplers and sampling.min_steps <= 2 and sampling.max_steps >= 3
    ):
        return RUNS
    own = {}
    for run, args in RUNS.items():
        kept = []
        for flag, value in zip(args[::2], args[1::2], strict=True):
            if flag not in ("--sampler", "--steps"):
                kept += [flag, value]
        own[run] = kept
    return own


def bundled_presets() -> list[str]:
    return [
        name
        for name in available_presets()
        if (w := weights_path(load_preset(name))) is not None and w.is_file()
    ]


def write_inputs(root: Path) -> None:
    """The cropped inputs, one folder per task (bokeh's with its lens table row)."""
    for task, (folder, files, (top, left, h, w)) in INPUTS.items():
        target = root / task
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            pixels = np.asarray(PILImage.open(REPO / folder / name).convert("RGB"))
            PILImage.fromarray(pixels[top : top + h, left : left + w]).save(target / name)
        table = REPO / folder / "lenses.csv"
        if table.is_file():
            with table.open() as fh:
                rows = [r for r in csv.DictReader(fh) if r["file"] in files]
            with (target / "lenses.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=["file", "src_lens", "tgt_lens"])
                writer.writeheader()
                writer.writerows(rows)


def restore_args(preset: str, src: Path, dst: Path, args: list[str]) -> list[str]:
    return [
        "restore",
        "--preset",
        preset,
        "--src",
        str(src),
        "--dst",
        str(dst),
        "--threads",
        "1",
        "--seed",
        "0",
        *args,
    ]


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    if GOLDEN.exists():
        shutil.rmtree(GOLDEN)
    write_inputs(GOLDEN / "inputs")
    runner = CliRunner()
    manifest = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "runs": RUNS,
        "presets": {},
    }
    own_runs = {}
    for name in bundled_presets():
        task = load_preset(name).task
        manifest["presets"][name] = task
        runs = runs_for(name)
        if runs != RUNS:
            own_runs[name] = runs
        for run, args in runs.items():
            dst = GOLDEN / name / run
            result = runner.invoke(app, restore_args(name, GOLDEN / "inputs" / task, dst, args))
            if result.exit_code != 0:
                raise SystemExit(f"{name} {run}: exit {result.exit_code}\n{result.output}")
            print(f"{name} {run}: {sorted(p.name for p in dst.iterdir())}")
    #: presets recorded with runs of their own (:func:`runs_for`)
    manifest["preset_runs"] = own_runs
    (GOLDEN / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
