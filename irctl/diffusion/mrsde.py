"""Mean-reverting SDE (IR-SDE, Luo et al. ICML 2023; Refusion, CVPRW 2023 §3).

Forward process (Refusion eq. 1):  dx = θ_t (μ − x) dt + σ_t dw,  with σ_t² / θ_t = 2λ².
Its marginal (eq. 2):  x_t ~ N(μ + (x_0 − μ) e^{−θ̄_t},  λ² (1 − e^{−2 θ̄_t})).

Discretisation follows the official code (image-restoration-sde, ``IRSDE._initialize``), which is
what trained models expect: θ has T+1 entries, the discrete θ̄_t = S_t·dt with S_t = Σ_{i≤t} θ_i and
dt = −ln(eps)/S_T so that e^{−θ̄_T} = eps exactly — the forward process ends *eps-close* to μ rather
than at it (the "eps trick" of the IR-SDE appendix).

Every reverse update here is written for a general pair of timesteps t > s, using the *integrated*
rate Θ = (S_t − S_s)·dt over the interval; for s = t − 1 it reduces to θ_t·dt and matches the code.
This is what lets ``--steps`` below T skip timesteps without changing the math.

All functions are pure: they take a :class:`MRSDESchedule` and tensors, and return tensors.
Timesteps are integers in {0..T}; 0 is the clean image and never reaches the network.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: A noise-prediction network with μ and any conditioning bound: eps_hat = model(x_t, t), t an
#: integer timestep.
NoiseModel = Callable[[Tensor, int], Tensor]
#: Called after every reverse step with (step index, number of steps, current state).
StepCallback = Callable[[int, int, Tensor], None]
#: Where a sampler's noise comes from: ``noise(x)`` is standard normal noise shaped like x.
NoiseFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class MRSDEConfig:
    """A preset's ``[diffusion]`` table for the mean-reverting SDE; Refusion's defaults (paper
    §5.2, every official refusion.yml). λ (``max_sigma``) is in 0–255 units."""

    T: int = 100
    max_sigma: float = 50.0
    schedule: str = "cosine"
    eps: float = 0.005

    def build(self) -> MRSDESchedule:
        """The discretised schedule these settings describe."""
        return make_schedule(self.T, self.max_sigma, self.schedule, self.eps)


@dataclass(frozen=True)
class MRSDESchedule:
    """Discretised mean-reverting SDE.

    ``thetas[i]`` is θ_i for i = 0..T and ``cum_thetas[t]`` is S_t = Σ_{i=1..t} θ_i (S_0 = 0).
    """

    thetas: Tensor
    cum_thetas: Tensor
    dt: float
    max_sigma: float  # λ in [0, 1] image units

    @property
    def T(self) -> int:
        return self.thetas.numel() - 1


def theta_schedule(kind: str, T: int) -> Tensor:
    """θ_0..θ_T in float64, as the official code defines them.

    - ``cosine``: θ_i = 1 − ᾱ(i+1) with ᾱ the improved-DDPM cosine ᾱ (s = 0.008) on N = T+2
      points. Note this is a *cumulative* 1 − ᾱ, not a DDPM β (fact sheet §1.2).
    - ``linear``: linspace(a·1e-4, a·0.02, T+1), a = 1000/(T+1).
    - ``constant``: θ_i = 1.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if kind == "cosine":
        n = T + 2
        s = 0.008
        k = torch.arange(n + 1, dtype=torch.float64)
        f = torch.cos(((k / n) + s) / (1 + s) * math.pi * 0.5) ** 2
        alphas_cumprod = f / f[0]
        return 1.0 - alphas_cumprod[1 : T + 2]
    if kind == "linear":
        scale = 1000.0 / (T + 1)
        return torch.linspace(scale * 1e-4, scale * 0.02, T + 1, dtype=torch.float64)
    if kind == "constant":
        return torch.ones(T + 1, dtype=torch.float64)
    raise ValueError(f"unknown theta schedule {kind!r} (choose cosine, linear or constant)")


