"""The heavy-rain synthesis (irctl/data/rain_haze.py, I = T·(J + S) + (1 − T)·A): seeded, the
rain synthesis when there is no haze and the haze synthesis when there is no rain, and the
streaks veiled by the same transmission as the scene."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irctl.config import DegradationConfig
from irctl.data.datasets import load_photo
from irctl.data.degrade import DEGRADATIONS, build_pair_synthesis, quantize_8bit
from irctl.data.haze import HazeParams, apply_haze
from irctl.data.rain import RainParams
from irctl.data.rain_haze import add_rain_haze, rain_haze
from irctl.tasks import get_task


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    crops = [load_photo("astronaut")[:96, 150:246], load_photo("coffee")[100:196, 200:296]]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def _lq(photos: torch.Tensor, g: torch.Generator, **fields: object) -> torch.Tensor:
    return build_pair_synthesis(DegradationConfig(**fields))(photos, g).lq


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_seeded_and_on_the_8bit_grid(photos: torch.Tensor) -> None:
    assert "rain_haze" in DEGRADATIONS
    assert get_task("derain-dehaze").classical == ("dcp",)
    first = _lq(photos, _seeded(5), kind="rain_haze")
    again = _lq(photos, _seeded(5), kind="rain_haze")
    other = _lq(photos, _seeded(6), kind="rain_haze")
    assert first.shape == photos.shape and first.dtype == photos.dtype
    assert first.numpy().tobytes() == again.numpy().tobytes()
    assert not torch.equal(first, other)
    assert torch.equal(first, quantize_8bit(first))


def test_without_haze_it_is_the_rain_synthesis(photos: torch.Tensor) -> None:
    rainy = _lq(photos, _seeded(7), kind="rain")
    clear = _lq(photos, _seeded(7), kind="rain_haze", haze_beta=(0.0, 0.0))
    assert torch.equal(clear, rainy)
    assert not torch.equal(clear, quantize_8bit(photos))  # there is rain in it


def test_without_rain_it_is_the_haze_synthesis(photos: torch.Tensor) -> None:
    g = _seeded(8)
    torch.randint(0, 2**62, (1,), generator=g)  # the streaks' seed, drawn first
    hazy = _lq(photos, g, kind="haze")
    dry = _lq(photos, _seeded(8), kind="rain_haze", rain_density=(0.0, 0.0))
    assert torch.equal(dry, hazy)


def test_streaks_are_veiled_by_the_scene_transmission(photos: torch.Tensor) -> None:
    rain, haze = RainParams(intensity=(0.2, 0.3)), HazeParams()
    out, streaks, sample = add_rain_haze(photos, np.random.default_rng(1), _seeded(1), rain, haze)
    t, a = sample.transmission, sample.airlight
    # the transmission of a real medium: positive (floored at min_transmission), at most 1
    assert float(t.min()) >= haze.min_transmission > 0.0 and float(t.max()) <= 1.0
    assert float(t.min()) < 0.5 < float(t.max())  # the draw spans thin and thick haze
    assert float(streaks.max()) > 0.1  # there are streaks to veil
    assert torch.allclose(out, rain_haze(photos, streaks, t, a))
    # what the rain adds is T·S wherever the sensor did not clip: far streaks are fainter
    dry = rain_haze(photos, torch.zeros_like(streaks), t, a)
    assert torch.allclose(dry, apply_haze(photos, t, a).clamp(0.0, 1.0))
    unclipped = (out < 1.0).all(dim=1, keepdim=True) & (streaks > 0.05)
    assert int(unclipped.sum()) > 100
    added = (out - dry)[:, :1][unclipped]
    assert torch.allclose(added, (t * streaks)[unclipped], atol=1e-5)
    assert not torch.allclose(added, streaks[unclipped], atol=1e-2)


def test_heavier_haze_veils_more(photos: torch.Tensor) -> None:
    def contrast(beta: float) -> float:
        lq = _lq(photos, _seeded(4), kind="rain_haze", haze_beta=(beta, beta))
        return float(lq.std())

    assert contrast(0.5) > contrast(1.5) > contrast(3.0)
