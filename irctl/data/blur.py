"""Camera-shake motion blur: random trajectory kernels, and blurring with them.

The released IR-SDE deblurring model learned GoPro (Nah et al., CVPR 2017), whose blurred
frames average consecutive sharp video frames of a hand-held camera. With single photos that
cannot be reproduced; the standard synthetic stand-in is a random camera trajectory rasterised
into a blur kernel (Boracchi & Foi, "Modeling the performance of image restoration from motion
blur", TIP 2012; also DeblurGAN's generator): a point with inertia, pulled back to its start and
shaken by Gaussian and occasional impulsive jerks, traced for the exposure and splatted into a
k×k grid. The blur is spatially uniform (one kernel per image), which real shake is only
approximately.

Everything here is a pure function of its inputs and a NumPy generator.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: trajectory points traced per kernel
_STEPS = 256


def random_motion_kernel(size: int, rng: np.random.Generator) -> np.ndarray:
    """A size×size camera-shake kernel (size odd, ≥ 3): non-negative, summing to 1.

    Boracchi & Foi's trajectory model: unit speed, velocity nudged at each step by Gaussian
    shake (``anxiety``), pulled toward the start (``centripetal``) and, rarely, by a large
    impulsive jerk; the path is then scaled to span at most size − 1 pixels, centred on the
    kernel by its centre of mass, and splatted bilinearly."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"a motion kernel needs an odd size ≥ 3, got {size}")
    anxiety = rng.uniform(0.0, 0.03)
    centripetal = 0.7 * rng.uniform(0.0, 1.0)
    jerk_rate = 0.01 * rng.uniform(0.0, 1.0)
    velocity = np.exp(1j * rng.uniform(0.0, 2.0 * np.pi))
    points = np.zeros(_STEPS, dtype=np.complex128)
    for i in range(1, _STEPS):
        shake = anxiety * (rng.normal() + 1j * rng.normal())
        pull = -centripetal * points[i - 1] / (10 * _STEPS)
        velocity = velocity + shake + pull
        if rng.uniform() < jerk_rate:
            velocity = velocity + 2.0 * velocity * np.exp(1j * rng.uniform(-np.pi, np.pi))
        speed = abs(velocity)
        velocity = velocity / speed if speed > 0 else np.exp(1j * rng.uniform(0.0, 2.0 * np.pi))
        points[i] = points[i - 1] + velocity
    points -= points.mean()
    extent = max(np.ptp(points.real), np.ptp(points.imag), 1e-9)
    length = rng.uniform(0.5, 1.0) * (size - 1)  # not every shake spans the whole kernel
    points *= length / extent
    half = (size - 1) / 2.0
    # keep the whole path inside the grid (the centre of mass is at the centre)
    span = max(np.abs(points.real).max(), np.abs(points.imag).max(), 1e-9)
    points *= min(1.0, (half - 1e-6) / span)
    return splat(points.real + half, points.imag + half, size)


def splat(xs: np.ndarray, ys: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splatting of equally weighted points (x right, y down, pixel centres at
    integers) into a size×size grid, normalised to sum 1."""
    grid = np.zeros((size, size), dtype=np.float64)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = np.clip(x0 + dx, 0, size - 1), np.clip(y0 + dy, 0, size - 1)
        np.add.at(grid, (yi, xi), w)
    return (grid / grid.sum()).astype(np.float32)


def convolve(images: Tensor, kernel: Tensor) -> Tensor:
    """``images`` (N×C×H×W) convolved with one k×k kernel (k odd), borders mirrored without
    repeating the edge (``scipy.ndimage.convolve(mode='mirror')``); a true convolution, the
    kernel flipped, so an off-centre kernel shifts the image toward its mass."""
    k = kernel.shape[-1]
    pad = k // 2
    _n, c, h, w = images.shape
    if pad >= min(h, w):
        raise ValueError(f"a {k}x{k} kernel needs an image larger than {pad}, got {h}x{w}")
    weight = kernel.flip(-1, -2).to(images.dtype).expand(c, 1, k, k)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, weight, groups=c)


def richardson_lucy(blurred: Tensor, kernel: Tensor, iterations: int) -> Tensor:
    """Richardson–Lucy deconvolution of an N×C×H×W batch blurred by ``kernel`` (as
    :func:`convolve` blurs): ``x ← x · Kᵀ(y / Kx)`` from x = y, the multiplicative EM update
    for Poisson noise (Richardson 1972, Lucy 1974). Kᵀ is the correlation (the convolution with
    the flipped kernel), with the same mirrored borders. Values stay positive; the result is
    clipped to [0, 1]."""
    eps = 1e-6
    observed = blurred.clamp(eps, 1.0)
    estimate = observed.clone()
    flipped = kernel.flip(-1, -2)
    for _ in range(iterations):
        ratio = observed / convolve(estimate, kernel).clamp_min(eps)
        estimate = estimate * convolve(ratio, flipped)
    return estimate.clamp(0.0, 1.0)


def motion_blur(
    clean: Tensor, rng: np.random.Generator, size: tuple[int, int], noise: float
) -> tuple[Tensor, list[np.ndarray]]:
    """Each image of the N×C×H×W batch blurred with its own kernel (an odd size drawn from
    ``size``, both inclusive), plus Gaussian noise of std drawn from [0, ``noise``] (0–255
    units). Returns the blurred batch (unquantised) and the kernels."""
    lo, hi = size
    odd = [s for s in range(max(3, lo), hi + 1) if s % 2 == 1]
    if not odd:
        raise ValueError(f"degradation.blur_size {size} holds no odd size ≥ 3")
    blurred, kernels = [], []
    for image in clean:
        kernel = random_motion_kernel(int(rng.choice(odd)), rng)
        out = convolve(image[None], torch.from_numpy(kernel).to(clean.device))[0]
        sigma = rng.uniform(0.0, noise) / 255.0
        shake = rng.standard_normal(out.shape).astype(np.float32) * sigma
        blurred.append(out + torch.from_numpy(shake).to(out.device, out.dtype))
        kernels.append(kernel)
    return torch.stack(blurred), kernels
