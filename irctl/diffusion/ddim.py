"""DDIM sampling (Song, Meng & Ermon, ICLR 2021) on a DDPM with a linear β schedule, as DTPM
uses it (Ye et al. CVPR 2024, §4.1; fact sheet §4 and rows A2/A4): T = 1000, β_t linear from
1e-4 to 0.02 (Ho et al. 2020), 4, 10 or 50 DDIM steps on the leading grid {T−k, …, k, 0}.

Notation follows Song et al.: ᾱ_t = ∏_{i≤t} (1 − β_i) is *their* α_t (DDIM Eq. 12 writes α for
the cumulative product); t runs over 0 … T−1, and the step after t = 0 goes to t' = −1, where
ᾱ_{−1} := 1 (the clean signal).

Pure functions of a :class:`DDIMSchedule`; the model is a callable ``model(x_t, t) → prediction``
with its conditioning bound, t an N-vector of integer steps. It predicts either the noise ε
(``prediction="epsilon"``, the paper's f_θ) or the clean signal x0 (``prediction="x0"``).
Coefficients are computed in float64 and applied as Python floats, so they take the state's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from irctl.diffusion.mrsde import StepCallback, gaussian_noise

#: model(x_t, t) → ε̂ or x̂0, t an N-vector of integer steps
PredictionModel = Callable[[Tensor, Tensor], Tensor]
#: What the model predicts: the noise ε (DDIM Eq. 12 as written) or the clean signal x0.
Prediction = Literal["epsilon", "x0"]
PREDICTIONS: tuple[str, ...] = ("epsilon", "x0")


@dataclass(frozen=True)
class DDIMSchedule:
    """Per-step float64 tensors of length T (index t = 0 … T−1)."""

    betas: Tensor
    alphas_cumprod: Tensor  # ᾱ_t = ∏_{i=0..t} (1 − β_i)  (Ho et al. Eq. 4; DDIM's α_t)

    @property
    def T(self) -> int:
        return int(self.betas.shape[0])

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a float64 Python float, with ᾱ_{−1} = 1 (the step after t = 0)."""
        if t == -1:
            return 1.0
        if not 0 <= t < self.T:
            raise ValueError(f"timestep must be -1 or in 0..{self.T - 1}, got {t}")
        return float(self.alphas_cumprod[t])


def linear_schedule(
    T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> DDIMSchedule:
    """β_t = linspace(β_start, β_end, T) (Ho et al. §4: linear 1e-4 → 0.02 over T = 1000) and
    ᾱ_t = ∏_{i≤t} (1 − β_i) (Ho et al. Eq. 4; DTPM Eq. 2), computed in float64."""
    if T < 1 or not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"invalid linear schedule: T={T}, beta_start={beta_start}, beta_end={beta_end} "
            "(need T >= 1 and 0 < beta_start <= beta_end < 1)"
        )
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return DDIMSchedule(betas=betas, alphas_cumprod=torch.cumprod(1.0 - betas, dim=0))


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """The leading grid of DDIM's official code and WeatherDiff (fact sheet A4): k = T // steps,
    descending [(steps−1)·k, …, 2k, k, 0]; T = 1000, steps = 4 gives [750, 500, 250, 0].
    Exactly ``steps`` entries; steps = T visits every timestep."""
    if not 1 <= steps <= T:
        raise ValueError(f"DDIM steps must be between 1 and T={T}, got {steps}")
    k = T // steps
    return [i * k for i in reversed(range(steps))]


def ddim_sigma(schedule: DDIMSchedule, t: int, t_prev: int, eta: float) -> float:
    """σ_t(η) = η·√((1 − ᾱ_{t'})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t'}) (DDIM Eq. 16 on the sub-sequence).
    η = 1 with t' = t − 1 is the DDPM posterior variance β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t
    (Ho et al. Eq. 7); η = 0 is DDIM."""
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    return eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t)) * math.sqrt(1.0 - a_t / a_prev)


