"""MATLAB ``imresize`` bicubic resampling, the SR literature's LR degradation and upsampler.

NTIRE stereo SR (as Flickr1024 and most SR benchmarks) made its LR images with MATLAB's
antialiased bicubic, so that is the degradation an SR model learns to invert; SR methods then
start from the same kernel the other way (Refusion's μ is the LR image bicubic-upsampled ×4,
fact sheet §0), and "bicubic" is the classical baseline a user would otherwise run.

The resampling is separable: each output index takes a few input taps (4 when upscaling,
4·factor when downscaling, where the kernel is stretched to antialias) with weights from Keys'
cubic (a = −0.5), normalised per output pixel; taps past the border are mirrored (MATLAB's
symmetric padding). :func:`contributions` builds (indices, weights) per axis; :func:`imresize`
applies them with a gather, so the cost is proportional to the taps, not to the image width
(a dense matrix would cost 1500 multiply-adds per output pixel of a 6000-wide upscale).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = −0.5 (MATLAB's and PIL's ``bicubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return near + far


@lru_cache(maxsize=64)
def contributions(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each n_out × taps: output pixel i = Σ_k weights[i, k]·x[indices[i, k]].

    As MATLAB's ``contributions``: output pixel i (1-based) samples input coordinate
    u = i/s + ½(1 − 1/s) with s = n_out/n_in; for s < 1 the kernel is stretched by 1/s
    (antialiasing); weights are normalised per output pixel; indices past either border are
    mirrored (symmetric padding, the edge pixel repeated). Cached: one pair per size.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} → {n_out}")
    scale = n_out / n_in
    stretch = min(scale, 1.0)
    width = 4.0 / stretch
    u = np.arange(1, n_out + 1, dtype=np.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    weights = stretch * cubic(stretch * (u[:, None] - idx))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    keep = np.any(weights != 0.0, axis=0)  # drop tap columns that are zero for every output
    return src[:, keep], weights[:, keep]


def _resize_axis(x: Tensor, n_out: int, dim: int) -> Tensor:
    idx, w = contributions(x.shape[dim], n_out)
    index = torch.from_numpy(idx.reshape(-1)).to(x.device)
    taps = torch.from_numpy(w).to(x.device, x.dtype)
    gathered = x.movedim(dim, -1).index_select(-1, index)
    gathered = gathered.reshape(*gathered.shape[:-1], n_out, idx.shape[1])
    return (gathered * taps).sum(-1).movedim(-1, dim)


def imresize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """MATLAB ``imresize(x, [H, W], 'bicubic')`` of an …×H×W tensor (rows first, as MATLAB).

    Float in, float out, no clamping (upsampling overshoots at edges, as μ does in the
    official Refusion code)."""
    if not x.is_floating_point():
        raise TypeError(f"imresize needs a float tensor, got {x.dtype}")
    h, w = size
    out = x if h == x.shape[-2] else _resize_axis(x, h, x.ndim - 2)
    return out if w == x.shape[-1] else _resize_axis(out, w, x.ndim - 1)


def upscale(x: Tensor, factor: int) -> Tensor:
    """×``factor`` bicubic upsampling of an …×h×w tensor to …×(factor·h)×(factor·w)."""
    return imresize(x, (x.shape[-2] * factor, x.shape[-1] * factor))


def downscale(x: Tensor, factor: int) -> Tensor:
    """×1/``factor`` antialiased bicubic of an …×H×W tensor whose H and W are multiples of it."""
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"{h}x{w} is not a multiple of the factor {factor}; mod-crop first")
    return imresize(x, (h // factor, w // factor))


def torch_bicubic_upscale(x: Tensor, factor: int) -> Tensor:
    """×``factor`` upsampling exactly as IR-SDE's SISR code makes its network's input
    (codes/utils/deg_utils.py ``upscale``: ``F.interpolate(x, scale_factor=4, mode='bicubic')``,
    used by codes/config/sisr/train.py and test.py on the LR image before the SDE): PyTorch's
    bicubic, Keys' cubic with a = −0.75 (not MATLAB's −0.5), half-pixel centres
    (align_corners=False), edge pixels repeated, no antialiasing, unclamped. The released SR
    weights were trained on this input, so their task feeds them this and not :func:`upscale`.
    ``x`` is …×h×w float; the result is …×(factor·h)×(factor·w) of the same dtype."""
    import torch.nn.functional as F

    if not x.is_floating_point():
        raise TypeError(f"bicubic upsampling needs a float tensor, got {x.dtype}")
    lead = x.shape[:-2]
    planes = x.reshape(1, -1, *x.shape[-2:])
    out = F.interpolate(planes, scale_factor=factor, mode="bicubic", align_corners=False)
    return out.reshape(*lead, *out.shape[-2:])
