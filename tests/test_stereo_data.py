"""Stereo SR training data: pairs, the flips that keep them rectified, the ×4 synthesis, and the
preset checks that keep a stereo-SR preset consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irctl.config import PresetError
from irctl.data.datasets import augment_stereo, load_stereo_photo
from irctl.data.degrade import build_pair_synthesis
from irctl.data.resize import downscale
from irctl.presets import apply_overrides, load_preset

D = 3  # a constant disparity in pixels


def _pair(h: int = 8, w: int = 16) -> torch.Tensor:
    """L‖R (6×H×W) with left[y, x] = right[y, x − D], the convention of the shipped pair."""
    left = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    right = torch.roll(left, shifts=-D, dims=-1)
    return torch.cat([left, right])


def _rectified_with_positive_disparity(pair: torch.Tensor) -> bool:
    left, right = pair.chunk(2)
    return torch.equal(right[..., :-D], torch.roll(left, shifts=-D, dims=-1)[..., :-D])


@pytest.mark.parametrize("flags", [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 1), (0, 0, 1)])
def test_stereo_flips_keep_the_pair_rectified_with_positive_disparity(flags) -> None:
    pair = _pair()
    out = augment_stereo(pair, torch.tensor(flags, dtype=torch.bool))
    assert _rectified_with_positive_disparity(out)
    # A plain mirror of both views (what the mono augmentation does) breaks it.
    assert not _rectified_with_positive_disparity(pair.flip(-1))


def test_real_pair_is_the_shipped_motorcycle_and_synthetic_pairs_are_reproducible() -> None:
    from irctl.data.datasets import load_photo

    real = load_stereo_photo("motorcycle", (0.03, 0.08))
    assert real.shape == (500, 741, 6)
    assert np.array_equal(real[..., 3:], load_photo("motorcycle_right"))
    a = load_stereo_photo("coffee", (0.03, 0.08))
    b = load_stereo_photo("coffee", (0.03, 0.08))
    assert np.array_equal(a, b)
    width = load_photo("coffee").shape[1]
    assert 0.92 * width <= a.shape[1] < 0.975 * width  # the unfilled columns are trimmed
    assert not np.array_equal(a[..., :3], a[..., 3:])


def test_stereo_sr_synthesis_is_the_quantised_bicubic_of_each_view() -> None:
    cfg = load_preset("stereo-sr-tiny").degradation
    clean = torch.rand(2, 6, 34, 42, generator=torch.Generator().manual_seed(1))
    batch = build_pair_synthesis(cfg)(clean, torch.Generator().manual_seed(0))
    assert batch.gt.shape == (2, 6, 32, 40) and batch.lq.shape == (2, 6, 8, 10)
    expected = downscale(clean[..., :32, :40], 4)
    assert torch.allclose(batch.lq, torch.round(expected.clamp(0, 1) * 255) / 255)


@pytest.mark.parametrize(
    "override,message",
    [
        ("network.views=1", "views = 2"),
        ("network.upscale=2", "upscale"),
        ("network.arch=transformer", "arch"),
    ],
)
def test_inconsistent_stereo_presets_are_refused(override: str, message: str) -> None:
    with pytest.raises(PresetError, match=message):
        apply_overrides(load_preset("stereo-sr-tiny"), [override])
