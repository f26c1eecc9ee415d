"""Synthetic heavy rain, as Outdoor-Rain's: rain streaks and the haze-like veil of distant rain.

Outdoor-Rain (Li, Cheong & Tan, "Heavy Rain Image Restoration: Integrating Physics Model and
Conditional Adversarial Learning", CVPR 2019; the derain+dehaze benchmark DTPM reports, WeatherDiff's
protocol) was rendered with that paper's heavy-rain model

    I = T ⊙ (J + Σᵢ Sᵢ) + (1 − T) ⊙ A,

J the clean photo, Sᵢ the rain-streak layers, T the transmission of the scene depth
(T = exp(−β·d)) and A the atmospheric light: the light scattered by the accumulated rain is a
veil like haze, and it attenuates the streaks as much as the scene behind them — the model
treats the streaks as lying at the scene's depth (the same form as Yang et al.'s rain
accumulation model, CVPR 2017, O = α(B + Σ S̃ₜR) + (1 − α)A). This is written from the paper's
equation as recalled (its text is not in the repository); the depth maps and the β and A ranges
Outdoor-Rain used are not reproduced here.

Nothing is drawn here that the other syntheses do not already draw: the streaks are Rain100H-like
layers (:func:`irctl.data.rain.rain_layer`, the ``rain_*`` settings) and T, A come from the haze
synthesis (:func:`irctl.data.haze.haze_parameters`: random depth proxy, non-homogeneous β, the
``haze_*`` settings). The sum J + S may exceed 1 before the veil; the sensor clips only the
final image, so with T = 1 this is exactly the rain synthesis (which clips J + S) and with no
streaks exactly the haze synthesis.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from irctl.data.haze import HazeParams, HazeSample, apply_haze, haze_parameters
from irctl.data.rain import RainParams, rain_layer

__all__ = ["add_rain_haze", "rain_haze"]


def rain_haze(clean: Tensor, streaks: Tensor, transmission: Tensor, airlight: Tensor) -> Tensor:
    """I = T·(J + S) + (1 − T)·A, clipped to [0, 1]: ``clean`` N×C×H×W, ``streaks`` the added
    brightness N×1×H×W (the same on every channel), ``transmission`` N×1×H×W, ``airlight``
    N×C×1×1. Not quantised."""
    return apply_haze(clean + streaks, transmission, airlight).clamp(0.0, 1.0)


def add_rain_haze(
    clean: Tensor,
    rng: np.random.Generator,
    generator: torch.Generator,
    rain: RainParams,
    haze: HazeParams,
) -> tuple[Tensor, Tensor, HazeSample]:
    """Heavy rain on an N×3×H×W batch in [0, 1]: each image's streaks drawn from ``rng`` (as
    :func:`irctl.data.rain.add_rain` draws them), then the haze of the whole batch from
    ``generator`` (as :func:`irctl.data.haze.add_haze`). Returns the rainy batch (not
    quantised), the streaks N×1×H×W and the haze draw."""
    n, _, height, width = clean.shape
    streaks = torch.stack([rain_layer(height, width, rng, rain) for _ in range(n)])
    streaks = streaks.to(device=clean.device, dtype=clean.dtype)
    sample = haze_parameters(n, height, width, generator, haze)
    t = sample.transmission.to(device=clean.device, dtype=clean.dtype)
    a = sample.airlight.to(device=clean.device, dtype=clean.dtype)
    return rain_haze(clean, streaks, t, a), streaks, sample
