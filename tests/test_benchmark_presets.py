"""`irctl benchmark` runs for every bundled model (each task builds its own input and neutral
conditioning: a bokeh model gets a lens pair, a stereo one an L‖R pair)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.presets import available_presets, load_preset, weights_path

BUNDLED = [
    name
    for name in available_presets()
    if (w := weights_path(load_preset(name))) is not None and w.is_file()
]


@pytest.mark.slow
@pytest.mark.parametrize("preset", BUNDLED)
def test_benchmark_runs_for_every_bundled_model(preset: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "benchmark",
            "--preset",
            preset,
            "--sizes",
            "48x40",
            "--tiles",
            "0",
            "--steps",
            "1",
            "--threads",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (row,) = report["rows"]
    assert report["preset"] == preset
    assert (row["size"], row["height"], row["tile"]) == (48, 40, 0)
    assert row["seconds"] > 0 and row["peak_memory_mib"] > 0
    assert row["max_abs_diff_vs_untiled"] == 0.0  # the untiled run is its own reference


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tiles", "-4"], "must be >= 0"),
        (["--flops", "no-such-preset"], "no preset named"),
        (["--sampler", "euler"], "unknown sampler"),
    ],
)
def test_nonsense_benchmark_options_fail_up_front(args: list[str], message: str) -> None:
    """Exit 2 before any measuring process starts (not minutes later, after the table)."""
    result = CliRunner().invoke(
        app, ["benchmark", "--preset", "denoise-tiny", "--sizes", "32", *args]
    )
    assert result.exit_code == 2 and message in result.output
