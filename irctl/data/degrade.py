"""Synthetic degradations: how a clean photo becomes the LQ input a model learns to restore.

Each degradation is a pure function of (clean batch in [0,1], generator) so training batches and
held-out test inputs are reproducible from a seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from irctl.config import DegradationConfig

Degradation = Callable[[Tensor, torch.Generator], Tensor]


def quantize_8bit(x: Tensor) -> Tensor:
    """Round and clip to the 256 levels of an 8-bit file: what a user's noisy PNG/JPEG holds."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def gaussian_noise(
    clean: Tensor, generator: torch.Generator, sigma: float, quantize: bool
) -> Tensor:
    """Additive white Gaussian noise of std ``sigma`` (0–255 units), optionally stored as 8 bits."""
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    noisy = clean + noise.to(clean.device) * (sigma / 255.0)
    return quantize_8bit(noisy) if quantize else noisy


def build_degradation(cfg: DegradationConfig) -> Degradation:
    if cfg.kind == "gaussian_noise":
        return lambda clean, g: gaussian_noise(clean, g, cfg.sigma, cfg.quantize)
    raise ValueError(f"unknown degradation {cfg.kind!r}")
