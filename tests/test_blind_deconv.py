"""Blind deblurring without a model (irctl/methods/blind_deconv.py): the pieces keep their
known properties, and on an edge-rich photo the estimated kernel is the true one closely
enough that Richardson–Lucy with it undoes much of the blur."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from irctl.config import DegradationConfig
from irctl.data.blur import convolve, random_motion_kernel
from irctl.data.datasets import load_photo
from irctl.methods.blind_deconv import (
    edge_coherence,
    estimate_kernel,
    l0_latent,
    pyramid_sizes,
)
from irctl.methods.classical import CLASSICAL
from irctl.metrics.fidelity import psnr


def _blurred_camera(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 192² crop of `camera` (tripod, coat, sky: long straight edges), its blurred,
    8-bit version and the kernel."""
    sharp = load_photo("camera")[100:292, 150:342].astype(np.float32)
    kernel = random_motion_kernel(size, np.random.default_rng(seed))
    chw = torch.from_numpy(np.ascontiguousarray(sharp.transpose(2, 0, 1)))[None]
    blurred = convolve(chw, torch.from_numpy(kernel))[0].numpy().transpose(1, 2, 0)
    return sharp, (np.round(np.clip(blurred, 0, 1) * 255) / 255).astype(np.float32), kernel


def test_pyramid_sizes_are_odd_and_grow_to_the_kernel_size() -> None:
    for size in (3, 5, 9, 31, 61):
        sizes = pyramid_sizes(size)
        assert sizes[-1] == size and all(s % 2 == 1 for s in sizes)
        assert all(b > a for a, b in itertools.pairwise(sizes))
        assert sizes[0] == min(size, 5)
    assert pyramid_sizes(31) == [5, 7, 9, 13, 17, 23, 31]


def test_l0_latent_of_a_delta_blur_keeps_a_piecewise_flat_image() -> None:
    """With k = δ the L0 problem's exact minimiser of a noiseless piecewise-flat image whose
    steps are all larger than √λ is the image itself."""
    image = np.zeros((32, 40))
    image[:, 20:] = 0.6
    image[10:20, 5:12] = 0.3
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    assert np.allclose(l0_latent(image, delta, 1e-2), image, atol=5e-3)


def test_edge_coherence_tells_an_edge_from_noise() -> None:
    edge = np.zeros((40, 40))
    edge[:, 20:] = 1.0
    gx, gy = np.roll(edge, -1, 1) - edge, np.roll(edge, -1, 0) - edge
    assert edge_coherence(gx, gy, 5)[20, 19] > 0.9
    noise = np.random.default_rng(0).normal(0.5, 0.1, (40, 40))
    nx, ny = np.roll(noise, -1, 1) - noise, np.roll(noise, -1, 0) - noise
    assert np.median(edge_coherence(nx, ny, 5)) < 0.5


@pytest.mark.parametrize("seed", [2, 4])
def test_the_estimated_kernel_is_the_true_one_on_an_edge_rich_photo(seed: int) -> None:
    sharp, blurred, kernel = _blurred_camera(13, seed)
    estimate = estimate_kernel(blurred, 13)
    assert estimate.shape == (13, 13) and estimate.min() >= 0
    assert estimate.sum() == pytest.approx(1.0)
    rows, cols = np.mgrid[:13, :13]
    # centred like the truth (to within the mass a sub-pixel shift pushes off the border)
    assert (estimate * rows).sum() == pytest.approx(6.0, abs=0.5)
    assert (estimate * cols).sum() == pytest.approx(6.0, abs=0.5)
    similarity = (estimate * kernel).sum() / np.linalg.norm(estimate) / np.linalg.norm(kernel)
    assert similarity > 0.7, similarity
    out = CLASSICAL["blind-richardson-lucy"](blurred, DegradationConfig(blur_size=(9, 13)))
    before, after = psnr(blurred, sharp, max_value=1.0), psnr(out, sharp, max_value=1.0)
    assert after > before + 2.0, (before, after)


def test_a_photo_too_small_for_the_kernel_gets_the_identity_kernel() -> None:
    """No interior pixel is left to estimate from: the estimate is a centred delta, and the
    deblurred image is the input (Richardson–Lucy with δ is the identity)."""
    small = np.random.default_rng(0).uniform(0.2, 0.8, (20, 24, 3)).astype(np.float32)
    estimate = estimate_kernel(small, 15)
    assert estimate[7, 7] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd"):
        estimate_kernel(small, 8)
