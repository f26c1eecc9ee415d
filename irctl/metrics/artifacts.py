"""No-reference measures of artefacts a network adds, for checking outputs beside the fidelity
metrics."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from irctl.metrics.fidelity import to_y_channel

__all__ = ["grid_amplitude"]


def grid_amplitude(image: ArrayLike, *, max_value: float, period: int = 4) -> float:
    """RMS amplitude, in 8-bit grey levels of luma (BT.601 Y), of the pattern that repeats every
    ``period`` pixels in both directions — the checkerboard of a pixel-shuffle or strided-conv
    network (a U-Net's last two ×2 levels: periods 2 and 4).

    The image's detail layer (luma minus its period×period box mean, which passes a
    period-periodic pattern unchanged up to a constant and cancels a linear gradient) is averaged
    over each of the period² pixel phases (i mod p, j mod p); the RMS of those phase means about
    their mean is the amplitude. Texture averages out (about its RMS / √(pixels / p²)): the
    held-out ground-truth photos score 0.04–0.09; the grid that was visible in the shadow
    regression baseline's outputs (before ICNR) scored 0.44. ``period`` pixels are cropped at
    each border, where the box mean reflects.
    """
    from scipy import ndimage

    luma = to_y_channel(image, max_value)  # validates the shape; grey images are their own
    y = luma.reshape(luma.shape[0], luma.shape[1]) * (255.0 / max_value)
    detail = y - ndimage.uniform_filter(y, size=period, mode="reflect")
    detail = detail[period:-period, period:-period]
    h, w = (detail.shape[0] // period) * period, (detail.shape[1] // period) * period
    if h == 0 or w == 0:
        raise ValueError(f"image {y.shape} is too small: at least {3 * period} pixels a side")
    phases = detail[:h, :w].reshape(h // period, period, w // period, period).mean(axis=(0, 2))
    return float(np.sqrt(np.mean((phases - phases.mean()) ** 2)))
