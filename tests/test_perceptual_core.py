"""The perceptual bridge in the core environment (no pyiqa): weight checks and the clear
message when pyiqa is absent. Parity with pyiqa itself runs in the perceptual environment."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from irctl.metrics import perceptual


def test_every_metric_names_its_weight_files_and_their_directory(tmp_path: Path) -> None:
    for metric in perceptual.PERCEPTUAL_METRICS:
        missing = perceptual.missing_weights(metric, tmp_path)
        assert missing == [f"{sub}/{name}" for name, sub in perceptual.WEIGHT_FILES[metric]]
        message = str(perceptual.MissingWeights(metric, missing, tmp_path))
        assert "\n" not in message and message.startswith(f"{metric}: ")
        assert str(tmp_path) in message and all(m in message for m in missing)


def test_present_files_are_found_and_empty_ones_are_not(tmp_path: Path) -> None:
    for name, sub in perceptual.WEIGHT_FILES["lpips"]:
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / name).write_bytes(b"weights")
    assert perceptual.missing_weights("lpips", tmp_path) == []
    name, sub = perceptual.WEIGHT_FILES["lpips"][0]
    (tmp_path / sub / name).write_bytes(b"")
    assert perceptual.missing_weights("lpips", tmp_path) == [f"{sub}/{name} (empty)"]


def test_unknown_metric_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown perceptual metric"):
        perceptual.missing_weights("sharpness", None)


@pytest.mark.skipif(importlib.util.find_spec("pyiqa") is not None, reason="pyiqa is installed")
def test_without_pyiqa_the_scorer_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setattr(os, "environ", dict(os.environ))  # configure_cache sets TORCH_HOME etc.
    for name, sub in perceptual.WEIGHT_FILES["niqe"]:
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / name).write_bytes(b"weights")
    with pytest.raises(perceptual.PerceptualUnavailable, match=r"perceptual"):
        perceptual.PerceptualScorer(["niqe"], weights_dir=tmp_path)