def _check(eta: float, prediction: str) -> None:
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = DDIM, 1 = DDPM), got {eta}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def split_prediction(
    x_t: Tensor, output: Tensor, t: int, schedule: DDIMSchedule, prediction: Prediction
) -> tuple[Tensor, Tensor]:
    """(x̂0, ε̂) from the model's output at step t, both tied by x_t = √ᾱ_t x̂0 + √(1−ᾱ_t) ε̂
    (Ho et al. Eq. 4). ε-prediction: x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t (DDIM Eq. 9, the
    "predicted x0" of Eq. 12); x0-prediction: ε̂ = (x_t − √ᾱ_t x̂0)/√(1−ᾱ_t)."""
    a_t = schedule.alpha_bar(t)
    if prediction == "epsilon":
        return (x_t - math.sqrt(1.0 - a_t) * output) / math.sqrt(a_t), output
    if prediction == "x0":
        return output, (x_t - math.sqrt(a_t) * output) / math.sqrt(1.0 - a_t)
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def ddim_step(
    x_t: Tensor,
    output: Tensor,
    t: int,
    t_prev: int,
    schedule: DDIMSchedule,
    eta: float = 0.0,
    noise: Tensor | None = None,
    prediction: Prediction = "epsilon",
) -> tuple[Tensor, Tensor]:
    """One DDIM update t → t' (DDIM Eq. 12), returning (x_{t'}, x̂0):

        x_{t'} = √ᾱ_{t'}·x̂0 + √(1 − ᾱ_{t'} − σ²)·ε̂ + σ·z,   σ = :func:`ddim_sigma`.

    ``output`` is the model's prediction at (x_t, t); ``noise`` is z, needed only when σ > 0
    (η > 0 and t' ≥ 0). t' = −1 (ᾱ = 1) returns x̂0 itself as x_{t'}."""
    _check(eta, prediction)
    if not -1 <= t_prev < t:
        raise ValueError(f"a DDIM step goes down: need -1 <= t' < t, got t={t}, t'={t_prev}")
    x0_hat, eps_hat = split_prediction(x_t, output, t, schedule, prediction)
    if t_prev == -1:
        return x0_hat, x0_hat
    a_prev = schedule.alpha_bar(t_prev)
    sigma = ddim_sigma(schedule, t, t_prev, eta)
    # ≥ 0 in exact arithmetic for η ≤ 1: (1−ᾱ_{t'})·ᾱ_t(1−ᾱ_{t'}) / (ᾱ_{t'}(1−ᾱ_t)) at η = 1.
    direction = math.sqrt(max(1.0 - a_prev - sigma**2, 0.0))
    x_prev = math.sqrt(a_prev) * x0_hat + direction * eps_hat
    if sigma > 0.0:
        if noise is None:
            raise ValueError(f"eta={eta} > 0 needs a noise tensor for the step {t} -> {t_prev}")
        x_prev = x_prev + sigma * noise
    return x_prev, x0_hat


def sample_ddim(
    model: PredictionModel,
    x_T: Tensor,
    schedule: DDIMSchedule,
    steps: int,
    eta: float = 0.0,
    prediction: Prediction = "epsilon",
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """DDIM over :func:`ddim_timesteps` from ``x_T`` (not modified), ending with t = 0 → −1;
    returns the final x̂0 (in DTPM the texture residual r̂₀ added to y_ε, fact sheet §4).

    Noise z is drawn from ``generator`` (on its device, as :func:`mrsde.gaussian_noise`) only for
    steps with σ > 0, so η = 0 draws nothing and is deterministic given x_T. ``callback(i, n, x)``
    runs after each of the n steps with the new state. No gradient mode is set: callers sample
    under ``torch.inference_mode()`` or differentiate through the chain.
    """
    _check(eta, prediction)
    grid = ddim_timesteps(schedule.T, steps)
    draw = gaussian_noise(generator)
    x, x0_hat = x_T, x_T
    n = x_T.shape[0]
    for i, t in enumerate(grid):
        t_prev = grid[i + 1] if i + 1 < len(grid) else -1
        t_vec = torch.full((n,), t, dtype=torch.long, device=x.device)
        output = model(x, t_vec)
        z = draw(x) if ddim_sigma(schedule, t, t_prev, eta) > 0.0 else None
        x, x0_hat = ddim_step(x, output, t, t_prev, schedule, eta, z, prediction)
        if callback is not None:
            callback(i, len(grid), x)
    return x0_hat


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, schedule: DDIMSchedule) -> Tensor:
    """x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε (Ho et al. Eq. 4; DTPM Eq. 4 with γ = ᾱ_t), one t per
    sample: ``t`` an N-vector of integer steps in 0 … T−1, broadcast over x0's other dims."""
    if t.ndim != 1 or t.shape[0] != x0.shape[0]:
        raise ValueError(f"t must be a vector of one step per sample, got shape {tuple(t.shape)}")
    acp = schedule.alphas_cumprod.to(device=x0.device)[t.long()]
    shape = (-1,) + (1,) * (x0.ndim - 1)
    a = acp.sqrt().to(x0.dtype).view(shape)
    s = (1.0 - acp).sqrt().to(x0.dtype).view(shape)
    return a * x0 + s * noise
