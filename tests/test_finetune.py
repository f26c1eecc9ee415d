"""Fine-tuning (`irctl train --init`): a run that starts from an existing checkpoint's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from irctl.engine.train import train
from irctl.methods import build_restorer
from irctl.presets import preset_from_dict, preset_to_dict
from tests.test_diffir import tiny_diffir


def _finished_model(path: Path, seed: int, drop: tuple[str, ...] = ()) -> dict:
    """A DiffIR checkpoint with weights drawn from ``seed`` (as a finished run's would be),
    without the modules in ``drop``; returns its tensors by module."""
    preset = preset_from_dict(tiny_diffir())
    torch.manual_seed(seed)
    restorer = build_restorer(preset)
    modules = {k: m for k, m in restorer.modules().items() if k not in drop}
    save_checkpoint(path, modules, preset, "stage2", 7)
    return {name: m.state_dict() for name, m in modules.items()}


def _frozen_lr(**overrides: object) -> dict:
    """A recipe whose steps barely move the weights: what a run starts from stays visible."""
    return tiny_diffir(lr=1e-9, lr_min=0.0, **overrides)


def test_a_fine_tune_starts_from_the_checkpoint_and_resumes_bit_exactly(tmp_path: Path) -> None:
    """--init at DiffIR's stage 2: every module comes from the file (the frozen teacher
    bit-exactly, the trained ones within the tiny steps), no earlier stage folder is needed,
    and a fine-tune killed after its first checkpoint resumes to the same bytes."""
    init = tmp_path / "model.safetensors"
    source = _finished_model(init, seed=1)
    preset = preset_from_dict(_frozen_lr(iterations=2, checkpoint_every=1))
    straight = train(preset, tmp_path / "a", stage="stage2", init=init)
    ckpt = load_checkpoint(straight.weights)
    for key, value in source["teacher"].items():
        assert torch.equal(ckpt.module_state("teacher")[key], value), key
    torch.manual_seed(preset.train.seed)
    fresh = build_restorer(preset).dirformer.state_dict()
    for key, value in source["dirformer"].items():
        tuned = ckpt.module_state("dirformer")[key]
        assert torch.allclose(tuned, value, atol=1e-6), key
    # ... and that is not what the run would have started from without --init
    assert any(not torch.allclose(fresh[k], v, atol=1e-3) for k, v in source["dirformer"].items())
    assert not (tmp_path / "a" / "stage1").exists()
    train(preset, tmp_path / "b", stage="stage2", init=init, stop_at=1)
    resumed = train(preset, tmp_path / "b", stage="stage2", init=init, resume=True)
    assert resumed.step == 2
    again = load_checkpoint(resumed.weights)
    assert set(again.tensors) == set(ckpt.tensors)
    assert all(torch.equal(again.tensors[k], v) for k, v in ckpt.tensors.items())


def test_the_first_stage_keeps_what_the_file_lacks_a_later_stage_needs_it(
    tmp_path: Path,
) -> None:
    """An authors' release has no stage-1 teacher (CPEN_S1): stage 1 can start from it (the
    teacher is what stage 1 trains), stage 2 cannot, and says so."""
    init = tmp_path / "release.safetensors"
    source = _finished_model(init, seed=2, drop=("teacher",))
    preset = preset_from_dict(_frozen_lr(iterations=1, stages={"stage2": {"iterations": 1}}))
    lines: list[str] = []
    result = train(preset, tmp_path / "run", init=init, info=lines.append)
    assert result.step == 1 and (tmp_path / "run" / "stage1").is_dir()
    stage1 = load_checkpoint(tmp_path / "run" / "stage1" / "weights.safetensors")
    for key, value in source["cpen"].items():  # untrained in stage 1: carried bit-exactly
        assert torch.equal(stage1.module_state("cpen")[key], value), key
    assert any("teacher start from their initialisation" in line for line in lines)
    with pytest.raises(CheckpointError, match="no module 'teacher'"):
        train(preset, tmp_path / "other", stage="stage2", init=init)


def test_a_checkpoint_that_does_not_fit_is_refused_before_training(tmp_path: Path) -> None:
    init = tmp_path / "model.safetensors"
    _finished_model(init, seed=3)
    wider = tiny_diffir()
    wider["network"]["width"] = 8
    with pytest.raises(CheckpointError, match="do not fit module 'dirformer'"):
        train(preset_from_dict(wider), tmp_path / "run", init=init)
    other = preset_to_dict(preset_from_dict(tiny_diffir()))
    refusion = {
        "name": "refusion-test",
        "task": "denoise",
        "method": "refusion",
        "network": {"width": 8},
        "train": other["train"],
        "data": other["data"],
    }
    with pytest.raises(CheckpointError, match="holds a diffir model"):
        train(preset_from_dict(refusion), tmp_path / "run2", init=init)


def test_the_cli_refuses_what_is_not_an_irctl_checkpoint_as_a_usage_error(
    tmp_path: Path,
) -> None:
    from safetensors.torch import save_file

    pickle = tmp_path / "model.pth"
    pickle.write_bytes(b"\x80\x02}q\x00.")
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    runner = CliRunner()
    for path, reason in (
        (pickle, "refusing a .pth file"),
        (tmp_path / "no.safetensors", "does not exist"),
        (bare, "not an irctl checkpoint"),
    ):
        result = runner.invoke(
            app,
            ["train", "-p", "denoise-tiny", "--out", str(tmp_path / "run"), "--init", str(path)],
        )
        assert result.exit_code == 2, result.output
        assert reason in result.output and "--init" in result.output
        assert not (tmp_path / "run" / "log.jsonl").exists()
