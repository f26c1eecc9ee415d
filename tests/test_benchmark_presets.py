"""`irctl benchmark` runs for every bundled model (each task builds its own input and neutral
conditioning: a bokeh model gets a lens pair, a stereo one an L‖R pair)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.methods import build_restorer
from irctl.presets import available_presets, load_preset, weights_path

BUNDLED = [
    name
    for name in available_presets()
    if (w := weights_path(load_preset(name))) is not None and w.is_file()
]


@pytest.mark.slow
@pytest.mark.parametrize("preset", BUNDLED)
def test_benchmark_runs_for_every_bundled_model(preset: str) -> None:
    sampling = build_restorer(load_preset(preset)).sampling
    steps = sampling.min_steps if sampling is not None else 1  # DiffIR runs its whole chain
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
            str(steps),
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


def test_random_weights_time_a_preset_without_weights() -> None:
    """The official-size presets ship no weights: --random-weights builds their networks with
    a seeded initialisation (the same each time) so speed and memory can be measured."""
    import torch

    from irctl.engine.models import load_restorer

    cpu = torch.device("cpu")
    a = load_restorer(
        weights=None, preset="dehaze-latent-official", task=None, device=cpu, random_weights=True
    )
    b = load_restorer(
        weights=None, preset="dehaze-latent-official", task=None, device=cpu, random_weights=True
    )
    for name, module in a.modules().items():
        for (key, x), y in zip(
            module.state_dict().items(), b.modules()[name].state_dict().values(), strict=True
        ):
            assert torch.equal(x, y), key
    without = CliRunner().invoke(app, ["benchmark", "--random-weights", "--sizes", "32"])
    assert without.exit_code == 2 and "need a --preset" in without.output
