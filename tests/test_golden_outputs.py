"""Every bundled model still gives exactly the bytes it gave when tests/data/golden was recorded
(tools/record_golden.py): through `irctl restore`, untiled with the default sampler and tiled
with several tiles per network call. A refactor that changes what a user gets fails here.

Bit-exact on the kind of CPU the outputs were recorded on (same torch, same CPU capability);
float kernels may round differently on another instruction set, so there the outputs must stay
within one 8-bit level instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from irctl.cli.app import app

GOLDEN = Path(__file__).parent / "data" / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
CASES = [(preset, run) for preset in MANIFEST["presets"] for run in MANIFEST["runs"]]


def _same_machine_kind() -> bool:
    return (
        MANIFEST["torch"] == torch.__version__
        and MANIFEST["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    )


@pytest.mark.parametrize(("preset", "run"), CASES, ids=[f"{p}-{r}" for p, r in CASES])
def test_bundled_model_output_unchanged(preset: str, run: str, tmp_path: Path) -> None:
    task = MANIFEST["presets"][preset]
    args = [
        "restore",
        "--preset",
        preset,
        "--src",
        str(GOLDEN / "inputs" / task),
        "--dst",
        str(tmp_path),
        "--threads",
        "1",
        "--seed",
        "0",
        *MANIFEST.get("preset_runs", {}).get(preset, MANIFEST["runs"])[run],
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected_files = sorted(p.name for p in (GOLDEN / preset / run).iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == expected_files
    for name in expected_files:
        got = np.asarray(PILImage.open(tmp_path / name)).astype(np.int16)
        want = np.asarray(PILImage.open(GOLDEN / preset / run / name)).astype(np.int16)
        assert got.shape == want.shape
        diff = np.abs(got - want)
        if _same_machine_kind():
            assert diff.max() == 0, (
                f"{preset} {run} {name}: {int((diff > 0).sum())} values differ, "
                f"by up to {int(diff.max())} levels"
            )
        else:
            assert diff.max() <= 1, f"{preset} {run} {name}: up to {int(diff.max())} levels off"


def test_golden_runs_differ_where_they_should() -> None:
    """The tiled run of a diffusion model really is another run (tiles, sampler, steps), so
    the golden set covers the tiler and more than one sampler, not one path twice."""
    for preset in MANIFEST["presets"]:
        if "regression" in preset:
            continue
        untiled = GOLDEN / preset / "untiled"
        tiled = GOLDEN / preset / "tiled"
        for path in untiled.iterdir():
            a = np.asarray(PILImage.open(path))
            b = np.asarray(PILImage.open(tiled / path.name))
            assert not np.array_equal(a, b), f"{preset}: tiled and untiled outputs are identical"
