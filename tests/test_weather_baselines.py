"""The snow table's classical rows (irctl/methods/classical.py): bright occluders found over a
median background and inpainted, and a plain median filter; both must beat the input on a
held-out photo's synthetic snow, or they would be rows of noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from irctl.config import DegradationConfig
from irctl.engine.heldout import heldout_photos
from irctl.methods.classical import CLASSICAL, occluder_mask
from irctl.metrics.fidelity import psnr
from irctl.presets import load_preset
from irctl.tasks import get_task


def _flakes_on(scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scene`` with a few white discs (radius 3) and one dark one: (image, the white discs)."""
    ys, xs = np.mgrid[0 : scene.shape[0], 0 : scene.shape[1]]
    white = np.zeros(scene.shape[:2], dtype=bool)
    for cy, cx in ((10, 12), (30, 40), (45, 15), (20, 50)):
        white |= np.hypot(ys - cy, xs - cx) <= 3
    image = scene.copy()
    image[white] = 0.95
    image[np.hypot(ys - 50, xs - 50) <= 3] = 0.05
    return image, white


def test_the_mask_finds_bright_flakes_and_nothing_else() -> None:
    ramp = np.linspace(0.3, 0.6, 64, dtype=np.float32)
    scene = np.repeat(np.tile(ramp, (64, 1))[..., None], 3, axis=2)
    image, white = _flakes_on(scene)
    mask = occluder_mask(image, dilation=0)
    assert np.array_equal(mask, white)  # the dark disc and the smooth ramp are not snow
    grown = occluder_mask(image, dilation=1)
    assert grown[white].all() and grown.sum() > mask.sum()
    assert not grown[45:56, 45:56].any()


def test_flakes_on_a_flat_scene_are_filled_with_the_scene() -> None:
    scene = np.full((64, 64, 3), 0.4, dtype=np.float32)
    image, white = _flakes_on(scene)
    out = CLASSICAL["median-inpaint"](image, DegradationConfig())
    assert np.abs(out[white] - 0.4).max() <= 2.5 / 255.0  # flakes gone, up to 8-bit levels
    assert np.abs(out - scene)[~white].max() > 0.3  # the dark disc is not touched
    smoothed = CLASSICAL["median-filter"](image, DegradationConfig())
    assert smoothed.shape == image.shape and smoothed.dtype == np.float32


def test_desnow_lists_the_baselines_and_raindrop_none() -> None:
    assert get_task("desnow").classical == ("median-inpaint", "median-filter")
    assert get_task("raindrop").classical == ()


@pytest.mark.parametrize("name", ["median-inpaint", "median-filter"])
def test_the_baselines_beat_the_input_on_held_out_snow(name: str) -> None:
    preset = load_preset("desnow-dtpm-tiny")
    assert "coffee" in preset.data.test and "coffee" not in preset.data.train
    one = preset.replace(data=dataclasses.replace(preset.data, test=("coffee",)))
    (photo,) = heldout_photos(one)
    gt = photo.gt / np.float32(255.0)
    out = CLASSICAL[name](photo.lq, one.degradation, photo.known)
    before, after = psnr(photo.lq, gt, max_value=1.0), psnr(out, gt, max_value=1.0)
    assert after > before + 1.0, (before, after)
