"""DDIM on the linear-β DDPM (irctl/diffusion/ddim.py) against DTPM's fact sheet §4 / A4 and the
DDIM and DDPM papers.

Reference values are computed here independently (numpy float64 cumprod of the linear β, the
DDPM posterior of Ho et al. Eq. 7, grids written out by hand), and the samplers are run with
oracle models that know the clean signal, so a wrong coefficient shows up as a mismatch rather
than being checked against itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from irctl.diffusion import ddim

T = 1000
SHAPE = (2, 3, 6, 5)


@pytest.fixture(scope="module")
def sched() -> ddim.DDIMSchedule:
    return ddim.linear_schedule(T, 1e-4, 0.02)


@pytest.fixture(scope="module")
def ref_acp() -> np.ndarray:
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, T, dtype=np.float64))


def _x0(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(SHAPE, generator=g, dtype=torch.float64) * 2 - 1


def _acp_at(sched: ddim.DDIMSchedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sched.alphas_cumprod[t].to(like).view(-1, *([1] * (like.ndim - 1)))


def _eps_oracle(sched: ddim.DDIMSchedule, x0: torch.Tensor):
    """ε̂ = (x_t − √ᾱ_t x0)/√(1 − ᾱ_t): the exact noise for a known x0."""

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = _acp_at(sched, t, x)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    return model


def _x0_oracle(x0: torch.Tensor):
    return lambda x, t: x0.clone()


def _toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Not an oracle: a smooth function of x and t, so the chain depends on every step."""
    return torch.tanh(0.7 * x + t.to(x).view(-1, 1, 1, 1) / T)


# --- timestep grid -------------------------------------------------------------------------------


def test_grids_for_4_10_and_50_steps_are_the_documented_leading_ones() -> None:
    assert ddim.ddim_timesteps(T, 4) == [750, 500, 250, 0]
    assert ddim.ddim_timesteps(T, 10) == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    fifty = ddim.ddim_timesteps(T, 50)
    assert fifty[:3] == [980, 960, 940] and fifty[-3:] == [40, 20, 0]
    assert fifty == [980 - 20 * i for i in range(50)]
    assert ddim.ddim_timesteps(T, T) == list(range(T - 1, -1, -1))
    assert ddim.ddim_timesteps(T, 1) == [0]


@pytest.mark.parametrize("steps", [0, -4, T + 1])
def test_steps_outside_one_to_T_are_refused(steps: int) -> None:
    with pytest.raises(ValueError, match=r"steps must be between 1 and T=1000"):
        ddim.ddim_timesteps(T, steps)


# --- schedule ------------------------------------------------------------------------------------


def test_schedule_matches_the_closed_form_product(sched, ref_acp) -> None:
    assert sched.T == T
    assert sched.alphas_cumprod.dtype == torch.float64
    assert sched.betas[0].item() == 1e-4 and math.isclose(sched.betas[-1].item(), 0.02)
    assert math.isclose(sched.alpha_bar(0), 1 - 1e-4, rel_tol=0, abs_tol=1e-15)
    assert math.isclose(sched.alpha_bar(999), ref_acp[999], rel_tol=1e-12)
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), ref_acp, rtol=1e-12, atol=0)
    assert sched.alpha_bar(-1) == 1.0


def test_schedule_is_strictly_decreasing_in_zero_one(sched) -> None:
    acp = sched.alphas_cumprod
    assert bool((acp[1:] < acp[:-1]).all())
    assert 0 < acp[-1] < acp[0] < 1


def test_bad_schedules_and_timesteps_are_refused(sched) -> None:
    with pytest.raises(ValueError, match="invalid linear schedule"):
        ddim.linear_schedule(T, 0.02, 1e-4)
    with pytest.raises(ValueError, match="invalid linear schedule"):
        ddim.linear_schedule(0)
    with pytest.raises(ValueError, match="timestep"):
        sched.alpha_bar(T)


# --- sampler with oracle models ------------------------------------------------------------------


@pytest.mark.parametrize("steps", [4, 10, 50])
def test_eta_zero_with_the_true_noise_returns_x0(sched, steps: int) -> None:
    x0 = _x0()
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = ddim.sample_ddim(_eps_oracle(sched, x0), x_T, sched, steps)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [4, 10, 50])
def test_x0_prediction_with_the_true_x0_returns_x0(sched, steps: int) -> None:
    x0 = _x0()
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = ddim.sample_ddim(_x0_oracle(x0), x_T, sched, steps, prediction="x0")
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_the_deterministic_path_stays_on_the_forward_marginal_of_x_T(sched, prediction) -> None:
    """With an oracle and η = 0, every state is √ᾱ_{t'} x0 + √(1−ᾱ_{t'}) ε with the same
    ε = (x_T − √ᾱ_T x0)/√(1−ᾱ_T): DDIM's non-Markovian forward process (DDIM Eq. 7)."""
    x0 = _x0()
    model = _eps_oracle(sched, x0) if prediction == "epsilon" else _x0_oracle(x0)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a_T = sched.alpha_bar(750)
    eps = (x_T - math.sqrt(a_T) * x0) / math.sqrt(1 - a_T)
    states: list[torch.Tensor] = []
    ddim.sample_ddim(
        model,
        x_T,
        sched,
        4,
        prediction=prediction,
        callback=lambda i, n, x: states.append(x.clone()),
    )
    assert len(states) == 4
    for t_prev, x in zip([500, 250, 0], states, strict=False):
        a = sched.alpha_bar(t_prev)
        torch.testing.assert_close(
            x, math.sqrt(a) * x0 + math.sqrt(1 - a) * eps, rtol=0, atol=1e-12
        )
    torch.testing.assert_close(states[-1], x0, rtol=0, atol=1e-12)


