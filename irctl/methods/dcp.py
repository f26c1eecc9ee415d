"""Dark channel prior dehazing: the classical method a user would otherwise pick for haze.

He, Sun & Tang, "Single Image Haze Removal Using Dark Channel Prior" (CVPR 2009 / TPAMI 2011):
in haze-free outdoor patches some channel of some pixel is nearly black, so under
I = J·t + A·(1 − t) the dark channel of I/A measures 1 − t. The blocky patch-wise transmission is
refined with the guided filter (He, Sun & Tang, ECCV 2010 / TPAMI 2013), which replaced the
original soft matting, guided by the hazy image's grey level so t follows the image's edges.

Sizes: He et al. use a 15×15 patch on images of roughly 600×400 and a guided-filter radius of
several times the patch. Our photos are about 400×600, so ``patch`` and ``radius`` are taken as
values for a 400-pixel shorter side and scaled with the image's shorter side (a 160-pixel crop
gets a 7×7 patch and radius 16): a patch that is large relative to the frame mixes
depths and leaves halos at depth edges, one that is too small breaks the prior on bright objects.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "dark_channel",
    "dark_channel_prior",
    "estimate_airlight",
    "guided_filter",
    "scaled_sizes",
]

#: Shorter image side (pixels) at which ``patch`` and ``radius`` are used unscaled.
REFERENCE_SIDE = 400


def dark_channel(image: np.ndarray, patch: int = 15) -> np.ndarray:
    """HxW dark channel: the minimum over colour channels, then over a patch×patch window.

    The window minimum is a grey erosion with a square kernel; cv2's default border for erosion
    is +inf, so border windows only take pixels inside the image.
    """
    darkest = np.asarray(image, dtype=np.float32).min(axis=2)
    return cv2.erode(darkest, np.ones((patch, patch), np.uint8))


def estimate_airlight(image: np.ndarray, dark: np.ndarray, top: float = 0.001) -> np.ndarray:
    """(3,) airlight: the mean colour of the ``top`` fraction (0.1%) of dark-channel pixels.

    These are the most haze-opaque pixels. He et al. take the single brightest input pixel among
    them; we average them instead, which is less sensitive to one white object or clipped
    highlight (on a hazed 160×200 crop of ``coffee`` both land within 0.035 of the true A).
    """
    flat_dark = dark.reshape(-1)
    count = max(1, round(flat_dark.size * top))
    candidates = np.argpartition(flat_dark, flat_dark.size - count)[-count:]
    return np.asarray(image, dtype=np.float32).reshape(-1, 3)[candidates].mean(axis=0)


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.boxFilter(x, cv2.CV_32F, (size, size), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Grey guided filter (He et al. 2010): q = mean(a)·I + mean(b), with the local linear
    model a = cov(I, p) / (var(I) + eps), b = mean(p) − a·mean(I) in (2r+1)² windows."""
    guide = np.asarray(guide, dtype=np.float32)
    src = np.asarray(src, dtype=np.float32)
    mean_i = _box(guide, radius)
    mean_p = _box(src, radius)
    cov_ip = _box(guide * src, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * guide + _box(b, radius)


def scaled_sizes(shape: tuple[int, ...], patch: int, radius: int) -> tuple[int, int]:
    """``patch`` (kept odd, ≥ 3) and ``radius`` (≥ 2) scaled to the image's shorter side."""
    scale = min(shape[:2]) / REFERENCE_SIDE
    scaled_patch = max(3, round(patch * scale) | 1)
    return scaled_patch, max(2, round(radius * scale))


def dark_channel_prior(
    lq: np.ndarray,
    patch: int = 15,
    omega: float = 0.95,
    t0: float = 0.1,
    radius: int = 40,
    eps: float = 1e-3,
) -> np.ndarray:
    """Dehaze an HxWx3 float image in [0, 1]; returns HxWx3 float32 in [0, 1].

    t = 1 − ω·dark(I/A) (ω < 1 keeps a little haze for depth perception, as He et al.), refined
    by the guided filter, then J = (I − A)/max(t, t0) + A. ``patch`` and ``radius`` are for a
    400-pixel shorter side and are scaled to the image (see the module docstring).
    """
    image = np.asarray(lq, dtype=np.float32)
    patch, radius = scaled_sizes(image.shape, patch, radius)
    airlight = estimate_airlight(image, dark_channel(image, patch))
    normalised = image / np.maximum(airlight, 1e-3)[None, None, :]
    rough = 1.0 - omega * dark_channel(normalised, patch)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    transmission = guided_filter(grey, rough, radius, eps)
    t = np.maximum(transmission, t0)[..., None]
    restored = (image - airlight) / t + airlight
    return np.clip(restored, 0.0, 1.0).astype(np.float32)
