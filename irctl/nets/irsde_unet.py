"""IR-SDE's noise network (Luo et al., ICML 2023): the conditional U-Net of every ``ir-sde.yml``
(deraining, deblurring, SR, inpainting, deshadow), and the denoising-SDE variant.

Layout (fact sheet; official ``DenoisingUNet_arch.py``), widths c_i = nf·2^i:

- input concat[x_t − μ, μ] (the denoising variant: x alone), reflect-padded to a multiple of
  2^depth, a 7×7 conv (no bias) to nf; a time MLP sinusoid(nf) → Linear(nf → 4nf) → GELU →
  Linear(4nf → 4nf);
- level i of the encoder: two ResBlocks at c_i, residual pre-norm linear attention, then a 4×4
  stride-2 conv c_i → c_{i+1} (a 3×3 conv at the deepest level: no downsampling there); the
  skips are the first ResBlock's output and the attention's;
- middle at c_depth: ResBlock, attention (linear; full softmax attention in the denoising
  variant), ResBlock;
- decoder, deepest level first: [concat a skip → ResBlock (c_{i+1} + c_i → c_{i+1})] ×2,
  attention, then nearest ×2 + 3×3 conv c_{i+1} → c_i (a 3×3 conv, no bias, at the top);
- concat the init features → ResBlock (2nf → nf) → 3×3 conv to the output; crop back.

A ResBlock: time → SiLU → Linear → (scale, shift); 3×3 conv (no bias) → ×(1 + scale) + shift →
SiLU → 3×3 conv (no bias) → SiLU, plus the input (a 1×1 conv, no bias, when the width changes).
Norms are the official gain-only channel layer norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irctl.nets.layers import GainLayerNorm2d, sinusoidal_embedding


@dataclass(frozen=True)
class IRSDEUNetConfig:
    """``nf`` (base width), ``depth`` (levels); ``mu_input`` False and ``middle_attention =
    "full"`` give the denoising-SDE variant, whose network sees x_t alone."""

    nf: int = 64
    depth: int = 4
    channels: int = 3
    mu_input: bool = True
    middle_attention: str = "linear"

    def __post_init__(self) -> None:
        if self.middle_attention not in ("linear", "full"):
            raise ValueError(
                f"middle_attention must be linear or full, got {self.middle_attention!r}"
            )
        if self.depth < 1 or self.nf < 1:
            raise ValueError(f"invalid IR-SDE U-Net sizes: nf {self.nf}, depth {self.depth}")

    @property
    def multiple(self) -> int:
        return 2**self.depth


def _conv(c_in: int, c_out: int, kernel: int = 3, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, time_dim: int) -> None:
        super().__init__()
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * c_out))
        self.conv1 = _conv(c_in, c_out)
        self.conv2 = _conv(c_out, c_out)
        self.skip = _conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        scale, shift = self.time_proj(temb)[..., None, None].chunk(2, dim=1)
        h = F.silu(self.conv1(x) * (scale + 1) + shift)
        return F.silu(self.conv2(h)) + self.skip(x)


class LinearAttention(nn.Module):
    """Softmax over the channels of q and over the positions of k, then a (d × e) context per
    head: linear in the number of pixels. Output through a 1×1 conv and a layer norm."""

    def __init__(self, c: int, heads: int = 4, head_dim: int = 32) -> None:
        super().__init__()
        self.heads, self.scale = heads, head_dim**-0.5
        self.qkv = nn.Conv2d(c, 3 * heads * head_dim, 1, bias=False)
        self.out = nn.Sequential(nn.Conv2d(heads * head_dim, c, 1), GainLayerNorm2d(c))

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        q, k, v = (t.reshape(n, self.heads, -1, h * w) for t in self.qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v / (h * w))
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.out(out.reshape(n, -1, h, w))


class FullAttention(nn.Module):
    """Softmax attention over all positions (the denoising variant's middle)."""

    def __init__(self, c: int, heads: int = 4, head_dim: int = 32) -> None:
        super().__init__()
        self.heads, self.scale = heads, head_dim**-0.5
        self.qkv = nn.Conv2d(c, 3 * heads * head_dim, 1, bias=False)
        self.out = nn.Conv2d(heads * head_dim, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        q, k, v = (t.reshape(n, self.heads, -1, h * w) for t in self.qkv(x).chunk(3, dim=1))
        attn = torch.einsum("bhdi,bhdj->bhij", q * self.scale, k).softmax(dim=-1)
        out = torch.einsum("bhij,bhdj->bhid", attn, v)  # (n, heads, pixels, head_dim)
        return self.out(out.permute(0, 1, 3, 2).reshape(n, -1, h, w))


class AttentionBlock(nn.Module):
    """x + attention(layer_norm(x))."""

    def __init__(self, c: int, full: bool = False) -> None:
        super().__init__()
        self.norm = GainLayerNorm2d(c)
        self.attn = FullAttention(c) if full else LinearAttention(c)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(self.norm(x))


class IRSDEUNet(nn.Module):
    """ε̂ = net(x_t, μ, t) (the denoising variant: net(x_t, t))."""

    def __init__(self, cfg: IRSDEUNetConfig) -> None:
        super().__init__()
        self.config = cfg
        nf, depth = cfg.nf, cfg.depth
        time_dim = 4 * nf
        self.init = _conv(cfg.channels * (2 if cfg.mu_input else 1), nf, 7)
        self.time_embedding = nn.Sequential(
            nn.Linear(nf, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(depth):
            c_in, c_out = nf * 2**i, nf * 2 ** (i + 1)
            last = i == depth - 1
            down = _conv(c_in, c_out) if last else nn.Conv2d(c_in, c_out, 4, 2, 1)
            self.downs.append(
                nn.ModuleList(
                    [
                        ResBlock(c_in, c_in, time_dim),
                        ResBlock(c_in, c_in, time_dim),
                        AttentionBlock(c_in),
                        down,
                    ]
                )
            )
            up = (
                _conv(c_out, c_in)
                if i == 0
                else nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_out, c_in, 3, 1, 1)
                )
            )
            self.ups.insert(
                0,
                nn.ModuleList(
                    [
                        ResBlock(c_out + c_in, c_out, time_dim),
                        ResBlock(c_out + c_in, c_out, time_dim),
                        AttentionBlock(c_out),
                        up,
                    ]
                ),
            )
        mid = nf * 2**depth
        self.mid_block1 = ResBlock(mid, mid, time_dim)
        self.mid_attn = AttentionBlock(mid, full=cfg.middle_attention == "full")
        self.mid_block2 = ResBlock(mid, mid, time_dim)
        self.final_res_block = ResBlock(2 * nf, nf, time_dim)
        self.final_conv = nn.Conv2d(nf, cfg.channels, 3, 1, 1)

    @property
    def multiple(self) -> int:
        return self.config.multiple

    def forward(self, x_t: Tensor, *args: Tensor | int) -> Tensor:
        if self.config.mu_input:
            mu, t = args
            x = torch.cat([x_t - mu, mu], dim=1)
        else:
            (t,) = args
            x = x_t
        n = x.shape[0]
        if not torch.is_tensor(t):
            t = torch.full((n,), float(t), device=x.device)
        elif t.ndim == 0:
            t = t.expand(n)
        h, w = x.shape[-2:]
        m = self.multiple
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="reflect")
        x = self.init(x)
        first = x
        freqs = sinusoidal_embedding(t.to(x.device), self.config.nf).to(x.dtype)
        temb = self.time_embedding(freqs)
        skips = []
        for block1, block2, attn, down in self.downs:
            x = block1(x, temb)
            skips.append(x)
            x = attn(block2(x, temb))
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, temb)), temb)
        for block1, block2, attn, up in self.ups:
            x = block1(torch.cat([x, skips.pop()], dim=1), temb)
            x = attn(block2(torch.cat([x, skips.pop()], dim=1), temb))
            x = up(x)
        x = self.final_res_block(torch.cat([x, first], dim=1), temb)
        return self.final_conv(x)[..., :h, :w]
