"""Building blocks shared by the networks (NAFNet, Chen et al. ECCV 2022)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of an NCHW tensor, with per-channel gain and bias (NAFNet)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class GainLayerNorm2d(nn.Module):
    """The channel layer norm of the official Refusion / IR-SDE code (fact sheet §3.1): a gain
    ``g`` of shape (1, C, 1, 1) and no bias, (x − mean)·rsqrt(var + eps)·g with eps 1e-5 in
    float32 and 1e-3 otherwise. Official checkpoints hold ``g``; NAFNet's :class:`LayerNorm2d`
    (gain and bias, eps 1e-6) is irctl's own networks' choice."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        var = torch.var(x, dim=1, unbiased=False, keepdim=True)
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) * (var + eps).rsqrt() * self.g


#: The layer norms a NAFNet can be built with (``NAFNetConfig.layer_norm``).
LAYER_NORMS: dict[str, type[nn.Module]] = {"nafnet": LayerNorm2d, "gain": GainLayerNorm2d}


class SimpleGate(nn.Module):
    """Split channels in two halves and multiply them: NAFNet's nonlinearity-free activation."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer-style embedding of (integer) timesteps, as the official Refusion code:
    f_k = exp(−k·ln(10⁴)/(dim/2 − 1)), output [sin(t f), cos(t f)]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoid(width) → Linear(width → 8·width) → SimpleGate → Linear(4·width → 4·width)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.mlp = nn.Sequential(
            nn.Linear(width, width * 8), SimpleGate(), nn.Linear(width * 4, width * 4)
        )

    @property
    def out_dim(self) -> int:
        return self.width * 4

    def forward(self, t: Tensor) -> Tensor:
        # The sinusoid is computed in float32 (as the official code) and cast to the MLP's dtype,
        # so a float64 or half-precision network runs; float32 results are unchanged.
        return self.mlp(sinusoidal_embedding(t, self.width).to(self.mlp[0].weight.dtype))


class ScalarEmbedding(nn.Module):
    """Global scalars (bokeh: source and target lens codes, and for the released latent-bokeh
    net the NTIRE disparity) embedded as in the official latent-bokeh network: scalar i times
    ``scales[i]`` gets the sinusoid of dim ``width``, the k embeddings are concatenated →
    Linear(k·width → 8·width) → SimpleGate → Linear(4·width → 4·width).

    The default scale is 10 per scalar: the official dataset feeds lens codes ×10 (f-numbers
    like 1.8 and 1.4 would be too close on the sinusoid otherwise) and the disparity as it is
    (scale 1)."""

    default_scale = 10.0

    def __init__(self, count: int, width: int, scales: tuple[float, ...] = ()) -> None:
        super().__init__()
        if scales and len(scales) != count:
            raise ValueError(f"{len(scales)} scales for {count} conditioning scalars")
        self.count = count
        self.width = width
        self.scales = tuple(scales) or (self.default_scale,) * count
        self.mlp = nn.Sequential(
            nn.Linear(count * width, width * 8), SimpleGate(), nn.Linear(width * 4, width * 4)
        )

    @property
    def out_dim(self) -> int:
        return self.width * 4

    def forward(self, scalars: Tensor) -> Tensor:
        if scalars.ndim != 2 or scalars.shape[1] != self.count:
            raise ValueError(f"expected N×{self.count} conditioning scalars, got {scalars.shape}")
        parts = [
            sinusoidal_embedding(scalars[:, i] * scale, self.width)
            for i, scale in enumerate(self.scales)
        ]
        return self.mlp(torch.cat(parts, dim=-1).to(self.mlp[0].weight.dtype))


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad right/bottom up to a multiple; replicate where the image is too small to
    reflect (reflect needs the pad to be smaller than the size)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
