"""Haze synthesis (Koschmieder's model) and the random fields that drive it."""

from __future__ import annotations

import pytest
import torch

from irctl.data.fields import depth_proxy, normalize_per_sample, smooth_field
from irctl.data.haze import HazeParams, add_haze, apply_haze, haze_parameters


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _clean(n: int = 2, h: int = 24, w: int = 32, seed: int = 99) -> torch.Tensor:
    return torch.rand((n, 3, h, w), generator=_gen(seed))


def test_smooth_field_shape_range_and_smoothness():
    field = smooth_field(3, 40, 64, _gen(0))
    assert field.shape == (3, 1, 40, 64)
    flat = field.flatten(1)
    assert torch.allclose(flat.min(1).values, torch.zeros(3))
    assert torch.allclose(flat.max(1).values, torch.ones(3))
    # Smooth, not per-pixel noise: neighbouring pixels differ by a few percent of the range.
    assert (field[..., 1:] - field[..., :-1]).abs().mean() < 0.05
    assert (field[..., 1:, :] - field[..., :-1, :]).abs().mean() < 0.05


def test_smooth_field_correlation_length_is_relative_to_the_frame():
    """The same grid draw at two resolutions is the same field, just sampled more finely."""
    small = smooth_field(2, 32, 48, _gen(5))
    large = smooth_field(2, 128, 192, _gen(5))
    down = torch.nn.functional.interpolate(large, size=(32, 48), mode="area")
    assert (down - small).abs().mean() < 0.03


def test_normalize_guards_constant_fields():
    out = normalize_per_sample(torch.full((2, 1, 4, 5), 0.3))
    assert torch.equal(out, torch.full_like(out, 0.5))


def test_depth_proxy_is_farther_at_the_top():
    depth = depth_proxy(16, 32, 32, _gen(1))
    assert depth.shape == (16, 1, 32, 32)
    assert depth.min() >= 0.0 and depth.max() <= 1.0
    top, bottom = depth[..., :8, :].mean(), depth[..., -8:, :].mean()
    assert top - bottom > 0.3


def test_transmission_lies_between_the_floor_and_one():
    params = HazeParams(beta=(4.0, 8.0), min_transmission=0.05)
    t = haze_parameters(4, 24, 32, _gen(2), params).transmission
    assert t.shape == (4, 1, 24, 32)
    assert t.max() <= 1.0
    assert t.min() == pytest.approx(0.05)  # dense haze reaches the floor, never below it


def test_airlight_is_bright_and_slightly_tinted():
    a = haze_parameters(8, 8, 8, _gen(3), HazeParams()).airlight
    assert a.shape == (8, 3, 1, 1)
    assert a.min() >= 0.75 - 0.03 and a.max() <= 1.0
    spread = a.flatten(1).max(1).values - a.flatten(1).min(1).values
    assert (spread > 0).all() and (spread <= 0.06 + 1e-6).all()


def test_zero_beta_leaves_the_image_unchanged():
    clean = _clean()
    hazy = add_haze(clean, _gen(4), HazeParams(beta=(0.0, 0.0)))
    assert torch.equal(hazy, clean)


def test_apply_haze_is_invertible_given_t_and_a():
    clean = _clean()
    sample = haze_parameters(2, 24, 32, _gen(6), HazeParams())
    t, a = sample.transmission, sample.airlight
    hazy = apply_haze(clean, t, a)
    recovered = (hazy - a) / t + a
    assert torch.allclose(recovered, clean, atol=1e-5)


def test_haze_grows_with_depth():
    params = HazeParams(nonhomogeneity=0.0, min_transmission=0.0)
    sample = haze_parameters(3, 24, 32, _gen(7), params)
    for depth, t in zip(sample.depth.flatten(1), sample.transmission.flatten(1), strict=True):
        order = depth.argsort()
        assert (t[order].diff() <= 1e-6).all()  # t = exp(−β̄·d) falls monotonically with depth
    hazy = apply_haze(_clean(n=3), sample.transmission, sample.airlight)
    distance_to_a = (hazy - sample.airlight).abs().mean(1, keepdim=True)
    far, near = sample.depth > 0.7, sample.depth < 0.3
    assert distance_to_a[far].mean() < 0.6 * distance_to_a[near].mean()


def test_nonhomogeneity_sets_the_beta_spread():
    flat_beta = haze_parameters(2, 24, 32, _gen(8), HazeParams(nonhomogeneity=0.0)).beta
    per_sample = flat_beta.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    # β(x) = β̄·(1 − h/2 + h·field) with field spanning [0, 1]: max/min = (1 + h/2)/(1 − h/2).
    beta = haze_parameters(2, 24, 32, _gen(8), HazeParams(nonhomogeneity=0.7)).beta.flatten(1)
    ratio = beta.max(1).values / beta.min(1).values
    assert torch.allclose(ratio, torch.full((2,), 1.35 / 0.65), rtol=1e-4)


def test_seed_reproduces_bytes_and_other_seeds_differ():
    clean = _clean()
    first = add_haze(clean, _gen(11), HazeParams())
    again = add_haze(clean, _gen(11), HazeParams())
    other = add_haze(clean, _gen(12), HazeParams())
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 0.05
