"""What the commands tell their user: log rates that are true, tables that are not cut in a
log file, and the right reason when a perceptual metric cannot run."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES
from PIL import Image as PILImage
from rich.table import Table
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.cli.common import stderr_console
from irctl.presets import apply_overrides, load_preset


def test_sec_per_step_divides_by_the_steps_since_the_previous_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """log_every 2 over 3 steps logs at steps 2 and 3: the last line covers one step, not two.
    A clock that advances one second per reading makes each logged interval last 1 s."""
    import irctl.engine.train as train_module

    readings = iter(range(1000))
    monkeypatch.setattr(
        train_module, "time", types.SimpleNamespace(perf_counter=lambda: float(next(readings)))
    )
    preset = apply_overrides(load_preset("denoise-tiny"), [*TINY_OVERRIDES, "train.log_every=2"])
    train_module.train(preset, tmp_path / "run")
    records = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == [2, 3]
    assert [r["sec_per_step"] for r in records] == [0.5, 1.0]


def test_a_wide_table_is_not_cut_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmark's nine columns were cut at Rich's assumed 80 columns in logs and CI."""
    monkeypatch.delenv("COLUMNS", raising=False)
    console = stderr_console()
    assert not console.is_terminal
    table = Table(title="irctl benchmark")
    columns = ["size", "tile", "per call", "steps", "s / image", "MP/s", "peak MiB", "max |Δ|"]
    for column in [*columns, "PSNR Δ"]:
        table.add_column(column, justify="right")
    row = ["6000×4000", "256", "4", "100", "1234.56", "0.0194", "123456", "1.23e-03", "45.6 dB"]
    table.add_row(*row)
    console.print(table)
    lines = capsys.readouterr().err.splitlines()
    assert any(all(cell in line for cell in row) for line in lines), lines  # one whole row
    assert any(all(c in line for c in columns) for line in lines), lines  # one whole header


@pytest.mark.skipif(
    importlib.util.find_spec("pyiqa") is not None, reason="the core environment's message"
)
def test_perceptual_metric_without_pyiqa_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = (np.arange(16 * 16 * 3) % 251).astype(np.uint8).reshape(16, 16, 3)
    PILImage.fromarray(pixels).save(folder / "a.png")
    result = CliRunner().invoke(
        app, ["eval", "--pred", str(folder), "--gt", str(folder), "--metrics", "psnr,lpips"]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: lpips: pyiqa is not installed (the `perceptual` extra: tools/perceptual-env.sh)"
    ]
