"""IR-SDE's denoising SDE (Luo et al., ICML 2023, §4 "Gaussian denoising"; official
``DenoisingSDE``): the mean does not revert to an LQ image, it *stays at* the clean image,
μ = x_0, so the forward process only adds noise, x_t ~ N(x_0, σ̄_t²), and a noisy photo *is* a
state x_t: restoring starts at the timestep whose σ̄_t matches the photo's noise level and runs
the probability-flow ODE down to 1, with a network that sees x_t alone.

The schedule is the mean-reverting one (irctl/diffusion/mrsde.py: cosine θ, S_t, dt) with the
official denoising config's eps = 0.04 (e^{−θ̄_T} = 0.04, not 0.005). All functions are pure.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from irctl.diffusion import mrsde

#: the official DenoisingSDE's e^{−θ̄_T}
EPS = 0.04


def make_schedule(
    T: int = 100, max_sigma: float = 75.0, kind: str = "cosine"
) -> mrsde.MRSDESchedule:
    """The denoising SDE's schedule: λ = ``max_sigma`` (0–255 units), eps 0.04."""
    return mrsde.make_schedule(T, max_sigma, kind, EPS)


def start_timestep(sched: mrsde.MRSDESchedule, sigma: float, eps: float = 1e-6) -> int:
    """The t whose S_t is nearest Ŝ = −ln(1 − σ²/λ² + eps)/(2 dt): the state a photo with
    Gaussian noise of std ``sigma`` (0–255 units, or [0, 1] below 1) is (official
    ``get_optimal_timestep``). 0 when the noise is negligible."""
    sigma = sigma / 255.0 if sigma > 1 else sigma
    target = -math.log(1.0 - sigma**2 / sched.max_sigma**2 + eps) / (2.0 * sched.dt)
    return int(torch.argmin((sched.cum_thetas - target).abs()))


def ode_step(x: Tensor, score: Tensor, sched: mrsde.MRSDESchedule, t: int) -> Tensor:
    """One Euler step t → t−1 of the probability-flow ODE with μ = x_0 (official
    ``reverse_ode_step``): x − f_ode, f_ode = −½σ_t²·e^{−2θ̄_t}·ŝ·dt, σ_t² = 2λ²θ_t."""
    sigma2 = 2.0 * sched.max_sigma**2 * float(sched.thetas[t])
    decay = math.exp(-2.0 * mrsde.theta_bar(sched, t))
    return x + 0.5 * sigma2 * decay * sched.dt * score


def reverse_sde_mean(
    x: Tensor, score: Tensor, sched: mrsde.MRSDESchedule, t: mrsde.Timestep
) -> Tensor:
    """The drift part of one reverse-SDE step t → t−1 (official ``reverse_sde_step_mean``):
    x − f_sde, f_sde = −½σ_t²·(1 + e^{−2θ̄_t})·ŝ·dt. ``t`` is an int or one per batch item (the
    training loss)."""

    def coefficient(ti: int) -> float:
        sigma2 = 2.0 * sched.max_sigma**2 * float(sched.thetas[ti])
        return 0.5 * sigma2 * (1.0 + math.exp(-2.0 * mrsde.theta_bar(sched, ti))) * sched.dt

    return x + mrsde._factor(coefficient, x, t) * score


def optimal_previous_state(
    x_t: Tensor, x0: Tensor, sched: mrsde.MRSDESchedule, t: mrsde.Timestep
) -> Tensor:
    """x*_{t−1}, the mean of p(x_{t−1} | x_t, x_0) with μ = x_0 (official
    ``reverse_optimum_step``): the training target."""
    prev = [v - 1 for v in t] if not isinstance(t, int) else t - 1
    return mrsde.optimal_reverse_state(x_t, x0, x0, sched, t, prev)


def timesteps_from(start: int) -> list[int]:
    """The grid start, start − 1, …, 0: every step, as the official sampler runs."""
    return list(range(start, -1, -1))


@torch.no_grad()
def sample_ode(
    model: Callable[[Tensor, int], Tensor],
    x: Tensor,
    sched: mrsde.MRSDESchedule,
    grid: list[int],
    noise: mrsde.NoiseFn | None = None,
    callback: mrsde.StepCallback | None = None,
) -> Tensor:
    """Probability-flow ODE over ``grid`` (:func:`timesteps_from`), the model ε̂ = model(x, t);
    deterministic (``noise`` unused: the family's one face)."""
    steps = len(grid) - 1
    for i, (t, _s) in enumerate(itertools.pairwise(grid)):
        x = ode_step(x, mrsde.score_from_noise(model(x, t), sched, t), sched, t)
        if callback is not None:
            callback(i, steps, x)
    return x


SAMPLERS = {"ode": sample_ode}
