"""IR-SDE's denoising SDE (irctl/diffusion/denoising_sde.py) against the official formulas."""

from __future__ import annotations

import math

import numpy as np
import torch

from irctl.diffusion import denoising_sde as dsde
from irctl.diffusion import mrsde


def _official_schedule(T: int, max_sigma: float, eps: float = 0.04):
    """The official DenoisingSDE._initialize, re-derived in float64 from the fact sheet: cosine
    θ = 1 − ᾱ (T+3 points, [1:-1]), S_t = cumsum − θ_0, dt = −ln(eps)/S_T."""
    lam = max_sigma / 255
    n = T + 2
    x = np.linspace(0, n, n + 1)
    ac = np.cos(((x / n) + 0.008) / 1.008 * math.pi * 0.5) ** 2
    ac = ac / ac[0]
    thetas = 1 - ac[1:-1]
    cum = np.cumsum(thetas) - thetas[0]
    dt = -1 / cum[-1] * math.log(eps)
    sigmas = np.sqrt(lam**2 * 2 * thetas)
    sigma_bars = np.sqrt(lam**2 * (1 - np.exp(-2 * cum * dt)))
    return thetas, cum, dt, sigmas, sigma_bars


def test_schedule_matches_the_official_denoising_sde() -> None:
    sched = dsde.make_schedule(100, 75)
    thetas, cum, dt, _sigmas, sigma_bars = _official_schedule(100, 75)
    assert np.allclose(sched.thetas.numpy(), thetas, rtol=1e-12)
    assert np.allclose(sched.cum_thetas.numpy(), cum, rtol=1e-12)
    assert math.isclose(sched.dt, dt, rel_tol=1e-12)
    assert math.isclose(math.exp(-mrsde.theta_bar(sched, 100)), 0.04, rel_tol=1e-9)
    ours = [mrsde.marginal_std(sched, t) for t in range(101)]
    assert np.allclose(ours, sigma_bars, rtol=1e-9, atol=1e-12)


def test_start_timestep_is_where_the_marginal_noise_matches_the_photo() -> None:
    sched = dsde.make_schedule(100, 75)
    _, cum, dt, _, sigma_bars = _official_schedule(100, 75)
    for sigma in (5, 15, 25, 50):
        t = dsde.start_timestep(sched, sigma)
        target = -1 / (2 * dt) * math.log(1 - (sigma / 255) ** 2 / (75 / 255) ** 2 + 1e-6)
        assert t == int(np.argmin(np.abs(cum - target)))
        assert abs(sigma_bars[t] * 255 - sigma) < 2.0  # σ̄_t is the photo's noise level
    assert dsde.start_timestep(sched, 15) < dsde.start_timestep(sched, 50)


def test_ode_step_matches_the_official_drift() -> None:
    """x_{t−1} = x − ode_reverse_drift, ode_reverse_drift = −½σ_t²·e^{−2 S_t dt}·score·dt."""
    sched = dsde.make_schedule(100, 75)
    _thetas, cum, dt, sigmas, _ = _official_schedule(100, 75)
    g = torch.Generator().manual_seed(0)
    x, score = torch.randn(1, 3, 8, 8, generator=g), torch.randn(1, 3, 8, 8, generator=g)
    for t in (1, 17, 60, 100):
        official = x - (-0.5 * sigmas[t] ** 2 * math.exp(-2 * cum[t] * dt) * score * dt)
        assert torch.allclose(dsde.ode_step(x, score, sched, t), official.float(), atol=1e-7)


def test_the_ode_with_the_true_score_denoises() -> None:
    """Given the exact noise of x_t (x_0 known), the ODE from the matching timestep lands on
    x_0: the sampler's wiring, steps and score sign are right."""
    sched = dsde.make_schedule(100, 75)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)
    start = dsde.start_timestep(sched, 25)
    noisy = x0 + mrsde.marginal_std(sched, start) * torch.randn(
        x0.shape, generator=g, dtype=x0.dtype
    )

    def oracle(x, t):
        return (x - x0) / mrsde.marginal_std(sched, t)

    out = dsde.sample_ode(oracle, noisy, sched, dsde.timesteps_from(start))
    before = float((noisy - x0).pow(2).mean().sqrt())
    after = float((out - x0).pow(2).mean().sqrt())
    assert after < 0.05 * before
