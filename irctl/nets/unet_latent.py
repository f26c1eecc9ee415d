"""The U-Net compressor of latent Refusion (Luo et al., CVPRW 2023, §4.1, Fig. 3/4).

An encoder maps an image to a low-resolution latent z plus its multi-scale features H; a decoder
maps (z, H) back to an image. Unlike a VAE, the decoder receives the encoder's skip connections,
so the latent only has to carry what the restoration changes (haze density, defocus) while the
LQ image's high-resolution detail reaches the output through H. Latent Refusion runs its SDE on z
and decodes the restored latent with the LQ image's skips.

Layout of the official ``unet-latent`` UNet (fact sheet §3.3), with c_i = ch·[1, *mult]:

- a 3×3 init conv, image → c_0;
- encoder level i: ``blocks`` ResBlocks at width c_i, then a 4×4 stride-2 conv c_i → c_{i+1}
  (at the deepest level a 3×3 conv c_i → c_{i+1} that keeps the size); a 1×1 conv → latent.
  H = [init feature, every ResBlock output], so every skip of level i has c_i channels;
- decoder: a 1×1 conv latent → c_D; level i, deep → shallow: ``blocks`` × [concat the next skip
  (H popped from the end) → ResBlock (c_{i+1} + c_i → c_{i+1})], then nearest ×2 + 3×3 conv
  c_{i+1} → c_i (a 3×3 conv only at the top level); a final 3×3 conv on (x + init feature).

So channel counts change in the down/up convs, not in the encoder's ResBlocks; the wide levels
run at low resolution. Biases follow the official code: its ``default_conv`` (init, ResBlock and
latent convs, the deepest 3×3 and the top 3×3) has none, the strided down conv, the upsampling
conv and the final conv have one. With these, the paper's configs come out at the official sizes
(bokeh: ch 64, mult (1, 2, 4), latent 4, attention: 6.16M parameters, "6M" in the paper).

The downscale factor is 2^(len(mult) − 1); inputs are reflect-padded right/bottom to a multiple
of 2^len(mult), as the official code does (so latents always have even sizes), and the output is
cropped back.

No normalisation in the ResBlocks (the official ResBlock has none either): a GroupNorm's
statistics pool over the whole input, so a tile would not see the statistics of the whole image
and tiled encoding would differ from untiled far beyond the receptive field. Without it, and with
``attention`` off, the compressor is strictly local (each output pixel depends on a bounded
window), which is what lets irctl tile it on images of any size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irctl.nets.layers import pad_to_multiple


@dataclass(frozen=True)
class CompressorConfig:
    """Sizes of the compressor (official names in brackets).

    ``channels`` (ch) is the base width, ``mult`` (ch_mult) the per-level multipliers of it
    (the widths are ch·[1, *mult]), ``latent_channels`` (embed_dim) the channels of z,
    ``blocks`` the ResBlocks per level. ``attention`` adds the official global linear attention
    at the deepest level of encoder and decoder; it makes every output pixel depend on the whole
    image, which breaks tiling, so it is off by default."""

    channels: int = 8
    mult: tuple[int, ...] = (1, 2, 4)
    latent_channels: int = 4
    blocks: int = 2
    attention: bool = False
    image_channels: int = 3

    def __post_init__(self) -> None:
        if not self.mult or self.blocks < 1 or self.channels < 1 or self.latent_channels < 1:
            raise ValueError(f"invalid compressor config: {self}")

    @property
    def widths(self) -> list[int]:
        """c_0 … c_D = ch·[1, *mult]."""
        return [self.channels * m for m in (1, *self.mult)]

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
    """The encoder's features H for the decoder (init feature first, then every ResBlock
    output, shallow to deep), and the unpadded input size (h, w) the decoder crops back to."""

    features: list[Tensor]
    size: tuple[int, int]


def _conv(c_in: int, c_out: int, k: int = 3, bias: bool = False) -> nn.Conv2d:
    """The official ``default_conv``: 'same' padding and, by default, no bias."""
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias)


class ResBlock(nn.Module):
    """Official ResBlock without time input: SiLU(conv(SiLU(conv(x)))) + skip(x), 3×3 convs
    without bias; the skip is a 1×1 conv (no bias) when the width changes. No normalisation
    (module docstring: it would make the compressor non-local)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out)
        self.conv2 = _conv(c_out, c_out)
        self.skip = _conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(self.conv2(F.silu(self.conv1(x)))) + self.skip(x)


