"""grid_amplitude: the RMS of an image's 4-periodic pattern, in 8-bit luma levels."""

from __future__ import annotations

import numpy as np
import pytest

from irctl.metrics.artifacts import grid_amplitude


def _smooth_photo(h: int, w: int, seed: int) -> np.ndarray:
    """A 0..255 grey image of a few long-period sinusoids and linear gradients (no 4-px content)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    image = 100.0 + 0.3 * rows - 0.2 * cols
    for _ in range(4):
        fy, fx = rng.uniform(-1 / 40, 1 / 40, 2)
        image += 15.0 * np.sin(2 * np.pi * (fy * rows + fx * cols) + rng.uniform(0, 2 * np.pi))
    return image


def test_flat_gradient_and_smooth_images_have_no_grid() -> None:
    assert grid_amplitude(np.full((32, 40), 0.4), max_value=1.0) == pytest.approx(0.0, abs=1e-12)
    rows, cols = np.mgrid[0:64, 0:80].astype(np.float64)
    steep_ramp = 1.7 * rows + 0.9 * cols  # a linear gradient cancels exactly in the detail layer
    assert grid_amplitude(steep_ramp, max_value=255.0) == pytest.approx(0.0, abs=1e-9)
    assert grid_amplitude(_smooth_photo(200, 240, 0), max_value=255.0) < 0.05


@pytest.mark.parametrize("period", [2, 4])
def test_a_tiled_pattern_has_its_rms_amplitude(period: int) -> None:
    """A zero-mean period×period pattern of known RMS, tiled over a smooth image and over noise:
    the amplitude is that RMS (the smooth part and the noise contribute next to nothing)."""
    rng = np.random.default_rng(period)
    pattern = rng.normal(0.0, 1.0, (period, period))
    pattern -= pattern.mean()
    pattern *= 2.5 / np.sqrt(np.mean(pattern**2))  # RMS 2.5 grey levels
    h, w = 200, 240
    tiled = np.tile(pattern, (h // period, w // period))
    noisy = _smooth_photo(h, w, 1) + rng.normal(0.0, 10.0, (h, w))
    assert grid_amplitude(noisy, max_value=255.0) < 0.3
    assert grid_amplitude(noisy + tiled, max_value=255.0, period=period) == pytest.approx(
        2.5, abs=0.3
    )
    # a period-2 pattern is also 4-periodic: the default period sees it
    if period == 2:
        assert grid_amplitude(noisy + tiled, max_value=255.0) == pytest.approx(2.5, abs=0.3)


def test_colour_uses_luma_and_bad_shapes_fail() -> None:
    rows, cols = np.mgrid[0:24, 0:24]
    sign = np.where((rows + cols) % 2 == 0, 1.0, -1.0)
    green_only = np.zeros((24, 24, 3))
    green_only[..., 1] = 0.5 + 0.01 * sign
    # BT.601: Y = 16 + 128.553 G on the 0..255 scale, so a ±0.01 green checkerboard is ±1.29 Y
    assert grid_amplitude(green_only, max_value=1.0) == pytest.approx(128.553 * 0.01)
    with pytest.raises(ValueError):
        grid_amplitude(np.zeros((16, 16, 2)), max_value=1.0)
    with pytest.raises(ValueError, match="too small"):
        grid_amplitude(np.zeros((8, 40)), max_value=1.0)
