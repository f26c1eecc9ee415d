"""The U-Net compressor of latent Refusion (Luo et al., CVPRW 2023, §4.1, Fig. 3/4).

An encoder maps an image to a low-resolution latent z plus its multi-scale features H; a decoder
maps (z, H) back to an image. Unlike a VAE, the decoder receives the encoder's skip connections,
so the latent only has to carry what the restoration changes (haze density, defocus) while the
LQ image's high-resolution detail reaches the output through H. Latent Refusion runs its SDE on z
and decodes the restored latent with the LQ image's skips.

Layout after the official ``unet-latent`` UNet (fact sheet §3.3): channels c_i = ch·[1, *mult];
a 3×3 init conv; per level ``blocks`` ResBlocks, a 4×4 stride-2 conv between levels (a 3×3 conv
at the deepest, which keeps its size); a 1×1 conv to the latent. H is the init feature and every
ResBlock output. The decoder mirrors it, concatenating one skip before each ResBlock, upsampling
nearest ×2 + 3×3 conv, and ends with a 3×3 conv on (x + init feature). Inputs are reflect-padded
to a multiple of 2^len(mult) and the output cropped back.

ResBlocks have no normalisation: a GroupNorm's statistics pool over the whole input, so a tile
would not see the statistics of the whole image and tiled encoding would differ from untiled
far beyond the receptive field. Without it (and with ``attention`` off) the compressor is
strictly local, which is what lets irctl tile it on images of any size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class CompressorConfig:
    channels: int = 8
    mult: tuple[int, ...] = (1, 2, 4)
    latent_channels: int = 4
    blocks: int = 2
    attention: bool = (
        False  # global linear attention at the deepest level (official); breaks tiling
    )
    image_channels: int = 3

    @property
    def factor(self) -> int:
        """Downscale factor image → latent: one halving between consecutive levels."""
        return 2 ** (len(self.mult) - 1)

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this (as the official code does)."""
        return 2 ** len(self.mult)


@dataclass
class Skips:
    """The encoder's features for the decoder, and the unpadded input size to crop back to."""

    features: list[Tensor]
    size: tuple[int, int]


class ResBlock(nn.Module):
    """Two 3×3 conv + SiLU with a residual (a 1×1 conv when the width changes); no time input."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.silu(self.conv1(F.silu(x))))
        return self.skip(x) + h


class LinearAttention(nn.Module):
    """Residual pre-norm linear attention (4 heads × 32), as the official deepest level."""

    def __init__(self, c: int, heads: int = 4, head_dim: int = 32) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.GroupNorm(1, c)
        self.qkv = nn.Conv2d(c, 3 * heads * head_dim, 1, bias=False)
        self.out = nn.Conv2d(heads * head_dim, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, self.head_dim, h * w).unbind(1)
        q = q.softmax(dim=-2) * self.head_dim**-0.5
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(n, -1, h, w)
        return x + self.out(out)


def _pad(x: Tensor, multiple: int) -> Tensor:
    h, w = x.shape[-2:]
    pad = (0, (-w) % multiple, 0, (-h) % multiple)
    if pad == (0, 0, 0, 0):
        return x
    mode = "reflect" if pad[1] < w and pad[3] < h else "replicate"
    return F.pad(x, pad, mode=mode)


class UNetCompressor(nn.Module):
    def __init__(self, config: CompressorConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.channels * m for m in (1, *config.mult)]
        levels = len(config.mult)
        self.init = nn.Conv2d(config.image_channels, widths[0], 3, padding=1)
        self.enc_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        skip_widths = [widths[0]]
        c = widths[0]
        for i in range(levels):
            blocks = nn.ModuleList()
            for _ in range(config.blocks):
                blocks.append(ResBlock(c, widths[i + 1]))
                c = widths[i + 1]
                skip_widths.append(c)
            self.enc_blocks.append(blocks)
            last = i == levels - 1
            self.downs.append(
                nn.Conv2d(c, c, 3, padding=1) if last else nn.Conv2d(c, c, 4, stride=2, padding=1)
            )
        self.enc_attn = LinearAttention(c) if config.attention else nn.Identity()
        self.to_latent = nn.Conv2d(c, config.latent_channels, 1)
        self.from_latent = nn.Conv2d(config.latent_channels, c, 1)
        self.dec_attn = LinearAttention(c) if config.attention else nn.Identity()
        self.dec_blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in reversed(range(levels)):
            blocks = nn.ModuleList()
            for _ in range(config.blocks):
                skip = skip_widths.pop()
                blocks.append(ResBlock(c + skip, widths[i + 1]))
                c = widths[i + 1]
            self.dec_blocks.append(blocks)
            out = widths[i]
            top = i == 0
            self.ups.append(
                nn.Conv2d(c, out, 3, padding=1)
                if top
                else nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, out, 3, padding=1)
                )
            )
            c = out
        assert skip_widths == [widths[0]]  # the init feature, added before the final conv
        self.final = nn.Conv2d(c, config.image_channels, 3, padding=1)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        m, f = self.config.multiple, self.config.factor
        return -(-height // m) * m // f, -(-width // m) * m // f

    def encode(self, x: Tensor) -> tuple[Tensor, Skips]:
        size = (x.shape[-2], x.shape[-1])
        h = self.init(_pad(x, self.config.multiple))
        features = [h]
        for blocks, down in zip(self.enc_blocks, self.downs, strict=True):
            for block in blocks:
                h = block(h)
                features.append(h)
            h = down(h)
        z = self.to_latent(self.enc_attn(h))
        return z, Skips(features, size)

    def decode(self, z: Tensor, skips: Skips) -> Tensor:
        features = list(skips.features)
        h = self.dec_attn(self.from_latent(z))
        for blocks, up in zip(self.dec_blocks, self.ups, strict=True):
            for block in blocks:
                h = block(torch.cat([h, features.pop()], dim=1))
            h = up(h)
        out = self.final(h + features.pop())
        return out[..., : skips.size[0], : skips.size[1]]

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(*self.encode(x))


def latent_replacing_loss(
    model: UNetCompressor, lq: Tensor, gt: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """The paper's latent-replacing training (Fig. 4), plus the official code's regulariser:

    L = |D(E(LQ), H_LQ) − LQ|₁ + |D(E(GT), H_LQ) − GT|₁
        + 0.001·(|mean z_LQ − mean LQ| + |std z_LQ − 0.5·std LQ|),

    the first term keeps the U-Net an accurate codec, the second teaches the decoder to build the
    HQ image from an HQ latent and the LQ skips (what it gets at test time), and the third keeps
    the latent on the image's scale so the SDE's λ means what it means in pixel space. Means and
    stds are over the whole batch. No adversarial or KL term."""
    z_lq, skips_lq = model.encode(lq)
    z_gt, _ = model.encode(gt)
    rec_lq = (model.decode(z_lq, skips_lq) - lq).abs().mean()
    rec_gt = (model.decode(z_gt, skips_lq) - gt).abs().mean()
    reg = (z_lq.mean() - lq.mean()).abs() + (z_lq.std() - 0.5 * lq.std()).abs()
    loss = rec_lq + rec_gt + 0.001 * reg
    scalars = {
        "loss": float(loss.detach()),
        "rec_lq": float(rec_lq.detach()),
        "rec_gt": float(rec_gt.detach()),
        "latent_reg": float(reg.detach()),
    }
    return loss, scalars
