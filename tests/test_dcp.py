"""Dark channel prior dehazing (He et al.) on a photo hazed with a known A and t."""

from __future__ import annotations

import numpy as np
import pytest

from irctl.data.datasets import load_photo
from irctl.methods.dcp import dark_channel, dark_channel_prior, estimate_airlight, guided_filter

AIRLIGHT = np.array([0.9, 0.92, 0.95], dtype=np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def hazed() -> tuple[np.ndarray, np.ndarray]:
    """A 160×200 crop of ``coffee`` under homogeneous haze: t falls gently from 0.6 to 0.4."""
    clean = load_photo("coffee")[:160, :200]
    t = np.linspace(0.6, 0.4, 160, dtype=np.float32)[:, None, None]
    return clean, clean * t + AIRLIGHT * (1.0 - t)


def test_dehazing_gains_psnr(hazed: tuple[np.ndarray, np.ndarray]):
    clean, hazy = hazed
    out = dark_channel_prior(hazy)
    assert out.shape == hazy.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert _psnr(out, clean) >= _psnr(hazy, clean) + 5.0


def test_airlight_estimate_is_close(hazed: tuple[np.ndarray, np.ndarray]):
    _, hazy = hazed
    estimate = estimate_airlight(hazy, dark_channel(hazy, 7))
    assert estimate.shape == (3,)
    assert np.abs(estimate - AIRLIGHT).max() < 0.1


def test_haze_free_input_is_nearly_unchanged():
    """Without haze the prior says t ≈ 1 almost everywhere, so DCP must not wreck the photo."""
    clean = load_photo("coffee")[:160, :200]
    assert _psnr(dark_channel_prior(clean), clean) > 15.0


def test_guided_filter_keeps_a_constant():
    guide = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    out = guided_filter(guide, np.full((30, 40), 0.37, np.float32), radius=5, eps=1e-3)
    assert np.allclose(out, 0.37, atol=1e-5)


def test_guided_filter_with_self_guide_and_tiny_eps_preserves_edges():
    step = np.zeros((20, 20), np.float32)
    step[:, 10:] = 1.0
    out = guided_filter(step, step, radius=3, eps=1e-6)
    assert np.allclose(out, step, atol=1e-3)


def test_dark_channel_known_values():
    white = np.ones((20, 20, 3), np.float32)
    assert np.array_equal(dark_channel(white, 5), np.ones((20, 20), np.float32))
    one_black = np.ones((20, 20, 3), np.float32)
    one_black[..., 2] = 0.0
    assert np.array_equal(dark_channel(one_black, 5), np.zeros((20, 20), np.float32))
    # The window minimum spreads one dark pixel over a patch×patch square, and no further.
    dot = np.ones((20, 20, 3), np.float32)
    dot[10, 10] = 0.0
    dark = dark_channel(dot, 5)
    assert dark[8:13, 8:13].max() == 0.0 and dark.sum() == 20 * 20 - 25
