"""Real-world degradation at the input size: blur, resizing, noise and JPEG, as Real-ESRGAN's.

DiffIR's released real-world models (DiffIR-RealSR) were trained the Real-ESRGAN way (Wang et
al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW
2021): a clean photo goes through a random chain of the damage a real camera-and-internet
pipeline does — optical blur, a resize, sensor noise, JPEG — drawn afresh for each image, so the
model learns to undo the mixture blind. The ×1 model's input and output have the same size,
so the chain here ends at the input size.

This is Real-ESRGAN's *first-order* chain: a Gaussian blur kernel (isotropic or anisotropic,
rotated), a resize by a random factor with a random interpolation, Gaussian or Poisson noise
(colour or grey), then the resize back to the input size and JPEG at a random quality (the
official synthesis ends this way in half its draws; JPEG at the input size leaves its 8×8 blocks
where a camera's file has them). Left out: the second-order repetition, the sinc (ringing)
filter and the generalised/plateau kernels — a smaller family of the same damage, enough for
held-out tables and training at a CPU patch size.

Everything here is a pure function of its inputs and a NumPy generator.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from irctl.data.blur import convolve

#: F.interpolate modes a resize draws from (Real-ESRGAN's model draws these three)
RESIZE_MODES = ("area", "bilinear", "bicubic")

#: BT.601 luma weights: grey noise is drawn once on the luma (torchvision's rgb_to_grayscale)
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class RealWorldParams:
    """The chain's ranges (DegradationConfig's ``realworld_*`` fields, which hold the
    defaults and their source). A range whose upper end is 0 switches its step off (blur
    sigma, both noise ranges); so does a resize range of (1, 1) and a JPEG probability of 0."""

    blur_size: tuple[int, int]  # kernel sizes (odd ones in the range, both inclusive)
    blur_sigma: tuple[float, float]  # pixels, each axis of an anisotropic kernel
    kernel_prob: tuple[float, float]  # weights of isotropic, anisotropic kernels
    resize_prob: tuple[float, float, float]  # weights of up, down, keep
    resize_range: tuple[float, float]  # factor: up from [1, hi], down from [lo, 1]
    gaussian_noise_prob: float  # else Poisson
    noise_range: tuple[float, float]  # Gaussian std, 0–255 units
    poisson_scale_range: tuple[float, float]  # multiplies the Poisson noise
    gray_noise_prob: float  # the same noise on every channel
    jpeg_range: tuple[float, float]  # quality
    jpeg_prob: float

    def check(self) -> None:
        """Raise ValueError naming the degradation field that cannot work, when the preset is
        used rather than mid-training."""
        ranges = {
            "blur_size": self.blur_size,
            "blur_sigma": self.blur_sigma,
            "resize_range": self.resize_range,
            "noise_range": self.noise_range,
            "poisson_scale_range": self.poisson_scale_range,
            "jpeg_range": self.jpeg_range,
        }
        for name, (lo, hi) in ranges.items():
            if not 0 <= lo <= hi:
                raise ValueError(f"degradation.realworld_{name} must be 0 ≤ lo ≤ hi, got {lo, hi}")
        if self.resize_range[0] <= 0 or not self.resize_range[0] <= 1 <= self.resize_range[1]:
            raise ValueError(
                f"degradation.realworld_resize_range must hold 1 and be positive, "
                f"got {self.resize_range}"
            )
        if not (self.jpeg_range[0] >= 1 and self.jpeg_range[1] <= 100):
            raise ValueError(
                f"degradation.realworld_jpeg_range: JPEG qualities are 1..100, got {self.jpeg_range}"
            )
        for name, weights in (("kernel_prob", self.kernel_prob), ("resize_prob", self.resize_prob)):
            if min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"degradation.realworld_{name} needs non-negative weights")
        for name in ("gaussian_noise_prob", "gray_noise_prob", "jpeg_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"degradation.realworld_{name} is a probability")
        if self.blur_sigma[1] > 0 and not _odd_sizes(self.blur_size):
            raise ValueError(f"degradation.realworld_blur_size {self.blur_size} holds no odd size")


def _odd_sizes(size: tuple[int, int]) -> list[int]:
    return [s for s in range(max(3, int(size[0])), int(size[1]) + 1) if s % 2 == 1]


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """A size×size bivariate Gaussian (size odd) with standard deviations ``sigma_x`` and
    ``sigma_y`` along axes rotated by ``theta`` radians, summing to 1: the covariance is
    R·diag(σx², σy²)·Rᵀ (Real-ESRGAN's anisotropic kernel; σx = σy is the isotropic one). A
    centred Gaussian is symmetric, so convolution and correlation agree."""
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    inverse = np.linalg.inv(rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T)
    half = size // 2
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1]
    points = np.stack([xs, ys], axis=-1).astype(np.float64)
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", points, inverse, points))
    return (kernel / kernel.sum()).astype(np.float32)


def random_kernel(params: RealWorldParams, rng: np.random.Generator, limit: int) -> np.ndarray:
    """A random blur kernel no wider than ``limit`` (odd; the image's mirrored border must
    cover half of it): the size an odd one of ``blur_size``, isotropic or anisotropic by
    ``kernel_prob``, each σ from ``blur_sigma``, the anisotropic one rotated by U(−π, π)."""
    size = min(int(rng.choice(_odd_sizes(params.blur_size))), limit)
    weights = np.asarray(params.kernel_prob, dtype=np.float64)
    anisotropic = rng.choice(2, p=weights / weights.sum()) == 1
    sigma_x = rng.uniform(*params.blur_sigma)
    if anisotropic:
        sigma_y, theta = rng.uniform(*params.blur_sigma), rng.uniform(-np.pi, np.pi)
    else:
        sigma_y, theta = sigma_x, 0.0
    return gaussian_kernel(size, sigma_x, sigma_y, theta)


def random_factor(params: RealWorldParams, rng: np.random.Generator) -> float:
    """Real-ESRGAN's resize factor: up from U(1, hi), down from U(lo, 1) or kept, as
    ``resize_prob`` weighs them."""
    weights = np.asarray(params.resize_prob, dtype=np.float64)
    kind = rng.choice(3, p=weights / weights.sum())
    lo, hi = params.resize_range
    return (rng.uniform(1.0, hi), rng.uniform(lo, 1.0), 1.0)[kind]


def resize(image: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """A C×H×W image resized to ``size`` with PyTorch's ``mode`` (no antialiasing, as the
    official synthesis: a strong down-scale aliases, which real resized photos do too)."""
    if tuple(image.shape[-2:]) == size:
        return image
    corners = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(image[None], size=size, mode=mode, **corners)[0]


def random_noise(
    image: np.ndarray, params: RealWorldParams, rng: np.random.Generator
) -> np.ndarray:
    """The noise to add to a C×H×W image in [0, 1] (float64): Gaussian of std
    U(``noise_range``)/255 with probability ``gaussian_noise_prob``, else Poisson (shot) noise
    scaled by U(``poisson_scale_range``); with probability ``gray_noise_prob`` one noise plane
    shared by every channel. Real-ESRGAN's Poisson noise counts the 8-bit image's distinct
    levels, rounded up to a power of two, as its photons (256 for a typical photo)."""
    gaussian = rng.uniform() < params.gaussian_noise_prob
    gray = rng.uniform() < params.gray_noise_prob
    channels = 1 if gray else image.shape[0]
    if gaussian:
        sigma = rng.uniform(*params.noise_range) / 255.0
        noise = rng.standard_normal((channels, *image.shape[1:])) * sigma
    else:
        scale = rng.uniform(*params.poisson_scale_range)
        plane = np.tensordot(_LUMA, image, axes=1)[None] if gray and image.shape[0] == 3 else image
        plane = plane[:1] if gray else plane
        levels = np.round(np.clip(plane, 0.0, 1.0) * 255.0) / 255.0
        photons = 2.0 ** np.ceil(np.log2(max(len(np.unique(levels)), 2)))
        noise = (rng.poisson(levels * photons) / photons - levels) * scale
    return np.broadcast_to(noise, image.shape)


def jpeg(image: Tensor, quality: int) -> Tensor:
    """A C×H×W image in [0, 1] (C = 1 or 3) stored as a JPEG of ``quality`` and decoded
    (Pillow/libjpeg, 4:2:0 chroma as a camera or website stores it): 8-bit values."""
    from PIL import Image as PILImage

    pixels = np.round(image.clamp(0.0, 1.0).permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(
        buffer, format="JPEG", quality=int(quality)
    )
    buffer.seek(0)
    with PILImage.open(buffer) as decoded:
        out = np.asarray(decoded, dtype=np.float32) / np.float32(255.0)
    out = out[..., None] if out.ndim == 2 else out
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def degrade_one(image: Tensor, rng: np.random.Generator, params: RealWorldParams) -> Tensor:
    """One C×H×W float image in [0, 1] through the chain (blur → resize by a random factor →
    noise → resize back → JPEG), clipped to [0, 1] after the noise as the official synthesis
    is; the result has the input's size."""
    h, w = image.shape[-2:]
    out = image.float()
    if params.blur_sigma[1] > 0:
        limit = 2 * min(h, w) - 1  # the largest kernel the mirrored border covers
        kernel = random_kernel(params, rng, limit if limit % 2 else limit - 1)
        out = convolve(out[None], torch.from_numpy(kernel))[0]
    factor = random_factor(params, rng)
    small = (max(1, int(h * factor)), max(1, int(w * factor)))
    out = resize(out, small, RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))])
    pixels = out.double().numpy()
    pixels = np.clip(pixels + random_noise(pixels, params, rng), 0.0, 1.0)
    out = torch.from_numpy(pixels.astype(np.float32))
    out = resize(out, (h, w), RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]).clamp(0.0, 1.0)
    if rng.uniform() < params.jpeg_prob:
        out = jpeg(out, round(rng.uniform(*params.jpeg_range)))
    return out


def degrade_realworld(clean: Tensor, rng: np.random.Generator, params: RealWorldParams) -> Tensor:
    """Each image of the N×C×H×W batch in [0, 1] through its own random chain
    (:func:`degrade_one`); same size, unquantised unless JPEG stored it."""
    out = [degrade_one(image.detach().cpu(), rng, params) for image in clean]
    return torch.stack(out).to(clean.device, clean.dtype)
