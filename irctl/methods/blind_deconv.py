"""Blind motion deblurring without a model: estimate the kernel, then Richardson–Lucy with it.

What a user has for a shaken photo when no trained model is at hand, and the row a deblurring
table needs beside the Richardson–Lucy oracle (which is given the true kernel). The kernel is
estimated coarse to fine by alternating two least-squares problems on the grey image:

- the latent sharp image under an L0 gradient prior, ``min ‖k ⊛ x − y‖² + λ‖∇x‖₀``, solved by
  half-quadratic splitting in the Fourier domain (Xu, Lu & Xu, "Image smoothing via L0
  gradient minimization", SIGGRAPH Asia 2011; used for deblurring by Xu, Zheng & Jia, "Unnatural
  L0 sparse representation for natural image deblurring", CVPR 2013, and Pan et al., CVPR 2014):
  only strong, step-like edges survive, which is what identifies a blur;
- the kernel from those edges' gradients, ``min ‖∇x ⊛ k − ∇y‖² + γ‖k‖²`` over the pixels whose
  gradients are coherent (Xu & Jia's r-map, "Two-phase kernel estimation for robust motion
  deblurring", ECCV 2010: texture such as fur, brick or craters, whose gradients cancel in a
  small window, misleads the estimate), as the k×k normal equations built from linear
  (zero-padded) correlations, so no wrap-around edge enters them; then made non-negative,
  thresholded, pruned to its main connected pieces, normalised and re-centred.

Everything is a pure NumPy function of its inputs. Like every classical blind method it fails
on some photos (periodic texture, too few edges); the held-out table shows how often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "BlindKernelParams",
    "ObservedEdges",
    "edge_coherence",
    "estimate_kernel",
    "kernel_from_gradients",
    "l0_latent",
    "observed_edges",
    "pyramid_sizes",
]


@dataclass(frozen=True)
class BlindKernelParams:
    """Settings of :func:`estimate_kernel`, chosen on training photos (astronaut, camera,
    coins, brick, moon, ihc) and the validation photo, never the held-out ones."""

    lam: float = 1e-2  # L0 weight on the latent's gradients (0–1 intensities)
    iterations: int = 5  # latent/kernel alternations per pyramid level
    gamma: float = 0.01  # Tikhonov weight on the kernel, relative to the mean gradient energy
    threshold: float = 0.05  # kernel values below this fraction of its peak are set to 0
    coherence: float = 0.5  # r-map threshold: gradients less coherent than this are ignored
    coherence_window: int = 5  # r-map window (pixels)


def _otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The kernel's transfer function on a ``shape`` grid, its centre moved to the origin."""
    padded = np.zeros(shape)
    kh, kw = kernel.shape
    padded[:kh, :kw] = kernel
    return np.fft.fft2(np.roll(padded, (-(kh // 2), -(kw // 2)), (0, 1)))


def _gradients(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward differences (circular), x to the right and y down."""
    return np.roll(x, -1, 1) - x, np.roll(x, -1, 0) - x


def l0_latent(blurred: np.ndarray, kernel: np.ndarray, lam: float) -> np.ndarray:
    """``argmin_x ‖k ⊛ x − y‖² + λ‖∇x‖₀`` by half-quadratic splitting (Xu et al. 2011): the
    auxiliary gradients g are ∇x where |∇x|² ≥ λ/β and 0 elsewhere, x is then the exact
    Fourier-domain minimiser of ‖k ⊛ x − y‖² + β‖∇x − g‖², and β doubles from 2λ to 10⁵.
    Circular boundaries: the caller pads ``blurred`` and ignores a margin."""
    shape = blurred.shape
    k_hat = _otf(kernel, shape)
    dx_hat = _otf(np.array([[1.0, -1.0]]), shape)  # x[i+1] − x[i], as _gradients
    dy_hat = _otf(np.array([[1.0], [-1.0]]), shape)
    numerator = np.conj(k_hat) * np.fft.fft2(blurred)
    k_energy = np.abs(k_hat) ** 2
    d_energy = np.abs(dx_hat) ** 2 + np.abs(dy_hat) ** 2
    x = blurred.copy()
    beta = 2.0 * lam
    while beta < 1e5:
        gx, gy = _gradients(x)
        keep = gx**2 + gy**2 >= lam / beta
        gx, gy = gx * keep, gy * keep
        divergence = (np.roll(gx, 1, 1) - gx) + (np.roll(gy, 1, 0) - gy)  # Dᵀg
        x = np.real(
            np.fft.ifft2(
                (numerator + beta * np.fft.fft2(divergence)) / (k_energy + beta * d_energy)
            )
        )
        beta *= 2.0
    return x


def edge_coherence(gx: np.ndarray, gy: np.ndarray, window: int) -> np.ndarray:
    """Xu & Jia's r-map: ``|Σ∇y| / (Σ|∇y| + 0.5)`` over a window — near 1 along an isolated
    edge, near 0 in texture whose gradients point every way (sums in 0–1 intensity units)."""
    area = window * window
    sx, sy = ndimage.uniform_filter(gx, window), ndimage.uniform_filter(gy, window)
    magnitude = ndimage.uniform_filter(np.hypot(gx, gy), window)
    return np.hypot(sx, sy) / (magnitude + 0.5 / area)


def _correlation(a: np.ndarray, b: np.ndarray, radius: int) -> np.ndarray:
    """``c[d] = Σ_p a[p]·b[p + d]`` for every offset |d| ≤ radius: linear, zeros outside."""
    h, w = a.shape
    shape = (h + 2 * radius + 1, w + 2 * radius + 1)
    full = np.real(np.fft.ifft2(np.conj(np.fft.fft2(a, shape)) * np.fft.fft2(b, shape)))
    rows = np.arange(-radius, radius + 1) % shape[0]
    cols = np.arange(-radius, radius + 1) % shape[1]
    return full[np.ix_(rows, cols)]


@dataclass(frozen=True)
class ObservedEdges:
    """What the kernel fit needs of the blurred image, the same for every alternation of a
    pyramid level: its gradients, zeroed outside the coherent pixels at least ``margin`` from
    the border (:func:`observed_edges`), and that mask."""

    gx: np.ndarray
    gy: np.ndarray
    mask: np.ndarray


def observed_edges(blurred: np.ndarray, margin: int, params: BlindKernelParams) -> ObservedEdges:
    """The blurred image's gradients on the pixels the kernel is fitted on: at least
    ``margin`` from the border, and coherent (:func:`edge_coherence` above
    ``params.coherence``)."""
    hx, hy = _gradients(blurred)
    mask = np.zeros_like(blurred)
    mask[margin:-margin, margin:-margin] = 1.0
    mask *= edge_coherence(hx, hy, params.coherence_window) > params.coherence
    return ObservedEdges(hx * mask, hy * mask, mask)


def kernel_from_gradients(
    latent: np.ndarray, observed: ObservedEdges, size: int, params: BlindKernelParams
) -> np.ndarray:
    """The size×size kernel (size odd) with ∇y ≈ ∇x ⊛ k on the observed edges' pixels: the
    normal equations ``(A + γ·tr(A)/n·I) k = b`` with A the gradients' autocorrelation and b
    their cross-correlation, then non-negative, thresholded, pruned to the connected pieces
    holding ≥ 10 % of the largest one's mass, summing to 1. A kernel that vanishes entirely is
    returned as the identity (a centred delta)."""
    radius = size // 2
    gx, gy = _gradients(latent)
    gx, gy = gx * observed.mask, gy * observed.mask
    # h[p] = Σ_d k[d]·g[p − d]  ⇒  Σ_d' k[d']·Σ_p g[p − d]·g[p − d'] = Σ_p g[p − d]·h[p]
    rhs = _correlation(gx, observed.gx, radius) + _correlation(gy, observed.gy, radius)
    auto = _correlation(gx, gx, 2 * radius) + _correlation(gy, gy, 2 * radius)
    n = size * size
    dy, dx = np.divmod(np.arange(n), size)
    normal = auto[dy[None, :] - dy[:, None] + 2 * radius, dx[None, :] - dx[:, None] + 2 * radius]
    ridge = params.gamma * max(np.trace(normal) / n, 1e-12)
    kernel = np.linalg.solve(normal + ridge * np.eye(n), rhs.reshape(-1)).reshape(size, size)
    kernel = np.maximum(kernel, 0.0)
    kernel[kernel < params.threshold * kernel.max()] = 0.0
    labels, count = ndimage.label(kernel > 0, structure=np.ones((3, 3)))
    if count > 1:
        mass = np.asarray(ndimage.sum(kernel, labels, range(1, count + 1)))
        kept = np.isin(labels, 1 + np.flatnonzero(mass >= 0.1 * mass.max()))
        kernel = kernel * kept
    total = kernel.sum()
    if total <= 0:
        kernel = np.zeros((size, size))
        kernel[radius, radius] = 1.0
        return kernel
    return kernel / total


def _centred(kernel: np.ndarray) -> np.ndarray:
    """The kernel shifted (bilinearly) so its centre of mass is its centre: a blur estimate is
    defined only up to a shift, and irctl's synthetic kernels are centred the same way."""
    size = kernel.shape[0]
    rows, cols = np.mgrid[:size, :size]
    cy, cx = (kernel * rows).sum(), (kernel * cols).sum()
    half = (size - 1) / 2.0
    shifted = np.maximum(ndimage.shift(kernel, (half - cy, half - cx), order=1), 0.0)
    return shifted / shifted.sum()


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-averaging (antialiased) resize; bilinear when enlarging."""
    import cv2

    h, w = shape
    mode = cv2.INTER_AREA if h < image.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=mode)


def pyramid_sizes(size: int) -> list[int]:
    """Odd kernel sizes from 5 (or ``size``, if smaller) up to ``size``, each about √2 times
    the previous: the coarse-to-fine levels, the image scaled by level size / ``size``."""
    sizes = [size]
    while sizes[-1] > 5:
        sizes.append(max(min(round(sizes[-1] / np.sqrt(2)) | 1, sizes[-1] - 2), 3))
    return sizes[::-1]


def estimate_kernel(
    image: np.ndarray, size: int, params: BlindKernelParams = BlindKernelParams()
) -> np.ndarray:
    """The size×size (odd) blur kernel of a shaken H×W×C (or H×W) image in [0, 1], estimated
    coarse to fine on its grey version: at each level the previous kernel is enlarged and
    refined by ``params.iterations`` alternations of :func:`l0_latent` and
    :func:`kernel_from_gradients`, λ falling by 1.1 each time. Non-negative, sums to 1,
    centred by its centre of mass (float64)."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"the kernel size must be odd and ≥ 3, got {size}")
    grey = (image.mean(axis=2) if image.ndim == 3 else image).astype(np.float64)
    kernel: np.ndarray | None = None
    for level in pyramid_sizes(size):
        scale = level / size
        shape = (round(grey.shape[0] * scale), round(grey.shape[1] * scale))
        observed = np.pad(_resize(grey, shape) if scale < 1 else grey, level, mode="edge")
        if kernel is None:  # a short horizontal stroke: any non-delta start breaks the tie
            kernel = np.zeros((level, level))
            kernel[level // 2, level // 2 - 1 : level // 2 + 2] = 1.0 / 3.0
        else:
            kernel = np.maximum(_resize(kernel, (level, level)), 0.0)
            kernel /= kernel.sum()
        edges = observed_edges(observed, 2 * level, params)
        lam = params.lam
        for _ in range(params.iterations):
            latent = l0_latent(observed, kernel, lam)
            kernel = _centred(kernel_from_gradients(latent, edges, level, params))
            lam = max(lam / 1.1, 1e-4)
    assert kernel is not None
    return kernel
