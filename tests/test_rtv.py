"""RTV smoothing (irctl.data.rtv): edges kept, texture and noise removed, the texture residual
exact by construction, the linear system of Xu et al. 2012 Eq. (8) actually solved and built with
the border handling of ``tsmooth.m``, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from irctl.data.rtv import (
    RTVParams,
    gaussian_kernel,
    rtv_smooth,
    rtv_system,
    sigma_schedule,
    texture_residual,
    texture_weights,
)

EDGE = 32  # first column of the bright half


def _textured_step(n: int = 64, seed: int = 0) -> np.ndarray:
    """A 0.2 | 0.8 step (grey, n×n×1) plus a pixel checkerboard ±0.04 and noise σ = 0.02."""
    rng = np.random.default_rng(seed)
    clean = np.where(np.arange(n)[None, :] >= EDGE, 0.8, 0.2) * np.ones((n, 1))
    ii, jj = np.mgrid[0:n, 0:n]
    texture = 0.04 * (2.0 * ((ii + jj) % 2) - 1.0) + 0.02 * rng.standard_normal((n, n))
    return (clean + texture)[..., None]


def _edge_stats(img: np.ndarray) -> tuple[float, int, float, float]:
    """Jump across the step, column of the largest mean jump, variance of each flat side (both
    measured away from the image border and the step)."""
    g = img[8:-8, :, 0]
    jumps = np.diff(g, axis=1).mean(axis=0)
    left = g[:, 8 : EDGE - 6]
    right = g[:, EDGE + 6 : -8]
    return (
        float(jumps[EDGE - 1]),
        int(np.argmax(np.abs(jumps))),
        float(left.var()),
        float(right.var()),
    )


def test_step_edge_kept_while_texture_goes_unlike_a_gaussian_blur():
    noisy = _textured_step()
    jump0 = 0.6
    _, _, var_l0, var_r0 = _edge_stats(noisy)

    jump, where, var_l, var_r = _edge_stats(rtv_smooth(noisy))
    assert jump >= 0.9 * jump0
    assert where == EDGE - 1
    assert var_l0 / var_l >= 10 and var_r0 / var_r >= 10

    # A Gaussian blur that removes the texture about as well smears the step over many pixels.
    blurred = ndimage.gaussian_filter(noisy, sigma=(2.0, 2.0, 0), mode="nearest")
    b_jump, b_where, b_var_l, b_var_r = _edge_stats(blurred)
    assert var_l0 / b_var_l >= 10 and var_r0 / b_var_r >= 10
    assert b_jump < 0.5 * jump0
    assert b_where == EDGE - 1  # it still peaks there, only much lower


def test_noise_flattened_and_constant_kept():
    rng = np.random.default_rng(1)
    noisy = 0.5 + 0.05 * rng.standard_normal((48, 48, 3))
    smooth = rtv_smooth(noisy)
    assert smooth.std(axis=(0, 1)).max() <= 0.1 * noisy.std(axis=(0, 1)).min()

    flat = np.full((20, 24, 3), 0.37)
    np.testing.assert_allclose(rtv_smooth(flat), flat, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_texture_residual_adds_back_to_the_input(dtype, channels):
    rng = np.random.default_rng(2)
    x = rng.random((24, 31, channels)).astype(dtype)
    smooth, residual = texture_residual(x)
    assert smooth.shape == residual.shape == x.shape
    assert smooth.dtype == residual.dtype == x.dtype
    assert np.array_equal(residual, x - smooth)  # defined as the difference, nothing clipped
    total = smooth + residual
    sterbenz = (smooth >= x / 2) & (smooth <= 2 * x)  # there x − smooth is exact: bitwise back
    assert sterbenz.mean() > 0.5
    assert np.array_equal(total[sterbenz], x[sterbenz])
    ulp = np.spacing(np.maximum(np.abs(x), np.abs(smooth)))
    assert (np.abs(total - x) <= ulp).all()  # one rounding elsewhere
    assert np.abs(residual).max() > 0.05  # and the texture is really there


def test_channels_share_the_structure():
    rng = np.random.default_rng(3)
    grey = rng.random((20, 26, 1))
    rgb = np.repeat(grey, 3, axis=2)
    out = rtv_smooth(rgb)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    np.testing.assert_allclose(out[..., :1], rtv_smooth(grey), rtol=0, atol=1e-12)

    # One set of weights for all channels: an edge present only in red stops green's smoothing
    # too, so green keeps more variance next to it than it does when red is flat.
    green = 0.5 + 0.05 * rng.standard_normal((40, 40))
    red_edge = np.where(np.arange(40)[None, :] >= 20, 0.9, 0.1) * np.ones((40, 1))
    with_edge = rtv_smooth(np.stack([red_edge, green, green], axis=2))
    without = rtv_smooth(np.stack([np.full((40, 40), 0.5), green, green], axis=2))
    jump_with = np.abs(with_edge[:, 20, 1] - with_edge[:, 19, 1]).mean()
    jump_without = np.abs(without[:, 20, 1] - without[:, 19, 1]).mean()
    assert jump_with > 3 * jump_without


@pytest.mark.parametrize("params", [RTVParams(lam=0.0), RTVParams(iterations=0)])
def test_no_smoothing_returns_the_input(params):
    x = np.random.default_rng(4).random((9, 11, 3)).astype(np.float32)
    out = rtv_smooth(x, params)
    assert out is not x and out.dtype == x.dtype
    assert np.array_equal(out, x)


def test_last_iteration_solves_its_linear_system():
    rng = np.random.default_rng(5)
    x = np.clip(
        0.3 + 0.4 * (np.arange(33)[None, :, None] > 15) + 0.05 * rng.standard_normal((27, 33, 3)),
        0,
        1,
    )
    params = RTVParams()
    for rtol in (1e-4, 1e-10):
        # The last solve's matrix comes from the previous iterate (same tolerance throughout).
        before = rtv_smooth(x, RTVParams(iterations=params.iterations - 1), rtol=rtol)
        wx, wy = texture_weights(before, sigma_schedule(params)[-1], params.sharpness)
        a = rtv_system(wx, wy, params.lam)
        s = rtv_smooth(x, params, rtol=rtol)
        for c in range(3):
            b = x[..., c].ravel()
            assert np.linalg.norm(a @ s[..., c].ravel() - b) <= rtol * np.linalg.norm(b)


def test_system_matrix_is_the_weighted_five_point_laplacian():
    rng = np.random.default_rng(6)
    h, w, lam = 3, 4, 0.3
    wx, wy = rng.random((h, w)) + 0.5, rng.random((h, w)) + 0.5
    wx[:, -1] = 0.0
    wy[-1, :] = 0.0
    expected = np.eye(h * w)
    for i in range(h):
        for j in range(w):
            p = i * w + j
            for q, weight in ((p + 1, wx[i, j]), (p + w, wy[i, j])):
                if weight:
                    k = lam / 2 * weight
                    expected[p, p] += k
                    expected[q, q] += k
                    expected[p, q] -= k
                    expected[q, p] -= k
    np.testing.assert_allclose(rtv_system(wx, wy, lam).toarray(), expected, rtol=0, atol=1e-15)


def test_weights_match_a_direct_reading_of_compute_texture_weights():
    rng = np.random.default_rng(7)
    s = rng.random((6, 9, 3))
    sigma, sharp = 1.0, 0.02
    g = gaussian_kernel(sigma)

    def conv_same(v):  # MATLAB conv2(v, g, 'same'): zero padding
        return np.convolve(v, g, mode="same")

    blurred = np.apply_along_axis(conv_same, 1, s)
    blurred = np.apply_along_axis(conv_same, 0, blurred)
    fx = np.concatenate([np.diff(s, axis=1), np.zeros((6, 1, 3))], axis=1)
    fy = np.concatenate([np.diff(s, axis=0), np.zeros((1, 9, 3))], axis=0)
    gx = np.concatenate([np.diff(blurred, axis=1), np.zeros((6, 1, 3))], axis=1)
    gy = np.concatenate([np.diff(blurred, axis=0), np.zeros((1, 9, 3))], axis=0)
    wto = 1 / np.maximum(np.sqrt(fx**2 + fy**2).sum(axis=2) / 3, sharp)
    ex = 1 / np.maximum(np.abs(gx).sum(axis=2) / 3, 1e-3) * wto
    ey = 1 / np.maximum(np.abs(gy).sum(axis=2) / 3, 1e-3) * wto
    ex[:, -1] = 0
    ey[-1, :] = 0
    wx, wy = texture_weights(s, sigma, sharp)
    np.testing.assert_allclose(wx, ex, rtol=1e-12)
    np.testing.assert_allclose(wy, ey, rtol=1e-12)


def test_channel_means_kept_and_values_stay_in_range():
    rng = np.random.default_rng(8)
    x = rng.random((30, 41, 3)) ** 2
    s = rtv_smooth(x, rtol=1e-10)
    np.testing.assert_allclose(s.mean(axis=(0, 1)), x.mean(axis=(0, 1)), rtol=0, atol=1e-10)
    # Id + (λ/2)·L_w is an M-matrix with unit row sums: S is a convex combination of I.
    assert (s.min(axis=(0, 1)) >= x.min(axis=(0, 1)) - 1e-9).all()
    assert (s.max(axis=(0, 1)) <= x.max(axis=(0, 1)) + 1e-9).all()
    assert s.var() < 0.5 * x.var()


def test_schedule_and_kernel_follow_tsmooth():
    assert sigma_schedule(RTVParams()) == [3.0, 1.5, 0.75, 0.5]
    assert sigma_schedule(RTVParams(sigma=2.0, iterations=5)) == [2.0, 1.0, 0.5, 0.5, 0.5]
    for sigma, size in ((3.0, 15), (1.5, 9), (0.75, 5), (0.5, 3)):
        g = gaussian_kernel(sigma)
        assert g.size == size
        np.testing.assert_allclose(g.sum(), 1.0)
        np.testing.assert_allclose(g, g[::-1])
        assert np.argmax(g) == size // 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": -0.01}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"sharpness": 0.0}, "sharpness"),
        ({"iterations": -1}, "iterations"),
        ({"iterations": 2.5}, "iterations"),
    ],
)
def test_bad_parameters_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RTVParams(**kwargs)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.full((8, 8, 3), np.nan), "NaN or infinite"),
        (np.where(np.eye(8)[..., None] > 0, np.inf, 0.5), "NaN or infinite"),
        (np.zeros((8, 8)), "H×W×C"),
        (np.zeros((8, 8, 3), dtype=np.uint8), "floating-point"),
        (np.zeros((0, 8, 3)), "empty"),
    ],
)
def test_bad_images_refused(image, message):
    with pytest.raises(ValueError, match=message):
        rtv_smooth(image)


def test_each_solve_agrees_with_a_direct_sparse_solve():
    from scipy.sparse.linalg import spsolve

    rng = np.random.default_rng(9)
    n = 64
    step = np.where(np.arange(n)[None, :, None] >= n // 2, 0.7, 0.2)
    x = np.clip(step + 0.05 * rng.standard_normal((n, n, 3)), 0, 1)
    params = RTVParams()
    s = x
    for it, sigma in enumerate(sigma_schedule(params)):
        # Weights from the direct chain's own previous iterate; the fast solve from the same one.
        wx, wy = texture_weights(s, sigma, params.sharpness)
        a = rtv_system(wx, wy, params.lam).tocsc()
        s = np.stack([spsolve(a, x[..., c].ravel()).reshape(n, n) for c in range(3)], axis=2)
        fast = rtv_smooth(x, RTVParams(iterations=it + 1))
        if it == 0:  # one solve: exactly the same system, so the guaranteed RMS error bound
            err = fast - s
            assert np.sqrt((err**2).mean()) <= 1e-4 * np.sqrt((x**2).mean())
        assert np.abs(fast - s).max() <= 1e-3
    np.testing.assert_allclose(rtv_smooth(x, rtol=1e-10), s, rtol=0, atol=1e-8)
