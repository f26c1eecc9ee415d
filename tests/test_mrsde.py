"""Mean-reverting SDE (irctl/diffusion/mrsde.py) against the Refusion fact sheet.

Reference values come from /work/shared/reference/refusion.md (§1.2 worked values for T=100,
cosine, eps=.005, λ=50) and from an independent re-implementation of the formulas below, so a
typo in the library (wrong exponent, off-by-one in S_t, swapped coefficients) shows up as a
mismatch rather than being checked against itself.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from allocations import LargeAllocations

from irctl.diffusion import mrsde

T = 100
LAM = 50.0 / 255.0


@pytest.fixture(scope="module")
def sched() -> mrsde.MRSDESchedule:
    return mrsde.make_schedule(T=T, max_sigma=50.0, kind="cosine", eps=0.005)


# --- independent reference implementation (fact sheet §1.2 / §1.4) ----------------------------


def ref_cosine_thetas(T: int) -> list[float]:
    n, s = T + 2, 0.008

    def f(k: int) -> float:
        return math.cos(((k / n) + s) / (1 + s) * math.pi / 2) ** 2

    return [1.0 - f(i + 1) / f(0) for i in range(T + 1)]


def ref_schedule(thetas: list[float], eps: float) -> tuple[list[float], float]:
    cum = [0.0]
    for th in thetas[1:]:
        cum.append(cum[-1] + th)
    return cum, -math.log(eps) / cum[-1]


def ref_posterior(cum: list[float], dt: float, lam: float, t: int, s: int):
    a = math.exp(-(cum[t] - cum[s]) * dt)
    b = math.exp(-cum[t] * dt)
    c = math.exp(-cum[s] * dt)
    coef_xt = a * (1 - c**2) / (1 - b**2)
    coef_x0 = c * (1 - a**2) / (1 - b**2)
    std = lam * math.sqrt((1 - a**2) * (1 - c**2) / (1 - b**2))
    return coef_xt, coef_x0, std


def _pair(shape=(1, 3, 16, 16), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=dtype)
    mu = x0 + 0.2 * torch.randn(shape, generator=g, dtype=dtype)
    noise = torch.randn(shape, generator=g, dtype=dtype)
    return x0, mu, noise


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10.0 * math.log10(float(((a - b) ** 2).mean()))


# --- schedule ------------------------------------------------------------------------------------


def test_cosine_schedule_worked_values(sched):
    """Fact sheet §1.2: T=100, cosine, eps=.005, λ=50."""
    assert sched.T == T
    assert sched.thetas.shape == (T + 1,)
    assert sched.cum_thetas.shape == (T + 1,)
    assert float(sched.cum_thetas[-1]) == pytest.approx(50.90, abs=0.005)
    assert sched.dt == pytest.approx(0.1041, abs=5e-5)
    assert mrsde.marginal_std(sched, 1) * 255 == pytest.approx(0.94, abs=0.005)
    assert mrsde.marginal_std(sched, T) * 255 == pytest.approx(50.0, abs=0.01)
    assert float(sched.thetas[0]) == pytest.approx(6.1e-4, rel=0.02)
    assert float(sched.thetas[1]) == pytest.approx(1.69e-3, rel=0.01)
    assert float(sched.thetas[T]) == pytest.approx(0.99977, abs=1e-5)
    # Per-step SDE noise σ_t√dt: 0.94/255 at t=1, 22.8/255 at t=T.
    assert mrsde.reverse_sde_noise_scale(sched, 1, 0) * 255 == pytest.approx(0.94, abs=0.005)
    assert mrsde.reverse_sde_noise_scale(sched, T, T - 1) * 255 == pytest.approx(22.8, abs=0.05)


def test_eps_trick_and_cumulative_sum(sched):
    # e^{−S_T·dt} == eps exactly (dt is defined that way).
    assert math.exp(-float(sched.cum_thetas[-1]) * sched.dt) == pytest.approx(0.005, rel=1e-12)
    assert mrsde.theta_bar(sched, T) == pytest.approx(-math.log(0.005), rel=1e-12)
    # S_0 = 0 and S_t = Σ_{i=1..t} θ_i (θ_0 excluded).
    assert float(sched.cum_thetas[0]) == 0.0
    for t in (1, 2, 37, T):
        assert float(sched.cum_thetas[t]) == pytest.approx(float(sched.thetas[1 : t + 1].sum()))
    assert float(sched.cum_thetas[1]) == pytest.approx(float(sched.thetas[1]), rel=1e-12)


def test_cosine_schedule_matches_reference_formula(sched):
    ref = ref_cosine_thetas(T)
    cum, dt = ref_schedule(ref, 0.005)
    assert sched.thetas.dtype == torch.float64
    assert torch.allclose(sched.thetas, torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=0)
    assert torch.allclose(sched.cum_thetas, torch.tensor(cum, dtype=torch.float64), atol=1e-12)
    assert sched.dt == pytest.approx(dt, rel=1e-12)
    # θ is increasing for cosine (1 − cumulative ᾱ).
    assert bool((sched.thetas[1:] > sched.thetas[:-1]).all())
    for t in (0, 1, 10, 50, T):
        expected = LAM * math.sqrt(1 - math.exp(-2 * cum[t] * dt))
        assert mrsde.marginal_std(sched, t) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert mrsde.marginal_std(sched, 0) == 0.0


def test_linear_and_constant_schedules():
    T_ = 50
    a = 1000.0 / (T_ + 1)
    lin = mrsde.theta_schedule("linear", T_)
    assert lin.shape == (T_ + 1,)
    assert float(lin[0]) == pytest.approx(a * 1e-4, rel=1e-12)
    assert float(lin[-1]) == pytest.approx(a * 0.02, rel=1e-12)
    steps = lin[1:] - lin[:-1]
    assert torch.allclose(steps, torch.full_like(steps, a * (0.02 - 1e-4) / T_), rtol=1e-9)

    const = mrsde.make_schedule(T=T_, max_sigma=0.1, kind="constant", eps=0.01)
    assert torch.equal(const.thetas, torch.ones(T_ + 1, dtype=torch.float64))
    # S_t = t, dt = −ln(eps)/T.
    assert torch.allclose(const.cum_thetas, torch.arange(T_ + 1, dtype=torch.float64))
    assert const.dt == pytest.approx(-math.log(0.01) / T_, rel=1e-12)
    assert mrsde.theta_bar(const, 10) == pytest.approx(10 * const.dt, rel=1e-12)


def test_max_sigma_units():
    assert mrsde.make_schedule(max_sigma=50.0).max_sigma == pytest.approx(50 / 255)
    assert mrsde.make_schedule(max_sigma=10).max_sigma == pytest.approx(10 / 255)
    assert mrsde.make_schedule(max_sigma=1.0).max_sigma == pytest.approx(1 / 255)  # λ ≥ 1 → /255
    assert mrsde.make_schedule(max_sigma=0.2).max_sigma == pytest.approx(0.2)  # already [0,1]


@pytest.mark.parametrize(
    "kwargs", [{"kind": "quadratic"}, {"eps": 0.0}, {"eps": 1.0}, {"eps": -0.1}, {"T": 0}]
)
def test_make_schedule_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        mrsde.make_schedule(**kwargs)


# --- forward process -----------------------------------------------------------------------------


def test_marginal_mean_matches_formula(sched):
    x0, mu, _ = _pair()
    cum, dt = ref_schedule(ref_cosine_thetas(T), 0.005)
    assert torch.equal(mrsde.marginal_mean(x0, mu, sched, 0), x0)
    for t in (1, 25, T):
        expected = mu + (x0 - mu) * math.exp(-cum[t] * dt)
        assert torch.allclose(mrsde.marginal_mean(x0, mu, sched, t), expected, atol=1e-12)
    # At T the mean is eps-close to μ, not equal to it.
    diff = mrsde.marginal_mean(x0, mu, sched, T) - mu
    assert torch.allclose(diff, 0.005 * (x0 - mu), atol=1e-12)


@pytest.mark.parametrize("t", [1, 5, 30, 70, T])
def test_forward_sample_empirical_moments(sched, t):
    """200k pixels of x_t: the empirical mean/std match m_t and σ̄_t within a few std errors."""
    n = 200_000
    g = torch.Generator().manual_seed(100 + t)
    x0 = torch.full((1, 1, 400, 500), 0.8, dtype=torch.float64)
    mu = torch.full_like(x0, 0.3)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    xt = mrsde.forward_sample(x0, mu, sched, t, noise)
    cum, dt = ref_schedule(ref_cosine_thetas(T), 0.005)
    mean = 0.3 + 0.5 * math.exp(-cum[t] * dt)
    std = LAM * math.sqrt(1 - math.exp(-2 * cum[t] * dt))
    assert float(xt.mean()) == pytest.approx(mean, abs=4 * std / math.sqrt(n))
    assert float(xt.std()) == pytest.approx(std, abs=4 * std / math.sqrt(2 * n))


def test_forward_sample_per_sample_timesteps(sched):
    ts = [1, 10, 55, T]
    per = 60_000
    g = torch.Generator().manual_seed(7)
    x0 = (
        torch.tensor([0.9, 0.1, 0.5, 0.7], dtype=torch.float64)
        .view(4, 1, 1, 1)
        .expand(4, 1, 200, 300)
    )
    mu = torch.tensor([0.2, 0.6, 0.5, 0.0], dtype=torch.float64).view(4, 1, 1, 1).expand_as(x0)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    xt = mrsde.forward_sample(x0, mu, sched, ts, noise)
    for i, t in enumerate(ts):
        m = float(mrsde.marginal_mean(x0[i : i + 1, :, :1, :1], mu[i : i + 1, :, :1, :1], sched, t))
        s = mrsde.marginal_std(sched, t)
        row = xt[i]
        assert float(row.mean()) == pytest.approx(m, abs=4 * s / math.sqrt(per))
        assert float(row.std()) == pytest.approx(s, abs=4 * s / math.sqrt(2 * per))
        # Row-by-row it is exactly the int form.
        assert torch.allclose(row, mrsde.forward_sample(x0[i], mu[i], sched, t, noise[i]))


def test_x0_from_noise_inverts_forward_sample(sched):
    x0, mu, noise = _pair(seed=3)
    for t in range(1, T + 1):
        xt = mrsde.forward_sample(x0, mu, sched, t, noise)
        rec = mrsde.x0_from_noise(xt, mu, noise, sched, t)
        assert torch.allclose(rec, x0, atol=1e-10, rtol=0), t


def test_terminal_sample(sched):
    _x0, mu, noise = _pair(seed=4)
    assert torch.allclose(mrsde.terminal_sample(mu, sched, noise), mu + LAM * noise, atol=1e-15)


# --- posterior -----------------------------------------------------------------------------------


def test_posterior_to_state_zero_is_x0(sched):
    x0, mu, noise = _pair(seed=5)
    for t in (1, 2, 17, T):
        xt = mrsde.forward_sample(x0, mu, sched, t, noise)
        out = mrsde.optimal_reverse_state(xt, x0, mu, sched, t, 0)
        assert torch.allclose(out, x0, atol=1e-12, rtol=0)
        assert mrsde.posterior_std(sched, t, 0) == 0.0
    # float32 too (what the samplers run in).
    x32, m32, n32 = (v.float() for v in _pair(seed=6))
    xt = mrsde.forward_sample(x32, m32, sched, 1, n32)
    assert torch.allclose(mrsde.optimal_reverse_state(xt, x32, m32, sched, 1, 0), x32, atol=1e-6)


def test_posterior_coefficients_match_reference(sched):
    cum, dt = ref_schedule(ref_cosine_thetas(T), 0.005)
    x0 = torch.tensor([[[[0.7]]]], dtype=torch.float64)
    mu = torch.tensor([[[[0.2]]]], dtype=torch.float64)
    xt = torch.tensor([[[[0.45]]]], dtype=torch.float64)
    for t, s in [(1, 0), (2, 1), (50, 49), (T, T - 1), (T, 60), (30, 3)]:
        cx, c0, std = ref_posterior(cum, dt, LAM, t, s)
        expected = 0.2 + cx * (0.45 - 0.2) + c0 * (0.7 - 0.2)
        got = float(mrsde.optimal_reverse_state(xt, x0, mu, sched, t, s))
        assert got == pytest.approx(expected, rel=1e-12)
        assert mrsde.posterior_std(sched, t, s) == pytest.approx(std, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("t,s", [(1, 1), (5, 6), (T + 1, 3), (4, -1)])
def test_posterior_rejects_bad_pairs(sched, t, s):
    with pytest.raises(ValueError):
        mrsde.posterior_std(sched, t, s)


def test_posterior_composes_to_forward_marginal_exactly(sched):
    """Gaussian product identity, analytically: if x_t ~ N(m_t, σ̄_t²) and x_s|x_t,x_0 has mean
    μ + a(x_t−μ) + b(x_0−μ) and std σ_p, then x_s ~ N(m_s, σ̄_s²)."""
    for t in range(2, T + 1, 7):
        for s in (0, 1, t // 2, t - 1):
            a = float(
                mrsde.optimal_reverse_state(
                    torch.ones(1, 1, 1, 1, dtype=torch.float64),
                    torch.zeros(1, 1, 1, 1, dtype=torch.float64),
                    torch.zeros(1, 1, 1, 1, dtype=torch.float64),
                    sched,
                    t,
                    s,
                )
            )
            b = float(
                mrsde.optimal_reverse_state(
                    torch.zeros(1, 1, 1, 1, dtype=torch.float64),
                    torch.ones(1, 1, 1, 1, dtype=torch.float64),
                    torch.zeros(1, 1, 1, 1, dtype=torch.float64),
                    sched,
                    t,
                    s,
                )
            )
            e_t = math.exp(-mrsde.theta_bar(sched, t))
            e_s = math.exp(-mrsde.theta_bar(sched, s))
            assert a * e_t + b == pytest.approx(e_s, rel=1e-10)  # mean
            var = a**2 * mrsde.marginal_std(sched, t) ** 2 + mrsde.posterior_std(sched, t, s) ** 2
            assert var == pytest.approx(mrsde.marginal_std(sched, s) ** 2, rel=1e-9, abs=1e-18)


@pytest.mark.parametrize("t,s", [(T, T - 1), (50, 49), (T, 40), (20, 5), (2, 1)])
def test_posterior_sampling_reproduces_forward_marginal(sched, t, s):
    """Monte Carlo: x_t | x_0, then x_s | x_t, x_0 is distributed as the forward marginal of x_s."""
    n = 200_000
    g = torch.Generator().manual_seed(1000 * t + s)
    x0 = torch.full((1, 1, 400, 500), 0.8, dtype=torch.float64)
    mu = torch.full_like(x0, 0.3)
    xt = mrsde.forward_sample(x0, mu, sched, t, torch.randn(x0.shape, generator=g, dtype=x0.dtype))
    xs = mrsde.optimal_reverse_state(xt, x0, mu, sched, t, s)
    xs = xs + mrsde.posterior_std(sched, t, s) * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    mean = float(mrsde.marginal_mean(x0[..., :1, :1], mu[..., :1, :1], sched, s))
    std = mrsde.marginal_std(sched, s)
    assert float(xs.mean()) == pytest.approx(mean, abs=4 * std / math.sqrt(n))
    assert float(xs.std()) == pytest.approx(std, abs=4 * std / math.sqrt(2 * n))


# --- reverse updates -----------------------------------------------------------------------------


def test_posterior_update_with_true_noise_lands_on_posterior_mean(sched):
    """sample_posterior's update, x*_s(x_t, x̂_0(ε)), equals x*_s(x_t, x_0) when ε̂ is the true ε."""
    x0, mu, noise = _pair(shape=(2, 3, 24, 24), seed=8)
    for t in range(1, T + 1):
        xt = mrsde.forward_sample(x0, mu, sched, t, noise)
        x0_hat = mrsde.x0_from_noise(xt, mu, noise, sched, t)
        for s in sorted({0, t - 1, t // 2}):
            got = mrsde.optimal_reverse_state(xt, x0_hat, mu, sched, t, s)
            want = mrsde.optimal_reverse_state(xt, x0, mu, sched, t, s)
            assert torch.allclose(got, want, atol=1e-10, rtol=0), (t, s)
    # In float32 (what the samplers run in) the one-step update stays within ~1e-5; x̂_0 itself is
    # only as exact as float32 allows after the e^{θ̄_t} (up to 1/eps = 200) amplification.
    x0, mu, noise = (v.float() for v in (x0, mu, noise))
    for t in range(1, T + 1):
        xt = mrsde.forward_sample(x0, mu, sched, t, noise)
        x0_hat = mrsde.x0_from_noise(xt, mu, noise, sched, t)
        got = mrsde.optimal_reverse_state(xt, x0_hat, mu, sched, t, t - 1)
        want = mrsde.optimal_reverse_state(xt, x0, mu, sched, t, t - 1)
        assert torch.allclose(got, want, atol=1e-5, rtol=0), t
        amplification = math.exp(mrsde.theta_bar(sched, t))
        assert torch.allclose(x0_hat, x0, atol=1e-6 * amplification, rtol=0), t


def test_reverse_sde_mean_with_true_noise_is_near_posterior_mean(sched):
    """Fact sheet §2: with the true ε, the reverse-SDE drift step ≈ x*_{t−1}; the residual is far
    below the step's own noise (this is why the matching loss is ≈ a weighted ε-loss)."""
    x0, mu, noise = _pair(shape=(1, 3, 32, 32), seed=9)
    for t in range(2, T + 1):
        xt = mrsde.forward_sample(x0, mu, sched, t, noise)
        score = mrsde.score_from_noise(noise, sched, t)
        drift = mrsde.reverse_sde_mean(xt, mu, score, sched, t, t - 1)
        opt = mrsde.optimal_reverse_state(xt, x0, mu, sched, t, t - 1)
        ratio = float((drift - opt).abs().mean()) / mrsde.reverse_sde_noise_scale(sched, t, t - 1)
        assert ratio < 0.05, (t, ratio)


def test_score_is_true_score_of_marginal(sched):
    """ŝ = −ε/σ̄_t equals −(x_t − m_t)/σ̄_t², the score of N(m_t, σ̄_t²)."""
    x0, mu, noise = _pair(seed=10)
    for t in (1, 40, T):
        xt = mrsde.forward_sample(x0, mu, sched, t, noise)
        true = -(xt - mrsde.marginal_mean(x0, mu, sched, t)) / mrsde.marginal_std(sched, t) ** 2
        assert torch.allclose(mrsde.score_from_noise(noise, sched, t), true, rtol=1e-8)


def test_reverse_steps_match_fact_sheet_formulas(sched):
    """Single-step SDE/ODE updates vs §1.6 with σ_t² = 2λ²θ_t and θ·dt for s = t−1."""
    x0, mu, noise = _pair(seed=11)
    score = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=x0.dtype)
    th = sched.thetas
    for t in (1, 2, 50, T):
        xt = mrsde.forward_sample(x0, mu, sched, t, noise)
        theta, dt = float(th[t]), sched.dt
        sigma2 = 2 * LAM**2 * theta
        sde = xt - (theta * (mu - xt) - sigma2 * score) * dt
        ode = xt - (theta * (mu - xt) - 0.5 * sigma2 * score) * dt
        assert torch.allclose(mrsde.reverse_sde_mean(xt, mu, score, sched, t, t - 1), sde)
        assert torch.allclose(mrsde.reverse_ode_step(xt, mu, score, sched, t, t - 1), ode)
        assert mrsde.reverse_sde_noise_scale(sched, t, t - 1) == pytest.approx(
            math.sqrt(sigma2 * dt), rel=1e-12
        )
    # A skipped interval integrates θ over it.
    assert mrsde.integrated_theta(sched, 60, 40) == pytest.approx(
        float(th[41:61].sum()) * sched.dt, rel=1e-12
    )


def test_per_sample_forms_agree_with_int_forms(sched):
    ts = [1, 7, 50, T]
    ss = [0, 3, 49, 60]
    x0, mu, noise = _pair(shape=(4, 3, 8, 8), seed=12)
    xt = mrsde.forward_sample(x0, mu, sched, ts, noise)
    score_l = mrsde.score_from_noise(noise, sched, ts)
    rev_l = mrsde.reverse_sde_mean(xt, mu, score_l, sched, ts, ss)
    opt_l = mrsde.optimal_reverse_state(xt, x0, mu, sched, ts, ss)
    mean_l = mrsde.marginal_mean(x0, mu, sched, ts)
    for i, (t, s) in enumerate(zip(ts, ss, strict=True)):
        r = slice(i, i + 1)
        xi = mrsde.forward_sample(x0[r], mu[r], sched, t, noise[r])
        assert torch.allclose(xt[r], xi, rtol=1e-12, atol=0)
        assert torch.allclose(mean_l[r], mrsde.marginal_mean(x0[r], mu[r], sched, t), atol=1e-15)
        si = mrsde.score_from_noise(noise[r], sched, t)
        assert torch.allclose(score_l[r], si, rtol=1e-12, atol=0)
        assert torch.allclose(
            rev_l[r], mrsde.reverse_sde_mean(xi, mu[r], si, sched, t, s), rtol=1e-12, atol=1e-15
        )
        assert torch.allclose(
            opt_l[r], mrsde.optimal_reverse_state(xi, x0[r], mu[r], sched, t, s), atol=1e-14
        )
    # Distinct timesteps really produce distinct rows (the list is not collapsed to one t).
    assert not torch.allclose(score_l[0], score_l[3])


# --- timesteps and samplers ----------------------------------------------------------------------


def test_timesteps_properties():
    assert mrsde.timesteps(100, 100) == list(range(100, -1, -1))
    assert mrsde.timesteps(100, 1) == [100, 0]
    assert mrsde.timesteps(100, 4) == [100, 75, 50, 25, 0]
    for T_ in (1, 2, 7, 50, 100, 137):
        for steps in range(1, T_ + 1):
            grid = mrsde.timesteps(T_, steps)
            assert len(grid) == steps + 1
            assert grid[0] == T_ and grid[-1] == 0
            assert all(a > b for a, b in itertools.pairwise(grid)), (T_, steps, grid)
            assert all(isinstance(v, int) for v in grid)


@pytest.mark.parametrize("steps", [0, -1, 101])
def test_timesteps_rejects_bad_steps(steps):
    with pytest.raises(ValueError):
        mrsde.timesteps(100, steps)


def _oracle(x0, sched, mu):
    """The exact noise of x_t (x0 known): the model callable with μ bound, as samplers get it."""
    calls = []

    def model(x, t):
        assert isinstance(t, int) and 1 <= t <= sched.T
        calls.append(t)
        return (x - mrsde.marginal_mean(x0, mu, sched, t)) / mrsde.marginal_std(sched, t)

    return model, calls


@pytest.mark.parametrize("steps", [T, 10])
def test_posterior_sampler_with_oracle_recovers_x0(sched, steps):
    x0, mu, _ = (v.float() for v in _pair(shape=(1, 3, 32, 32), seed=13))
    model, calls = _oracle(x0, sched, mu)
    g = torch.Generator().manual_seed(0)
    xT = mrsde.terminal_sample(mu, sched, torch.randn(x0.shape, generator=g))
    grid = mrsde.timesteps(T, steps)
    out = mrsde.sample_posterior(model, xT, mu, sched, grid, mrsde.gaussian_noise(g))
    assert calls == mrsde.timesteps(T, steps)[:-1]
    assert _psnr(out, x0) > 80


def test_posterior_sampler_wiring(sched):
    """Each step of sample_posterior is x*_s(x_t, x̂_0) + σ_post·z with z from the generator."""
    x0, mu, _ = _pair(shape=(1, 3, 16, 16), seed=14)
    g = torch.Generator().manual_seed(0)
    xT = mrsde.terminal_sample(mu, sched, torch.randn(x0.shape, generator=g, dtype=x0.dtype))
    states = []
    model, _ = _oracle(x0, sched, mu)
    mrsde.sample_posterior(
        model,
        xT.clone(),  # the sampler updates its state in place
        mu,
        sched,
        mrsde.timesteps(T, 10),
        mrsde.gaussian_noise(torch.Generator().manual_seed(42)),
        callback=lambda i, n, x: states.append((i, n, x.clone())),
    )
    assert [(i, n) for i, n, _ in states] == [(i, 10) for i in range(10)]
    g2 = torch.Generator().manual_seed(42)
    prev = xT
    for (t, s), (_, _, x) in zip(itertools.pairwise(mrsde.timesteps(T, 10)), states, strict=True):
        expected = mrsde.optimal_reverse_state(prev, x0, mu, sched, t, s)
        std = mrsde.posterior_std(sched, t, s)
        if std > 0:
            expected = expected + std * torch.randn(x0.shape, generator=g2, dtype=x0.dtype)
        assert torch.allclose(x, expected, atol=1e-9), (t, s)
        prev = x
    assert torch.allclose(states[-1][2], x0, atol=1e-9)  # last step deterministic


def test_ode_sampler_with_oracle_ends_near_x0(sched):
    x0, mu, _ = (v.float() for v in _pair(shape=(1, 3, 32, 32), seed=15))
    model, calls = _oracle(x0, sched, mu)
    xT = mrsde.terminal_sample(mu, sched, torch.randn(x0.shape, generator=torch.Generator()))
    out = mrsde.sample_ode(model, xT, mu, sched, mrsde.timesteps(T, T), mrsde.gaussian_noise(None))
    assert len(calls) == T
    assert _psnr(out, x0) > 40
    assert _psnr(mu, x0) < 20  # i.e. the sampler did the work


def test_sde_sampler_with_oracle_ends_near_x0(sched):
    x0, mu, _ = (v.float() for v in _pair(shape=(1, 3, 32, 32), seed=16))
    model, _ = _oracle(x0, sched, mu)
    g = torch.Generator().manual_seed(3)
    xT = mrsde.terminal_sample(mu, sched, torch.randn(x0.shape, generator=g))
    out = mrsde.sample_sde(model, xT, mu, sched, mrsde.timesteps(T, T), mrsde.gaussian_noise(g))
    assert _psnr(out, x0) > 40


def test_sde_sampler_is_deterministic_given_generator(sched):
    x0, mu, _ = (v.float() for v in _pair(shape=(1, 3, 16, 16), seed=17))
    model, _ = _oracle(x0, sched, mu)
    xT = mrsde.terminal_sample(mu, sched, torch.randn(x0.shape, generator=torch.Generator()))

    def run(seed):
        noise = mrsde.gaussian_noise(torch.Generator().manual_seed(seed))
        return mrsde.sample_sde(model, xT.clone(), mu, sched, mrsde.timesteps(T, 10), noise)

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # The noise actually enters: the two seeds differ by at least the last step's noise scale.
    assert float((a - c).abs().mean()) > 0.5 * mrsde.reverse_sde_noise_scale(sched, 10, 0)


def test_samplers_registry():
    assert {
        "sde": mrsde.sample_sde,
        "ode": mrsde.sample_ode,
        "posterior": mrsde.sample_posterior,
    } == mrsde.SAMPLERS


# --- in-place steps: the pure functions' bytes, few full-size buffers ----------------------------


@pytest.mark.parametrize("t,s", [(100, 99), (100, 90), (37, 12), (5, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_steps_are_the_pure_updates_bit_for_bit(sched, t, s, dtype):
    """The samplers' in-place updates apply the pure functions' float operations in the same
    order: equal, not close, so restores keep their bytes."""
    x0, mu, eps = _pair(shape=(2, 3, 24, 20), seed=t + s, dtype=dtype)
    x = mrsde.forward_sample(x0, mu, sched, t, 0.7 * eps + 0.1)
    score = mrsde.score_from_noise(eps, sched, t)
    for weight, pure in [
        (2.0, mrsde.reverse_sde_mean(x, mu, score, sched, t, s)),
        (1.0, mrsde.reverse_ode_step(x, mu, score, sched, t, s)),
    ]:
        stepped = mrsde.reverse_euler_step_(x.clone(), mu, eps.clone(), sched, t, s, weight)
        assert torch.equal(stepped, pure)
    x0_hat = mrsde.x0_from_noise(x, mu, eps, sched, t)
    pure = mrsde.optimal_reverse_state(x, x0_hat, mu, sched, t, s)
    assert torch.equal(mrsde.posterior_step_(x.clone(), mu, eps.clone(), sched, t, s), pure)


@pytest.mark.parametrize("name", sorted(mrsde.SAMPLERS))
def test_samplers_keep_at_most_two_full_size_temporaries(sched, name):
    """Besides the state (updated in place) and μ, a step holds the model's output and one
    temporary, then the noise and its scaled copy: never more than two full-size tensors
    that the sampler (or the model) allocated are alive at once, whatever the step count."""
    x0, mu, _ = _pair(shape=(1, 3, 32, 32), seed=21, dtype=torch.float32)
    x_T = mrsde.terminal_sample(mu, sched, torch.randn(mu.shape, generator=torch.Generator()))
    noise = mrsde.gaussian_noise(torch.Generator().manual_seed(0))
    model, _ = _oracle(x0, sched, mu)
    counter = LargeAllocations(mu.numel())
    with counter:
        out = mrsde.SAMPLERS[name](model, x_T, mu, sched, mrsde.timesteps(T, 5), noise)
    assert out is x_T  # the state is x_T's buffer
    assert counter.peak <= 2 and counter.live == 0
