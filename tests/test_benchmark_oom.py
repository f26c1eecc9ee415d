"""`irctl benchmark` when a measurement does not fit: a row that says so, the rest measured."""

from __future__ import annotations

import json
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import irctl.engine.benchmark as benchmark
from irctl.cli.app import app
from irctl.engine.benchmark import ModelSpec, markdown_table, rows_as_dicts, run_benchmark
from irctl.presets import load_preset


def _fake_measure(failures: dict[int, BaseException]):
    """A stand-in for the measuring process: tile → the error it raises; other tiles measure
    an output that depends on the tile (so the untiled comparison is visible)."""

    def measure(spec, size, options, seed):
        tile = options.tiles.tile
        if tile in failures:
            raise failures[tile]
        out = np.full((size[1], size[0], 3), 0.5 + tile / 4096, dtype=np.float32)
        return out, 2.0, 300 * 2**20, {}

    return measure


def test_rows_that_do_not_fit_say_so_and_the_others_are_measured(monkeypatch) -> None:
    failures = {
        256: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        128: BrokenProcessPool("A process in the process pool was terminated abruptly"),
    }
    monkeypatch.setattr(benchmark, "_measure_in_fresh_process", _fake_measure(failures))
    spec = ModelSpec(weights=None, preset="denoise-tiny", task=None)
    rows = run_benchmark(
        spec, load_preset("denoise-tiny"), sizes=[(512, 384)], tiles=[0, 256, 128, 64], steps=2
    )
    by_tile = {r.tile: r for r in rows}
    assert by_tile[256].error == "out of memory"
    assert by_tile[128].error.startswith("measuring process killed")
    assert by_tile[0].error is None and by_tile[0].max_abs_diff_vs_untiled == 0.0
    assert by_tile[64].seconds == 2.0 and by_tile[64].peak_memory_mib == 300
    assert by_tile[64].max_abs_diff_vs_untiled == pytest.approx(64 / 4096)
    text = json.dumps(rows_as_dicts(rows), allow_nan=False)  # strict JSON: no NaN
    assert json.loads(text)[1]["seconds"] is None
    table = markdown_table(rows)
    assert "| 512×384 | 256 |" in table and "out of memory" in table


def test_without_the_untiled_reference_tiled_rows_have_no_difference(monkeypatch) -> None:
    failures = {0: MemoryError()}
    monkeypatch.setattr(benchmark, "_measure_in_fresh_process", _fake_measure(failures))
    spec = ModelSpec(weights=None, preset="denoise-tiny", task=None)
    rows = run_benchmark(spec, load_preset("denoise-tiny"), sizes=[(96, 96)], tiles=[0, 64])
    assert [r.error for r in rows] == ["out of memory", None]
    assert rows[1].max_abs_diff_vs_untiled is None and rows[1].seconds == 2.0


def test_any_other_error_is_a_bug_and_propagates(monkeypatch) -> None:
    failures = {64: ValueError("shape mismatch")}
    monkeypatch.setattr(benchmark, "_measure_in_fresh_process", _fake_measure(failures))
    spec = ModelSpec(weights=None, preset="denoise-tiny", task=None)
    with pytest.raises(ValueError, match="shape mismatch"):
        run_benchmark(spec, load_preset("denoise-tiny"), sizes=[(96, 96)], tiles=[64])


def test_the_cli_reports_the_rows_and_exits_1(monkeypatch, tmp_path) -> None:
    failures = {0: RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ...")}
    monkeypatch.setattr(benchmark, "_measure_in_fresh_process", _fake_measure(failures))
    out = tmp_path / "bench.json"
    args = ["--preset", "denoise-tiny", "--sizes", "96", "--tiles", "0,64", "--steps", "2"]
    result = CliRunner().invoke(app, ["benchmark", *args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "96² tile off: out of memory" in result.output
    assert "1 of 2 measurements could not run" in result.output
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["error"] == "out of memory" and rows[1]["seconds"] == 2.0
