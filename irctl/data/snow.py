"""Synthetic falling snow, as Snow100K's: layers of flake masks composited onto the photo, over a
mild veil.

Snow100K (Liu et al., "DesnowNet: Context-Aware Deep Network for Snow Removal", IEEE TIP 2018;
the desnowing benchmark DTPM reports, test sets Snow100K-S/M/L) was made by compositing snow
masks rendered in Photoshop onto clean photos: each mask holds flakes of several particle sizes
and densities, and the snowy image is

    K(x) = J(x)·(1 − a(x)) + a(x)·C

with J the photo, a the mask's per-pixel alpha and C the snow's colour (near white). Its
"snow + veiling effect" images add a haze-like veil, J·(1 − v) + v·C, for the light the snow
scatters between camera and scene.

This renders the same model. Each image gets 1..``layers`` layers, far to near; layer i of L
takes flakes from the i-th of L log-spaced bands of the flake radius range, so the layers run
from many small far flakes to few large near ones. A layer's flakes are soft-edged discs at a
drawn density (the share of the frame they would cover without overlap), smeared by a short
motion blur along the image's fall direction (near flakes move further during the exposure, so
their streak is longer) and blurred by their depth (near flakes are out of focus: larger Gaussian
blur, lower opacity). The veil is uniform with strength ``v`` per image; the layers go over it,
far to near, with the ``K`` composite above.

Everything here is a pure function of its inputs and a NumPy generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from irctl.data.rain import line_kernel


@dataclass(frozen=True)
class SnowParams:
    """The snow's ranges (DegradationConfig's ``snow_*`` fields hold the defaults)."""

    density: tuple[float, float] = (0.01, 0.05)  # share of the frame a layer's flakes cover
    layers: int = 3  # 1..layers layers per image, small far flakes to large near ones
    flake_size: tuple[float, float] = (0.6, 6.0)  # flake radius, pixels, smallest..largest
    veil: tuple[float, float] = (0.0, 0.25)  # veiling strength v
    streak: tuple[float, float] = (0.0, 4.0)  # the nearest layer's motion streak, pixels
    angle: tuple[float, float] = (-30.0, 30.0)  # fall direction, degrees from vertical

    def check(self) -> None:
        """Raise ValueError naming the degradation field that cannot work."""
        for name in ("density", "flake_size", "veil", "streak"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"degradation.snow_{name} must be 0 ≤ lo ≤ hi, got {lo, hi}")
        if self.density[1] > 1:
            raise ValueError(
                f"degradation.snow_density is a share of the frame, ≤ 1: {self.density}"
            )
        if self.flake_size[0] <= 0:
            raise ValueError(f"degradation.snow_flake_size must be > 0, got {self.flake_size}")
        if self.veil[1] >= 1:
            raise ValueError(f"degradation.snow_veil must stay below 1, got {self.veil}")
        if self.layers < 1:
            raise ValueError(f"degradation.snow_layers must be ≥ 1, got {self.layers}")
        if not self.angle[0] <= self.angle[1]:
            raise ValueError(f"degradation.snow_angle must be lo ≤ hi, got {self.angle}")


def flake_layer(
    height: int,
    width: int,
    rng: np.random.Generator,
    radius: tuple[float, float],
    density: float,
    opacity: tuple[float, float] = (0.7, 1.0),
) -> np.ndarray:
    """One layer's flakes as an H×W alpha in [0, 1]: soft-edged discs of radii drawn from
    ``radius`` (pixels), as many as would cover ``density`` of the frame without overlap,
    each with an opacity drawn from ``opacity``; overlapping flakes take the larger alpha."""
    alpha = np.zeros((height, width), dtype=np.float64)
    lo, hi = radius
    mean_area = np.pi * (lo * lo + lo * hi + hi * hi) / 3.0  # E[π r²], r ~ U(lo, hi)
    count = round(density * height * width / mean_area)
    for _ in range(count):
        r = rng.uniform(lo, hi)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        peak = rng.uniform(*opacity)
        reach = int(np.ceil(r + 1))
        y0, y1 = max(0, int(cy) - reach), min(height, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
        ys, xs = np.mgrid[y0:y1, x0:x1]
        # pixel centres at +0.5; the edge ramps over one pixel around radius r
        dist = np.hypot(ys + 0.5 - cy, xs + 0.5 - cx)
        disc = peak * np.clip(r + 0.5 - dist, 0.0, 1.0)
        np.maximum(alpha[y0:y1, x0:x1], disc, out=alpha[y0:y1, x0:x1])
    return alpha


def snow_layers(
    height: int, width: int, rng: np.random.Generator, params: SnowParams
) -> list[np.ndarray]:
    """One image's snow, far to near: H×W alphas after streaking and depth blur."""
    lo, hi = params.flake_size
    n_bands = params.layers
    edges = lo * (hi / lo) ** (np.arange(n_bands + 1) / n_bands)
    angle = rng.uniform(*params.angle)
    streak = rng.uniform(*params.streak)
    layers = []
    for i in sorted(rng.choice(n_bands, size=int(rng.integers(1, n_bands + 1)), replace=False)):
        depth = i / max(1, n_bands - 1)  # 0 far .. 1 near
        band = (float(edges[i]), float(edges[i + 1]))
        fade = 1.0 - 0.4 * depth  # near flakes are blurred and see-through
        alpha = flake_layer(
            height, width, rng, band, rng.uniform(*params.density), (0.7 * fade, fade)
        )
        length = streak * (0.4 + 0.6 * depth)
        if length >= 1.5 and alpha.any():
            kernel = line_kernel(length, angle + rng.uniform(-5.0, 5.0)).astype(np.float64)
            alpha = ndimage.convolve(alpha, kernel, mode="constant")
        sigma = 0.35 * depth * 0.5 * (band[0] + band[1])
        if sigma > 0.2 and alpha.any():
            alpha = ndimage.gaussian_filter(alpha, sigma, mode="constant")
        layers.append(np.clip(alpha, 0.0, 1.0))
    return layers


def add_snow(clean: Tensor, rng: np.random.Generator, params: SnowParams) -> tuple[Tensor, Tensor]:
    """Each image of the N×C×H×W batch in [0, 1] with its own snow: the snowy batch and the
    snow's total alpha, N×1×H×W (1 − Π(1 − a_i) over the layers; the veil not counted)."""
    snowy, coverage = [], []
    for image in clean:
        photo = image.detach().cpu().double().numpy()
        h, w = photo.shape[-2:]
        # near-white with a faint blue cast, as snow under skylight
        tint = np.array([0.97, 0.99, 1.0]) if photo.shape[0] == 3 else np.ones(photo.shape[0])
        colour = (rng.uniform(0.88, 1.0) * tint).reshape(-1, 1, 1)
        v = rng.uniform(*params.veil)
        out = photo * (1.0 - v) + v * colour
        clear = np.ones((h, w))
        for alpha in snow_layers(h, w, rng, params):
            out = out * (1.0 - alpha) + alpha * colour
            clear *= 1.0 - alpha
        snowy.append(torch.from_numpy(out).to(image))
        coverage.append(torch.from_numpy(1.0 - clear)[None].to(image))
    return torch.stack(snowy), torch.stack(coverage)
