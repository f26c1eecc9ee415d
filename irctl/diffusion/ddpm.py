"""The DDPM family as DiffIR uses it on its 256-value prior (Xia et al. ICCV 2023, §4.2; fact
sheet §2): few steps (T = 4), a schedule linear in √β (Latent Diffusion's "linear"), a network
that predicts the clean vector x0, and deterministic reverse steps — the posterior mean with no
noise added (the paper's Table 4: injecting noise does not help).

Pure functions of a :class:`DDPMSchedule`; the model is a callable ``model(z_t, t) → x̂0`` with
its conditioning bound. Coefficients are kept in float64 and cast to the state's dtype at each
step: in float32 that is exactly the official code's float32 buffers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: model(z_t, t) → x̂0, t an N-vector of integer steps
X0Model = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class DDPMConfig:
    """``[diffusion]`` of a DiffIR preset (official: timesteps, linear_start, linear_end)."""

    T: int = 4
    linear_start: float = 0.1
    linear_end: float = 0.99

    def __post_init__(self) -> None:
        if self.T < 1 or not 0.0 < self.linear_start <= self.linear_end < 1.0:
            raise ValueError(f"invalid DDPM schedule: {self}")

    def build(self) -> DDPMSchedule:
        return ddpm_schedule(self.T, self.linear_start, self.linear_end)


@dataclass(frozen=True)
class DDPMSchedule:
    """Per-step float64 tensors of length T (index t = 0 … T−1)."""

    betas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor
    posterior_mean_coef1: Tensor  # c1_t = β_t √ᾱ_{t−1} / (1 − ᾱ_t)
    posterior_mean_coef2: Tensor  # c2_t = (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t)

    @property
    def T(self) -> int:
        return int(self.betas.shape[0])

    def buffers(self) -> dict[str, Tensor]:
        """Every coefficient the official DDPM registers as a buffer, under its official name,
        so an imported checkpoint's copies can be checked against what irctl computes."""
        betas, acp, prev = self.betas, self.alphas_cumprod, self.alphas_cumprod_prev
        var = betas * (1.0 - prev) / (1.0 - acp)
        derived = {
            "log_one_minus_alphas_cumprod": torch.log(1.0 - acp),
            "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / acp),
            "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / acp - 1),
            "posterior_variance": var,
            "posterior_log_variance_clipped": torch.log(var.clamp(min=1e-20)),
        }
        own = {
            name: getattr(self, name)
            for name in (
                "betas",
                "alphas_cumprod",
                "alphas_cumprod_prev",
                "sqrt_alphas_cumprod",
                "sqrt_one_minus_alphas_cumprod",
                "posterior_mean_coef1",
                "posterior_mean_coef2",
            )
        }
        return {k: v.float() for k, v in {**own, **derived}.items()}


def ddpm_schedule(T: int, linear_start: float, linear_end: float) -> DDPMSchedule:
    """β_i = (√start + i·(√end − √start)/(T − 1))², i = 0 … T−1 (linear in √β; DiffIR's T = 4,
    0.1 → 0.99 gives β = [0.1, 0.2943, 0.5910, 0.99]), and the posterior-mean coefficients."""
    root = torch.linspace(math.sqrt(linear_start), math.sqrt(linear_end), T, dtype=torch.float64)
    betas = root**2
    alphas = 1.0 - betas
    acp = torch.cumprod(alphas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    return DDPMSchedule(
        betas=betas,
        alphas_cumprod=acp,
        alphas_cumprod_prev=prev,
        sqrt_alphas_cumprod=acp.sqrt(),
        sqrt_one_minus_alphas_cumprod=(1.0 - acp).sqrt(),
        posterior_mean_coef1=betas * prev.sqrt() / (1.0 - acp),
        posterior_mean_coef2=(1.0 - prev) * alphas.sqrt() / (1.0 - acp),
    )


def q_sample(x0: Tensor, t: int, noise: Tensor, schedule: DDPMSchedule) -> Tensor:
    """z_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε (training starts the chain from t = T − 1)."""
    a = schedule.sqrt_alphas_cumprod[t].to(x0)
    s = schedule.sqrt_one_minus_alphas_cumprod[t].to(x0)
    return a * x0 + s * noise


def posterior_mean_step(x0_hat: Tensor, z_t: Tensor, t: int, schedule: DDPMSchedule) -> Tensor:
    """z_{t−1} = c1_t x̂0 + c2_t z_t: the mean of q(z_{t−1} | z_t, x̂0), no noise added."""
    c1 = schedule.posterior_mean_coef1[t].to(z_t)
    c2 = schedule.posterior_mean_coef2[t].to(z_t)
    return c1 * x0_hat + c2 * z_t


def sample_posterior_mean(model: X0Model, z_T: Tensor, schedule: DDPMSchedule) -> Tensor:
    """Every step t = T−1 … 0 from ``z_T``; the last (c1 = 1, c2 = 0) returns x̂0 itself.
    Differentiable: DiffIR trains through the whole chain."""
    z = z_T
    n = z_T.shape[0]
    for t in reversed(range(schedule.T)):
        steps = torch.full((n,), t, dtype=torch.long, device=z_T.device)
        z = posterior_mean_step(model(z, steps), z, t, schedule)
    return z