def make_schedule(
    T: int = 100,
    max_sigma: float = 50.0,
    kind: str = "cosine",
    eps: float = 0.005,
) -> MRSDESchedule:
    """Build the schedule. ``max_sigma`` (λ) ≥ 1 is read in 0–255 units, as the official code does."""
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    lam = max_sigma / 255.0 if max_sigma >= 1 else max_sigma
    thetas = theta_schedule(kind, T)
    cum = torch.cumsum(thetas, 0) - thetas[0]  # S_t = Σ_{i=1..t}, so S_0 = 0
    dt = -math.log(eps) / float(cum[-1])
    return MRSDESchedule(thetas=thetas, cum_thetas=cum, dt=dt, max_sigma=lam)


# ---------------------------------------------------------------------------------------------
# Scalars of the schedule (float64 Python numbers: per-sample tensors are built by the callers).
# ---------------------------------------------------------------------------------------------


def theta_bar(sched: MRSDESchedule, t: int) -> float:
    """θ̄_t = S_t·dt, the integrated mean-reversion rate from 0 to t."""
    return float(sched.cum_thetas[t]) * sched.dt


def integrated_theta(sched: MRSDESchedule, t: int, s: int) -> float:
    """Θ = ∫_s^t θ = (S_t − S_s)·dt; for s = t−1 this is θ_t·dt (fact sheet §1.4, issue #10)."""
    return (float(sched.cum_thetas[t]) - float(sched.cum_thetas[s])) * sched.dt


def marginal_std(sched: MRSDESchedule, t: int) -> float:
    """σ̄_t = λ √(1 − e^{−2θ̄_t}) (eq. 2)."""
    return sched.max_sigma * math.sqrt(-math.expm1(-2.0 * theta_bar(sched, t)))


