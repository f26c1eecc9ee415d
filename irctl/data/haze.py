"""Non-homogeneous haze by the atmospheric scattering model.

Koschmieder's law, as used to synthesise haze datasets (RESIDE; He et al., CVPR 2009):

    I(x) = J(x)·t(x) + A·(1 − t(x)),    t(x) = exp(−β(x)·d(x)),

with J the clean photo, A the atmospheric light and d a depth map (here a random proxy in [0, 1],
see :mod:`irctl.data.fields`). Real haze is not uniform (NH-HAZE, Ancuti et al. 2020): the
scattering coefficient β(x) varies over the frame, so dense and thin patches sit next to each
other; that is modelled as β(x) = β̄·(1 − h/2 + h·field(x)) with a smooth field in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from irctl.data.fields import depth_proxy, smooth_field

__all__ = ["HazeParams", "HazeSample", "add_haze", "apply_haze", "haze_parameters"]

#: Largest per-channel deviation of the airlight from grey (a slightly warm / cool sky).
AIRLIGHT_TINT = 0.03


@dataclass(frozen=True)
class HazeParams:
    """Ranges the per-sample haze is drawn from.

    ``beta`` is the mean scattering coefficient for depth in [0, 1] (β̄ = 3 at d = 1 leaves
    t ≈ 0.05 at the far end), ``airlight`` the grey level of A, ``nonhomogeneity`` h in
    β(x) = β̄·(1 − h/2 + h·field), and ``min_transmission`` a floor on t so the hazy image keeps
    some signal everywhere (also what keeps the inversion J = (I − A)/t + A well conditioned).
    """

    beta: tuple[float, float] = (1.0, 3.0)
    airlight: tuple[float, float] = (0.75, 1.0)
    nonhomogeneity: float = 0.7
    min_transmission: float = 0.05


@dataclass(frozen=True)
class HazeSample:
    """One draw of the haze: transmission N×1×H×W and airlight N×3×1×1, plus the depth and
    β maps (N×1×H×W) they were made from, kept for inspection and tests."""

    transmission: Tensor
    airlight: Tensor
    depth: Tensor
    beta: Tensor


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float], g: torch.Generator) -> Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float32)


def haze_parameters(
    n: int, height: int, width: int, generator: torch.Generator, params: HazeParams
) -> HazeSample:
    """Draw depth, β(x), t(x) and A for ``n`` samples (on the CPU) from ``generator``."""
    depth = depth_proxy(n, height, width, generator)
    beta_mean = _uniform((n, 1, 1, 1), params.beta, generator)
    field = smooth_field(n, height, width, generator)
    h = params.nonhomogeneity
    beta = beta_mean * (1.0 - h / 2.0 + h * field)
    transmission = torch.exp(-beta * depth).clamp(params.min_transmission, 1.0)
    grey = _uniform((n, 1, 1, 1), params.airlight, generator)
    tint = _uniform((n, 3, 1, 1), (-AIRLIGHT_TINT, AIRLIGHT_TINT), generator)
    airlight = (grey + tint).clamp(0.0, 1.0)
    return HazeSample(transmission=transmission, airlight=airlight, depth=depth, beta=beta)


def apply_haze(clean: Tensor, transmission: Tensor, airlight: Tensor) -> Tensor:
    """I = J·t + A·(1 − t): attenuated scene radiance plus scattered airlight (not quantised)."""
    return clean * transmission + airlight * (1.0 - transmission)


def add_haze(clean: Tensor, generator: torch.Generator, params: HazeParams) -> Tensor:
    """Haze an N×3×H×W batch in [0, 1] with a fresh draw per sample; the caller quantises."""
    n, _, height, width = clean.shape
    sample = haze_parameters(n, height, width, generator, params)
    t = sample.transmission.to(device=clean.device, dtype=clean.dtype)
    a = sample.airlight.to(device=clean.device, dtype=clean.dtype)
    return apply_haze(clean, t, a)