class ChannelNorm(nn.Module):
    """The official ``LayerNorm``: per pixel over channels, gain only, eps 1e-5 in fp32 and 1e-3
    otherwise (local, unlike GroupNorm)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * (var + eps).rsqrt() * self.g


class LinearAttention(nn.Module):
    """Residual pre-norm linear attention, 4 heads × 32, as at the official deepest level:
    x + Norm(Conv1×1(attn(Norm(x)))). Per head, q is softmaxed over its channels and k over the
    pixels, so the cost is linear in the pixel count, but every output pixel sees all pixels.
    Like the official code, v is divided by the pixel count before the k·v context."""

    def __init__(self, c: int, heads: int = 4, head_dim: int = 32) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = ChannelNorm(c)
        self.qkv = nn.Conv2d(c, 3 * heads * head_dim, 1, bias=False)
        self.out = nn.Sequential(nn.Conv2d(heads * head_dim, c, 1), ChannelNorm(c))

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.heads, self.head_dim, h * w)
        q, k, v = qkv.unbind(1)
        q = q.softmax(dim=-2) * self.head_dim**-0.5
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v / (h * w))
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(n, -1, h, w)
        return x + self.out(out)


class UNetCompressor(nn.Module):
    """E: image → (z, H) and D: (z, H) → image; see the module docstring for the layout."""

    def __init__(self, config: CompressorConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        levels = len(config.mult)
        self.init = _conv(config.image_channels, widths[0])
        self.enc_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.dec_blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(levels):
            c_in, c_out = widths[i], widths[i + 1]
            deepest = i == levels - 1
            self.enc_blocks.append(
                nn.ModuleList(ResBlock(c_in, c_in) for _ in range(config.blocks))
            )
            self.downs.append(
                _conv(c_in, c_out) if deepest else nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
            )
        for i in reversed(range(levels)):
            c_in, c_out = widths[i], widths[i + 1]
            blocks = [ResBlock(c_out + c_in, c_out) for _ in range(config.blocks)]
            self.dec_blocks.append(nn.ModuleList(blocks))
            self.ups.append(
                _conv(c_out, c_in)
                if i == 0
                else nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"), _conv(c_out, c_in, bias=True)
                )
            )
        deep = widths[-2]  # width of the deepest level's ResBlocks
        self.enc_attn = LinearAttention(deep) if config.attention else nn.Identity()
        self.dec_attn = LinearAttention(widths[-1]) if config.attention else nn.Identity()
        self.to_latent = _conv(widths[-1], config.latent_channels, 1)
        self.from_latent = _conv(config.latent_channels, widths[-1], 1)
        self.final = _conv(widths[0], config.image_channels, bias=True)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the latent of an image of this size: padded size / factor."""
        m, f = self.config.multiple, self.config.factor
        return -(-height // m) * m // f, -(-width // m) * m // f

    def encode(self, x: Tensor) -> tuple[Tensor, Skips]:
        """z (N × latent_channels × latent_size) and the skips H, for any image size."""
        size = (x.shape[-2], x.shape[-1])
        h = self.init(pad_to_multiple(x, self.config.multiple))
        features = [h]
        last = len(self.enc_blocks) - 1
        for level, (blocks, down) in enumerate(zip(self.enc_blocks, self.downs, strict=True)):
            for j, block in enumerate(blocks):
                h = block(h)
                if level == last and j == len(blocks) - 1:
                    h = self.enc_attn(h)  # official: attention output is the level's last skip
                features.append(h)
            h = down(h)
        return self.to_latent(h), Skips(features, size)

    def decode(self, z: Tensor, skips: Skips) -> Tensor:
        """D(z, H): any latent of the skips' size (e.g. a restored one), cropped to the size of
        the image the skips came from."""
        features = list(skips.features)
        if z.shape[-2:] != features[-1].shape[-2:]:
            raise ValueError(
                f"latent of size {tuple(z.shape[-2:])} does not match skips of latent size "
                f"{tuple(features[-1].shape[-2:])}"
            )
        h = self.from_latent(z)
        for level, (blocks, up) in enumerate(zip(self.dec_blocks, self.ups, strict=True)):
            for block in blocks:
                h = block(torch.cat([h, features.pop()], dim=1))
            if level == 0:
                h = self.dec_attn(h)
            h = up(h)
        out = self.final(h + features.pop())
        assert not features, "every skip is used exactly once"
        return out[..., : skips.size[0], : skips.size[1]]

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(*self.encode(x))


def latent_replacing_loss(
    model: UNetCompressor, lq: Tensor, gt: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """The paper's latent-replacing training (Fig. 4), plus the official code's regulariser:

    L = |D(E(LQ), H_LQ) − LQ|₁ + |D(E(GT), H_LQ) − GT|₁
        + 0.001·(|mean z_LQ − mean LQ| + |std z_LQ − 0.5·std LQ|).

    The first term keeps the U-Net an accurate codec, the second teaches the decoder to build the
    HQ image from an HQ latent and the LQ skips (what it gets at test time), and the third keeps
    the latent on the image's scale so the SDE's λ means what it means in pixel space. L1 terms
    are means over all elements; the regulariser's mean and (unbiased) std are over the whole
    batch tensor, as in the official code. No adversarial or KL term."""
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
