"""MATLAB-style bicubic resampling (irctl/data/resize.py): the SR degradation and upsampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irctl.data.resize import contributions, downscale, imresize, upscale


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w)).astype(np.float32)


def _pil(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img, mode="F").resize(size, Image.BICUBIC))


def test_upscale_matches_pil_bicubic_away_from_the_border() -> None:
    """Same kernel (Keys, a = −0.5) and sampling grid as PIL's upscale; only the border differs
    (MATLAB mirrors, PIL renormalises the clipped kernel)."""
    img = _texture(20, 24, seed=1)
    ours = upscale(torch.from_numpy(img), 4).numpy()
    pil = _pil(img, (96, 80))
    assert ours.shape == pil.shape == (80, 96)
    assert np.abs(ours - pil)[8:-8, 8:-8].max() < 1e-5
    assert np.abs(ours - pil).max() > 1e-4  # the border really is handled differently


def test_upscale_interpolates_the_input_samples_and_keeps_constants() -> None:
    """×4 puts input pixel i's centre between output pixels 4i+1 and 4i+2; a cubic that passes
    through its samples gives the mean of those two back for a linear ramp, and a constant stays
    exactly constant (weights sum to one)."""
    ramp = torch.arange(16, dtype=torch.float64).reshape(1, 16).repeat(8, 1)
    up = upscale(ramp, 4)
    mid = 0.5 * (up[:, 4 * np.arange(16) + 1] + up[:, 4 * np.arange(16) + 2])
    assert torch.allclose(mid[:, 2:-2], ramp[0, 2:-2].expand(32, -1), atol=1e-12)
    const = torch.full((3, 5, 7), 0.37, dtype=torch.float64)
    assert torch.allclose(upscale(const, 4), torch.full((3, 20, 28), 0.37, dtype=torch.float64))


def test_gather_equals_the_dense_resampling_matrix() -> None:
    """The banded gather is the same linear map as the dense n_out × n_in matrix."""
    for n_in, n_out in [(13, 52), (52, 13), (7, 7 * 4), (40, 10)]:
        idx, w = contributions(n_in, n_out)
        dense = np.zeros((n_out, n_in))
        np.add.at(dense, (np.repeat(np.arange(n_out), idx.shape[1]), idx.ravel()), w.ravel())
        x = np.random.default_rng(n_in).random((3, n_in))
        ours = imresize(torch.from_numpy(x), (3, n_out)).numpy()
        assert np.allclose(ours, x @ dense.T, atol=1e-12)
        assert np.allclose(dense.sum(axis=1), 1.0)


def test_downscale_of_an_upscale_is_nearly_the_identity_for_smooth_images() -> None:
    yy, xx = np.mgrid[0:24, 0:32]
    smooth = torch.from_numpy(0.5 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 4.0))
    back = downscale(upscale(smooth, 4), 4)
    assert back.shape == smooth.shape
    assert (back - smooth)[2:-2, 2:-2].abs().max() < 2e-3


def test_batched_planes_are_resized_independently() -> None:
    x = torch.rand(2, 6, 9, 11, dtype=torch.float64)
    both = upscale(x, 4)
    assert both.shape == (2, 6, 36, 44)
    assert torch.equal(both[1, 4], upscale(x[1, 4], 4))


def test_downscale_needs_a_multiple_and_a_float() -> None:
    with pytest.raises(ValueError, match="multiple"):
        downscale(torch.zeros(10, 10), 4)
    with pytest.raises(TypeError, match="float"):
        imresize(torch.zeros(8, 8, dtype=torch.uint8), (4, 4))