def _per_sample(values: list[float], like: Tensor) -> Tensor:
    """Broadcast one scalar per batch item to the shape of ``like`` (B, 1, 1, 1)."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(
        -1, *[1] * (like.ndim - 1)
    )


Timestep = int | Sequence[int]


def _factor(fn: Callable[..., float], like: Tensor, *steps: Timestep) -> float | Tensor:
    """``fn(sched-bound, *steps)`` as a Python float for integer timesteps (the samplers), or as a
    per-sample (B,1,1,1) tensor for one timestep per batch item (the training loss)."""
    if all(isinstance(v, int) for v in steps):
        return fn(*steps)
    return _per_sample([fn(*vals) for vals in zip(*steps, strict=True)], like)


# ---------------------------------------------------------------------------------------------
# Forward process
# ---------------------------------------------------------------------------------------------


def marginal_mean(x0: Tensor, mu: Tensor, sched: MRSDESchedule, t: Timestep) -> Tensor:
    """m_t = μ + (x_0 − μ) e^{−θ̄_t} (eq. 2)."""
    return mu + (x0 - mu) * _factor(lambda ti: math.exp(-theta_bar(sched, ti)), x0, t)


def forward_sample(
    x0: Tensor, mu: Tensor, sched: MRSDESchedule, t: Timestep, noise: Tensor
) -> Tensor:
    """x_t = m_t + σ̄_t ε: a draw from the forward marginal (training states, fact sheet §1.3)."""
    std = _factor(lambda ti: marginal_std(sched, ti), x0, t)
    return marginal_mean(x0, mu, sched, t) + std * noise


def terminal_sample(mu: Tensor, sched: MRSDESchedule, noise: Tensor) -> Tensor:
    """x_T = μ + λ z: the start of every sampler (the eps·(x_0 − μ) remainder is unknown, dropped)."""
    return mu + sched.max_sigma * noise


# ---------------------------------------------------------------------------------------------
# Noise prediction → score / clean estimate
# ---------------------------------------------------------------------------------------------


def score_from_noise(eps_hat: Tensor, sched: MRSDESchedule, t: Timestep) -> Tensor:
    """ŝ = −ε̂/σ̄_t: the score of N(m_t, σ̄_t²) when x_t = m_t + σ̄_t ε (code's convention, §1.5)."""
    return -eps_hat / _factor(lambda ti: marginal_std(sched, ti), eps_hat, t)


def x0_from_noise(x_t: Tensor, mu: Tensor, eps_hat: Tensor, sched: MRSDESchedule, t: int) -> Tensor:
    """x̂_0 = μ + (x_t − μ − σ̄_t ε̂) e^{θ̄_t}: eq. 2 solved for x_0."""
    return mu + (x_t - mu - marginal_std(sched, t) * eps_hat) * math.exp(theta_bar(sched, t))


# ---------------------------------------------------------------------------------------------
# Optimal reverse state (IR-SDE Prop. 3.1), used by the training loss and the posterior sampler
# ---------------------------------------------------------------------------------------------


def _posterior_coefficients(sched: MRSDESchedule, t: int, s: int) -> tuple[float, float, float]:
    """Coefficients of p(x_s | x_t, x_0) for s < t: (weight on x_t − μ, weight on x_0 − μ, std).

    With A = e^{−Θ}, B = e^{−θ̄_t}, C = e^{−θ̄_s}:
    mean − μ = A(1−C²)/(1−B²)·(x_t − μ) + C(1−A²)/(1−B²)·(x_0 − μ),
    var = λ²(1−A²)(1−C²)/(1−B²).  At s = 0, C = 1 and the mean is x_0 with zero variance.
    """
    if not 0 <= s < t <= sched.T:
        raise ValueError(f"need 0 <= s < t <= T, got s={s}, t={t}")
    one_minus_a2 = -math.expm1(-2.0 * integrated_theta(sched, t, s))
    one_minus_b2 = -math.expm1(-2.0 * theta_bar(sched, t))
    one_minus_c2 = -math.expm1(-2.0 * theta_bar(sched, s))
    a = math.exp(-integrated_theta(sched, t, s))
    c = math.exp(-theta_bar(sched, s))
    coef_xt = a * one_minus_c2 / one_minus_b2
    coef_x0 = c * one_minus_a2 / one_minus_b2
    var = sched.max_sigma**2 * one_minus_a2 * one_minus_c2 / one_minus_b2
    return coef_xt, coef_x0, math.sqrt(max(var, 0.0))


def optimal_reverse_state(
    x_t: Tensor, x0: Tensor, mu: Tensor, sched: MRSDESchedule, t: Timestep, s: Timestep
) -> Tensor:
    """x*_s: the mean of p(x_s | x_t, x_0) — the target of Refusion's matching loss (eq. 6)."""
    coef_xt = _factor(lambda ti, si: _posterior_coefficients(sched, ti, si)[0], x_t, t, s)
    coef_x0 = _factor(lambda ti, si: _posterior_coefficients(sched, ti, si)[1], x_t, t, s)
    return mu + coef_xt * (x_t - mu) + coef_x0 * (x0 - mu)


def posterior_std(sched: MRSDESchedule, t: int, s: int) -> float:
    """Standard deviation of p(x_s | x_t, x_0); 0 when s = 0."""
    return _posterior_coefficients(sched, t, s)[2]


# ---------------------------------------------------------------------------------------------
# Reverse updates (one pure function each) — shared by the samplers and the training loss
# ---------------------------------------------------------------------------------------------


def reverse_sde_mean(
    x_t: Tensor, mu: Tensor, score: Tensor, sched: MRSDESchedule, t: Timestep, s: Timestep
) -> Tensor:
    """Drift part of one Euler–Maruyama step of the reverse SDE (eq. 3), from t down to s:

    x_s = x_t − [θ(μ − x_t) − σ² ŝ] dt  with θ·dt → Θ and σ²·dt = 2λ²Θ.
    """
    big_theta = _factor(lambda ti, si: integrated_theta(sched, ti, si), x_t, t, s)
    return x_t - (big_theta * (mu - x_t) - 2.0 * sched.max_sigma**2 * big_theta * score)


def reverse_sde_noise_scale(sched: MRSDESchedule, t: int, s: int) -> float:
    """σ√dt of the Euler–Maruyama step (√(2λ²Θ)); noise is added even on the last step, as the code."""
    return math.sqrt(2.0 * sched.max_sigma**2 * integrated_theta(sched, t, s))


def reverse_ode_step(
    x_t: Tensor, mu: Tensor, score: Tensor, sched: MRSDESchedule, t: int, s: int
) -> Tensor:
    """One Euler step of the probability-flow ODE: x_s = x_t − [θ(μ − x_t) − ½σ² ŝ] dt."""
    big_theta = integrated_theta(sched, t, s)
    return x_t - (big_theta * (mu - x_t) - sched.max_sigma**2 * big_theta * score)


def timesteps(T: int, steps: int) -> list[int]:
    """Descending timesteps T = t_0 > t_1 > … > t_steps = 0, evenly spaced; steps = T visits all."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    grid = torch.linspace(T, 0, steps + 1, dtype=torch.float64).round().long().tolist()
    return [int(v) for v in grid]


# ---------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------


def gaussian_noise(generator: torch.Generator | None) -> NoiseFn:
    """The noise source of one run: ``noise(x)`` is a standard normal tensor shaped like ``x``,
    drawn on the generator's device then moved, so the bytes are the same whatever the tiling
    and, on CPU, whatever the model's device. Methods that need another source (stereo: one
    generator per view) pass their own callable."""

    def noise(x: Tensor) -> Tensor:
        gen_device = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(
            x.device
        )

    return noise


# ---------------------------------------------------------------------------------------------
# In-place steps: the samplers' updates on their own state buffer
# ---------------------------------------------------------------------------------------------
#
# Written with the pure functions above, one update allocates five or six full-size temporaries;
# tiled restores of large images then hold a dozen image-sized buffers at once, while the
# network's own memory follows the tile. The steps below apply the same float operations in the
# same order to the same operands (x − y as x.sub_(y), c·x as x.mul_(c), μ + v as v.add_(μ):
# IEEE addition and multiplication are commutative, so the bytes are those of the pure
# functions), keeping one temporary besides the state, μ and ε̂.


def _owned(eps_hat: Tensor, *inputs: Tensor) -> Tensor:
    """ε̂, or a copy of it when it shares memory with one of the model's inputs (a network
    that returns its input): the in-place steps overwrite ε̂."""
    shared = any(
        eps_hat.untyped_storage().data_ptr() == a.untyped_storage().data_ptr() for a in inputs
    )
    return eps_hat.clone() if shared else eps_hat


def reverse_euler_step_(
    x: Tensor,
    mu: Tensor,
    eps_hat: Tensor,
    sched: MRSDESchedule,
    t: int,
    s: int,
    score_weight: float,
) -> Tensor:
    """x ← x − [Θ(μ − x) − w·λ²Θ·ŝ] with ŝ = −ε̂/σ̄_t, in place; ε̂ is overwritten.

    w = 2 is :func:`reverse_sde_mean` (the drift of the reverse SDE), w = 1
    :func:`reverse_ode_step` (the probability-flow ODE), bit for bit."""
    big_theta = integrated_theta(sched, t, s)
    score = eps_hat.neg_().div_(marginal_std(sched, t))
    drift = torch.sub(mu, x).mul_(big_theta)
    drift.sub_(score.mul_(score_weight * sched.max_sigma**2 * big_theta))
    return x.sub_(drift)


def posterior_step_(
    x: Tensor, mu: Tensor, eps_hat: Tensor, sched: MRSDESchedule, t: int, s: int
) -> Tensor:
    """x ← x*_s(x_t, x̂_0(ε̂)), the mean of the posterior step, in place; ε̂ is overwritten.

    Bit for bit ``optimal_reverse_state(x, x0_from_noise(x, μ, ε̂, t), μ, t, s)``."""
    x0_hat = torch.sub(x, mu).sub_(eps_hat.mul_(marginal_std(sched, t)))
    x0_hat.mul_(math.exp(theta_bar(sched, t))).add_(mu)
    del eps_hat
    coef_xt, coef_x0, _ = _posterior_coefficients(sched, t, s)
    x.sub_(mu).mul_(coef_xt).add_(mu)
    return x.add_(x0_hat.sub_(mu).mul_(coef_x0))


# ---------------------------------------------------------------------------------------------
# Samplers (k-diffusion style: the model is any callable, progress comes through a callback)
# ---------------------------------------------------------------------------------------------
#
# Each sampler takes x_T over as its state: it is updated in place and returned (callers pass a
# fresh tensor, as :func:`terminal_sample` makes, and clone it to keep it). The model's output
# is a fresh tensor the step may overwrite, and is dropped before the next model call.


@torch.no_grad()
def sample_sde(
    model: NoiseModel,
    x: Tensor,
    mu: Tensor,
    sched: MRSDESchedule,
    grid: list[int],
    noise: NoiseFn,
    callback: StepCallback | None = None,
) -> Tensor:
    """Reverse-time SDE, Euler–Maruyama (Refusion eq. 3; ``IRSDE.reverse_sde``), over the
    descending timesteps ``grid`` (:func:`timesteps`); x (x_T) is updated in place."""
    steps = len(grid) - 1
    for i, (t, s) in enumerate(itertools.pairwise(grid)):
        reverse_euler_step_(x, mu, _owned(model(x, t), x, mu), sched, t, s, score_weight=2.0)
        x.add_(reverse_sde_noise_scale(sched, t, s) * noise(x))
        if callback is not None:
            callback(i, steps, x)
    return x


@torch.no_grad()
def sample_ode(
    model: NoiseModel,
    x: Tensor,
    mu: Tensor,
    sched: MRSDESchedule,
    grid: list[int],
    noise: NoiseFn,
    callback: StepCallback | None = None,
) -> Tensor:
    """Probability-flow ODE, Euler (``IRSDE.reverse_ode``); deterministic after x_T, which is
    updated in place."""
    steps = len(grid) - 1
    for i, (t, s) in enumerate(itertools.pairwise(grid)):
        reverse_euler_step_(x, mu, _owned(model(x, t), x, mu), sched, t, s, score_weight=1.0)
        if callback is not None:
            callback(i, steps, x)
    return x


@torch.no_grad()
def sample_posterior(
    model: NoiseModel,
    x: Tensor,
    mu: Tensor,
    sched: MRSDESchedule,
    grid: list[int],
    noise: NoiseFn,
    callback: StepCallback | None = None,
) -> Tensor:
    """Posterior sampling (``IRSDE.reverse_posterior``): x_s ~ p(x_s | x_t, x̂_0) with x̂_0 from ε̂;
    x (x_T) is updated in place.

    Exact for any s < t, so it is the natural sampler for fewer steps than T; the last step
    (s = 0) is deterministic and returns x̂_0.
    """
    steps = len(grid) - 1
    for i, (t, s) in enumerate(itertools.pairwise(grid)):
        posterior_step_(x, mu, _owned(model(x, t), x, mu), sched, t, s)
        std = posterior_std(sched, t, s)
        if std > 0:
            x.add_(std * noise(x))
        if callback is not None:
            callback(i, steps, x)
    return x


#: The family's samplers, one face: ``sampler(model, x_T, μ, schedule, grid, noise, callback)``
#: with ``model(x, t)`` (μ and conditioning already bound) and ``noise(like)``.
SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "sde": sample_sde,
    "ode": sample_ode,
    "posterior": sample_posterior,
}
