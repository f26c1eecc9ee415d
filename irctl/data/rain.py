"""Synthetic rain streaks, as Rain100H's: sparse drops smeared into long oriented streaks and
added to the photo.

Rain100H (Yang et al., "Deep joint rain detection and removal from a single image", CVPR 2017;
the released IR-SDE deraining model's training set) rendered its heavy rain in Photoshop: a
sparse random noise layer, motion-blurred along one direction into streaks, and blended over the
photo with a lightening ("screen"-like) mode, in several layers of slightly different direction.
This is that recipe: per layer, drops at a drawn density with random brightness, a line kernel
of a drawn length at the image's angle (± a few degrees per layer), a slight blur across the
streak for its width, then the layers are added to the photo. Rain only adds light, so the rainy
image is never darker than the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from irctl.data.blur import splat


@dataclass(frozen=True)
class RainParams:
    density: tuple[float, float] = (0.001, 0.004)  # drops per pixel, per layer
    length: tuple[float, float] = (15.0, 45.0)  # streak length, pixels
    angle: tuple[float, float] = (-30.0, 30.0)  # degrees from vertical
    intensity: tuple[float, float] = (0.3, 0.7)  # a streak's peak added brightness
    layers: int = 3  # 1..layers layers per image


def line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A k×k kernel (k odd) tracing a centred segment of ``length`` pixels at ``angle_deg``
    from vertical, summing to 1: the motion blur that turns a drop into a streak."""
    size = int(np.ceil(length)) | 1
    theta = np.deg2rad(angle_deg)
    t = np.linspace(-0.5, 0.5, max(2, int(4 * length)))
    half = (size - 1) / 2.0
    xs = half + t * (length - 1) * np.sin(theta)
    ys = half + t * (length - 1) * np.cos(theta)
    return splat(xs, ys, size)


def _streak_width_blur(layer: Tensor) -> Tensor:
    """A 3×3 binomial blur: streaks a pixel or two wide, soft-edged, as rendered rain is."""
    taps = torch.tensor([0.25, 0.5, 0.25], dtype=layer.dtype, device=layer.device)
    kernel = (taps[:, None] * taps[None, :])[None, None]
    return F.conv2d(F.pad(layer, (1, 1, 1, 1), mode="replicate"), kernel)


def rain_layer(height: int, width: int, rng: np.random.Generator, params: RainParams) -> Tensor:
    """The rain of one image: a 1×H×W map of added brightness, ≥ 0 (the same on every
    channel: rain streaks are white)."""
    angle = rng.uniform(*params.angle)
    total = torch.zeros(1, 1, height, width)
    for _ in range(int(rng.integers(1, params.layers + 1))):
        density = rng.uniform(*params.density)
        drops = (rng.uniform(size=(height, width)) < density) * rng.uniform(
            0.5, 1.0, size=(height, width)
        )
        kernel = line_kernel(rng.uniform(*params.length), angle + rng.uniform(-5.0, 5.0))
        k = kernel.shape[0]
        pad = k // 2
        # zero padding: drops outside the frame do not exist
        streaks = F.conv2d(
            F.pad(torch.from_numpy(drops.astype(np.float32))[None, None], (pad,) * 4),
            torch.from_numpy(kernel)[None, None],
        )
        streaks = _streak_width_blur(streaks)
        # a lone drop's streak peaks at about kernel.max() (along the line) × 0.5 (the width
        # blur across it): scale that to the drawn brightness
        total += streaks * (rng.uniform(*params.intensity) / (0.5 * float(kernel.max())))
    return total[0].clamp(0.0, 1.0)


def add_rain(clean: Tensor, rng: np.random.Generator, params: RainParams) -> Tensor:
    """Each image of the N×C×H×W batch in [0, 1] with its own rain added, clipped to 1."""
    rainy = []
    for image in clean:
        layer = rain_layer(image.shape[-2], image.shape[-1], rng, params).to(image)
        rainy.append((image + layer).clamp(max=1.0))
    return torch.stack(rainy)
