"""The plug-in shape, proved by a toy method and a toy task (tests/toy_plugins.py) that live
outside irctl/ and are registered with one line each. Files touched to add them: tests/
toy_plugins.py and this file; nothing in irctl/.

- the toy method: its own preset table, its own one-step sampler family, two training stages
  where the second starts from every module the first saved (``net`` fine-tuned again, a frozen
  ``teacher`` copy renamed from it), and a global code computed once per image;
- the toy task: a second file per image (a guide found by name) and two outputs per job,
  written as one commit and resumed at the first incomplete job.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_plugins import GUIDED, ToyNet, ToyRestorer, toy_preset_dict, write_case
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.checkpoint import load_checkpoint
from irctl.engine.train import train
from irctl.io.images import read_image
from irctl.methods import METHODS
from irctl.presets import preset_from_dict, preset_to_dict
from irctl.tasks import TASKS


@pytest.fixture()
def toys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "toy", ToyRestorer)  # the method's one registry line
    monkeypatch.setitem(TASKS, "toy-guided", GUIDED)  # the task's one registry line
    monkeypatch.setattr(ToyRestorer, "condition_calls", 0)
    monkeypatch.setattr(ToyNet, "codes_seen", [])


def test_the_toy_method_parses_its_own_table(toys) -> None:
    preset = preset_from_dict(toy_preset_dict())
    assert preset.model.toy.width == 4 and preset.toy.code_size == 16
    assert preset_to_dict(preset)["toy"] == {"width": 4, "code_size": 16}
    bad = toy_preset_dict()
    bad["toy"]["depth"] = 3
    with pytest.raises(ValueError, match="depth"):
        preset_from_dict(bad)


def test_the_second_stage_starts_from_every_module_of_the_first(toys, tmp_path: Path) -> None:
    """Stage 2 fine-tunes ``net``, which stage 1 trained too: it must start from stage 1's
    weights, not from its initialisation (before: only modules trained earlier and frozen now
    were carried over, so ``net`` restarted from scratch). ``teacher`` starts as stage 1's
    ``net`` under another name."""
    preset = preset_from_dict(toy_preset_dict(stages={"restorer": {"iterations": 0}}))
    result = train(preset, tmp_path)
    first = load_checkpoint(tmp_path / "prior" / "weights.safetensors")
    second = load_checkpoint(result.weights)
    assert (first.stage, first.step, second.stage, second.step) == ("prior", 3, "restorer", 0)
    torch.manual_seed(preset.train.seed)
    fresh = ToyRestorer(preset)  # what a module starts from when nothing is carried over
    for key, value in first.module_state("net").items():
        assert not torch.equal(value, fresh.net.state_dict()[key])  # stage 1 moved it
        assert torch.equal(second.module_state("net")[key], value)
        assert torch.equal(second.module_state("teacher")[key], value)
    for key, value in first.module_state("prior").items():
        assert torch.equal(second.module_state("prior")[key], value)


@pytest.fixture()
def toy_weights(toys, tmp_path: Path) -> Path:
    return train(preset_from_dict(toy_preset_dict()), tmp_path / "run").weights


def _cases(folder: Path) -> None:
    from irctl.data.datasets import load_photo

    photo = load_photo("chelsea")
    write_case(folder, "a", photo[40:88, 60:124])
    write_case(folder, "b", photo[120:168, 200:264])
    crop = (np.rint(photo[:48, :64] * 255)).astype(np.uint8)
    from PIL import Image as PILImage

    PILImage.fromarray(crop).save(folder / "lonely.png")  # no guide: an error of its own


def _restore(weights: Path, src: Path, dst: Path, *extra: str):
    args = ["restore", "--weights", str(weights), "--src", str(src), "--dst", str(dst), "--json"]
    return CliRunner().invoke(app, [*args, "--threads", "1", *extra])


def test_the_toy_task_restores_through_the_cli_with_tiles(toy_weights, tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    _cases(src)
    tiles = ("--tile", "16", "--tile-overlap", "4", "--tile-batch", "3")
    result = _restore(toy_weights, src, dst, *tiles)
    assert result.exit_code == 1, result.output  # the lonely image failed, the rest went on
    report = json.loads(result.stdout)
    assert [Path(f["file"]).name for f in report["failed"]] == ["lonely.png"]
    assert "no guide" in report["failed"][0]["reason"]
    names = sorted(p.name for p in dst.iterdir())
    assert names == ["a.png", "a_residual.png", "b.png", "b_residual.png"]
    assert {row["dst_residual"] for row in report["restored"]} == {
        str(dst / "a_residual.png"),
        str(dst / "b_residual.png"),
    }
    # The global code: computed once per image on the whole image, never per tile, and the
    # same row reached every tile of that image (tiles of one call are stacked per image).
    assert ToyRestorer.condition_calls == 2
    calls = ToyNet.codes_seen
    assert len(calls) > 2 and sum(c.shape[0] for c in calls) > 4  # really tiled, 3 per call
    per_image = [torch.unique(torch.cat(calls[: len(calls) // 2]), dim=0)]
    per_image.append(torch.unique(torch.cat(calls[len(calls) // 2 :]), dim=0))
    assert [len(codes) for codes in per_image] == [1, 1]
    assert not torch.equal(per_image[0], per_image[1])  # each image its own code
    # A tile covering the image reproduces the untiled output exactly.
    whole = _restore(toy_weights, src, tmp_path / "whole", "--tile", "0")
    covering = _restore(toy_weights, src, tmp_path / "cover", "--tile", "64")
    assert whole.exit_code == covering.exit_code == 1
    for name in ("a.png", "a_residual.png"):
        assert np.array_equal(
            read_image(tmp_path / "whole" / name).pixels,
            read_image(tmp_path / "cover" / name).pixels,
        )


def test_a_job_with_an_output_missing_is_redone_and_complete_ones_are_skipped(
    toy_weights, tmp_path: Path
) -> None:
    """The first output is the commit marker: a job whose image is missing (a run killed
    after its residual was renamed) is redone; a complete job is skipped."""
    src, dst = tmp_path / "in", tmp_path / "out"
    _cases(src)
    assert _restore(toy_weights, src, dst).exit_code == 1
    (dst / "a.png").unlink()
    stale = read_image(dst / "a_residual.png").pixels
    result = _restore(toy_weights, src, dst)
    report = json.loads(result.stdout)
    assert [Path(r["src"]).name for r in report["restored"]] == ["a.png"]
    assert [Path(r["src"]).name for r in report["skipped"]] == ["b.png"]
    assert (dst / "a.png").is_file()
    assert np.array_equal(read_image(dst / "a_residual.png").pixels, stale)  # same seed