# --- determinism and noise -----------------------------------------------------------------------


def test_eta_zero_is_deterministic_and_draws_nothing(sched) -> None:
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    before = x_T.clone()
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state()
    a = ddim.sample_ddim(_toy_model, x_T, sched, 10, eta=0.0, generator=gen)
    b = ddim.sample_ddim(_toy_model, x_T, sched, 10, eta=0.0, generator=gen)
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert torch.equal(gen.get_state(), state)
    assert torch.equal(x_T, before)


def test_eta_positive_follows_the_seed(sched) -> None:
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))

    def run(seed: int) -> bytes:
        gen = torch.Generator().manual_seed(seed)
        return (
            ddim.sample_ddim(_toy_model, x_T, sched, 10, eta=0.5, generator=gen).numpy().tobytes()
        )

    assert run(11) == run(11)
    assert run(11) != run(12)
    deterministic = ddim.sample_ddim(_toy_model, x_T, sched, 10).numpy().tobytes()
    assert run(11) != deterministic


# --- the step ------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [1, 2, 10, 250, 500, 999])
def test_eta_one_on_consecutive_steps_is_the_ddpm_posterior(sched, ref_acp, t: int) -> None:
    """σ² = β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t (Ho et al. Eq. 7), and the mean is the posterior mean
    c1 x̂0 + c2 x_t, c1 = β_t√ᾱ_{t−1}/(1−ᾱ_t), c2 = (1−ᾱ_{t−1})√α_t/(1−ᾱ_t)."""
    beta = np.linspace(1e-4, 0.02, T, dtype=np.float64)[t]
    a_t, a_prev = ref_acp[t], ref_acp[t - 1]
    var = (1 - a_prev) / (1 - a_t) * beta
    assert math.isclose(ddim.ddim_sigma(sched, t, t - 1, 1.0) ** 2, var, rel_tol=1e-9)

    x_t = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    eps_hat = _toy_model(x_t, torch.full((SHAPE[0],), t))
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t + 1), dtype=torch.float64)
    noisy, x0_hat = ddim.ddim_step(x_t, eps_hat, t, t - 1, sched, eta=1.0, noise=z)
    mean, _ = ddim.ddim_step(x_t, eps_hat, t, t - 1, sched, eta=1.0, noise=torch.zeros(SHAPE))
    c1 = beta * math.sqrt(a_prev) / (1 - a_t)
    c2 = (1 - a_prev) * math.sqrt(1 - beta) / (1 - a_t)
    torch.testing.assert_close(mean, c1 * x0_hat + c2 * x_t, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(noisy - mean, math.sqrt(var) * z, rtol=1e-9, atol=1e-12)


def test_eta_zero_has_no_sigma_and_the_last_step_none_for_any_eta(sched) -> None:
    assert ddim.ddim_sigma(sched, 750, 500, 0.0) == 0.0
    assert ddim.ddim_sigma(sched, 0, -1, 1.0) == 0.0


@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_the_step_to_minus_one_returns_x0_hat_itself(sched, prediction: str) -> None:
    x_t = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    output = _toy_model(x_t, torch.zeros(SHAPE[0], dtype=torch.long))
    x_prev, x0_hat = ddim.ddim_step(x_t, output, 0, -1, sched, eta=1.0, prediction=prediction)
    assert torch.equal(x_prev, x0_hat)
    a0 = 1 - 1e-4
    expected = output if prediction == "x0" else (x_t - math.sqrt(1 - a0) * output) / math.sqrt(a0)
    torch.testing.assert_close(x0_hat, expected, rtol=1e-12, atol=1e-12)


def test_the_two_parameterisations_give_the_same_step(sched) -> None:
    """An x0-predicting model and the ε-predicting model it implies take the same step."""
    x_t = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    eps_hat = _toy_model(x_t, torch.full((SHAPE[0],), 500))
    a = sched.alpha_bar(500)
    x0_hat = (x_t - math.sqrt(1 - a) * eps_hat) / math.sqrt(a)
    by_eps, _ = ddim.ddim_step(x_t, eps_hat, 500, 250, sched)
    by_x0, _ = ddim.ddim_step(x_t, x0_hat, 500, 250, sched, prediction="x0")
    torch.testing.assert_close(by_eps, by_x0, rtol=1e-12, atol=1e-12)


def test_bad_step_arguments_are_refused(sched) -> None:
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="needs a noise tensor"):
        ddim.ddim_step(x, x, 500, 250, sched, eta=0.5)
    with pytest.raises(ValueError, match="eta must be in"):
        ddim.ddim_step(x, x, 500, 250, sched, eta=-0.1)
    with pytest.raises(ValueError, match="prediction must be one of"):
        ddim.sample_ddim(_toy_model, x, sched, 4, prediction="v")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="goes down"):
        ddim.ddim_step(x, x, 250, 500, sched)


# --- forward process -----------------------------------------------------------------------------


def test_q_sample_uses_each_samples_own_step(sched, ref_acp) -> None:
    x0 = _x0()
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    t = torch.tensor([0, 999])
    x_t = ddim.q_sample(x0, t, noise, sched)
    for i, step in enumerate(t.tolist()):
        a = ref_acp[step]
        expected = math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i]
        torch.testing.assert_close(x_t[i], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_eps_oracle(sched, x0)(x_t, t), noise, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="one step per sample"):
        ddim.q_sample(x0, torch.tensor(3), noise, sched)
