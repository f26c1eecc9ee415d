"""DIRformer (DiffIR, Xia et al. ICCV 2023, §4.1): a Restormer-style 4-level transformer U-Net
whose every block is modulated by the 256-value image prior representation (IPR).

Block (paper Eqs. 6–8): x ← x + DMTA(LN(x), z), x ← x + DGFN(LN(x), z), where DMTA and DGFN
each first modulate their input with their own projection of the IPR, F' = a ⊙ F + b with
[a; b] = W z (no bias, no "1 + a"). DMTA is transposed attention: a C/h × C/h attention map per
head from L2-normalised queries and keys over all pixels, scaled by a learned temperature. DGFN
is a gated feed-forward: GELU(x₁) ⊙ x₂ after a depth-wise 3×3.

The output head is the task's (fact sheet §1.3): ``residual`` adds the input (motion deblur),
``plain`` does not (inpainting, whose input has the mask as a 4th channel), ``upscale`` runs the
body at a quarter of the output size (the input is pixel-unshuffled by 4/scale first) and ends
with two ×2 sub-pixel convs plus the nearest-upsampled input (×4, ×2, ×1 SR).

Because DMTA pools over every pixel of its input, a tile sees other statistics than the whole
image: tiled restores are close to, not equal to, the untiled one (measured in the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

OUTPUTS = ("residual", "plain", "upscale")
SKIP_UPSAMPLERS = ("nearest", "bicubic")
LAYER_NORMS = ("with_bias", "bias_free")


@dataclass(frozen=True)
class DIRformerConfig:
    """Sizes of a DIRformer (official names in brackets). Released models: deblur width 48,
    blocks [3, 5, 6, 6], 4 refinement blocks, FFN ×2, with_bias; SR width 64, [13, 1, 1, 1],
    13, ×2.2, bias_free; inpainting width 52, [1, 1, 1, 9], 0, ×1.8, with_bias."""

    width: int = 48  # dim
    blocks: tuple[int, ...] = (3, 5, 6, 6)  # num_blocks: levels 1–3 and the latent level
    refinement_blocks: int = 4  # num_refinement_blocks
    heads: tuple[int, ...] = (1, 2, 4, 8)
    ffn_expansion: float = 2.0  # ffn_expansion_factor
    layer_norm: str = "with_bias"  # LayerNorm_type: WithBias | BiasFree
    in_channels: int = 3  # inp_channels (inpainting: 4, the image and the mask)
    out_channels: int = 3
    output: str = "residual"  # residual | plain | upscale
    scale: int = 1  # output size / input size; only the upscale head changes size
    prior_dim: int = 256  # the IPR's length
    #: how the upscale head's skip enlarges the input: "nearest" (the official DIRformer) or
    #: "bicubic" (irctl's own SR models: the network then adds only the detail bicubic
    #: misses, the residual VDSR-style SR nets learn, and a small net learns it sooner)
    skip_upsampler: str = "nearest"

    def __post_init__(self) -> None:
        if len(self.blocks) != 4 or len(self.heads) != 4:
            raise ValueError("DIRformer has 4 levels: give 4 blocks and 4 heads")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.layer_norm not in LAYER_NORMS:
            raise ValueError(
                f"layer_norm must be one of {', '.join(LAYER_NORMS)}, got {self.layer_norm!r}"
            )
        if self.output == "upscale" and self.scale not in (1, 2, 4):
            raise ValueError(f"the upscale head makes ×4, ×2 or ×1 outputs, got scale {self.scale}")
        if self.output != "upscale" and self.scale != 1:
            raise ValueError(f"only the upscale head changes the size (scale {self.scale})")
        if self.output == "residual" and self.in_channels < self.out_channels:
            raise ValueError(
                f"the residual head adds the input's first {self.out_channels} channels; the "
                f"input has {self.in_channels}"
            )
        if self.skip_upsampler not in SKIP_UPSAMPLERS:
            raise ValueError(
                f"skip_upsampler must be one of {', '.join(SKIP_UPSAMPLERS)}, "
                f"got {self.skip_upsampler!r}"
            )

    @property
    def unshuffle(self) -> int:
        """The input's pixel-unshuffle: the upscale head's body runs at output size / 4."""
        return 4 // self.scale if self.output == "upscale" else 1

    @property
    def multiple(self) -> int:
        """Input sizes the network takes: three halvings inside, after the unshuffle."""
        return 8 * self.unshuffle


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel (Restormer): ``with_bias`` is
    (x − μ)/σ·w + b, ``bias_free`` is x/σ·w (no mean subtracted); eps 1e-5 inside the root."""

    def __init__(self, channels: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        var = x.var(dim=1, keepdim=True, unbiased=False)
        if self.bias is None:
            return x / torch.sqrt(var + 1e-5) * self.weight[:, None, None]
        mean = x.mean(dim=1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.weight[:, None, None] + self.bias[
            :, None, None
        ]


def _modulate(x: Tensor, prior: Tensor, projection: nn.Linear) -> Tensor:
    """F' = a ⊙ F + b, [a; b] = W z, per channel (paper Eq. 6)."""
    scale, shift = projection(prior)[..., None, None].chunk(2, dim=1)
    return x * scale + shift


class TransposedAttention(nn.Module):
    """DMTA (paper Eq. 7): attention across channels, per head, over all pixels."""

    def __init__(self, channels: int, heads: int, prior_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.modulation = nn.Linear(prior_dim, 2 * channels, bias=False)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.qkv_dw = nn.Conv2d(
            3 * channels, 3 * channels, 3, padding=1, groups=3 * channels, bias=False
        )
        self.out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor, prior: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(_modulate(x, prior, self.modulation))).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.out((attn @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """DGFN (paper Eq. 8): 1×1 to 2·hidden, depth-wise 3×3, GELU(x₁) ⊙ x₂, 1×1 back."""

    def __init__(self, channels: int, expansion: float, prior_dim: int) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.modulation = nn.Linear(prior_dim, 2 * channels, bias=False)
        self.project_in = nn.Conv2d(channels, 2 * hidden, 1, bias=False)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor, prior: Tensor) -> Tensor:
        x = self.project_in(_modulate(x, prior, self.modulation))
        gate, value = self.dw(x).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class PriorTransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, cfg: DIRformerConfig) -> None:
        super().__init__()
        bias = cfg.layer_norm == "with_bias"
        self.norm1 = ChannelLayerNorm(channels, bias)
        self.attn = TransposedAttention(channels, heads, cfg.prior_dim)
        self.norm2 = ChannelLayerNorm(channels, bias)
        self.ffn = GatedFeedForward(channels, cfg.ffn_expansion, cfg.prior_dim)

    def forward(self, x: Tensor, prior: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), prior)
        return x + self.ffn(self.norm2(x), prior)


class _Blocks(nn.ModuleList):
    def __init__(self, n: int, channels: int, heads: int, cfg: DIRformerConfig) -> None:
        super().__init__(PriorTransformerBlock(channels, heads, cfg) for _ in range(n))

    def forward(self, x: Tensor, prior: Tensor) -> Tensor:  # type: ignore[override]
        for block in self:
            x = block(x, prior)
        return x


def _down(c: int) -> nn.Sequential:
    """Halve the size, double the channels: 3×3 conv to c/2, pixel-unshuffle ×2."""
    return nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


def _up(c: int) -> nn.Sequential:
    """Double the size, halve the channels: 3×3 conv to 2c, pixel-shuffle ×2."""
    return nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1, bias=False), nn.PixelShuffle(2))


class DIRformer(nn.Module):
    """Î = DIRformer(input, IPR): input N×C×H×W (H, W multiples of ``cfg.multiple``), IPR N×256."""

    def __init__(self, cfg: DIRformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, heads, blocks = cfg.width, cfg.heads, cfg.blocks
        self.embed = nn.Conv2d(cfg.in_channels * cfg.unshuffle**2, w, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(_Blocks(blocks[i], w * 2**i, heads[i], cfg) for i in range(3))
        self.downs = nn.ModuleList(_down(w * 2**i) for i in range(3))
        self.latent = _Blocks(blocks[3], w * 8, heads[3], cfg)
        self.ups = nn.ModuleList(_up(w * 2**i) for i in (3, 2, 1))
        # levels 3 and 2 reduce the concatenated skip with a 1×1 conv; level 1 keeps 2·width
        self.reduce = nn.ModuleList(
            nn.Conv2d(w * 2**i, w * 2 ** (i - 1), 1, bias=False) for i in (3, 2)
        )
        self.decoders = nn.ModuleList(
            [
                _Blocks(blocks[2], w * 4, heads[2], cfg),
                _Blocks(blocks[1], w * 2, heads[1], cfg),
                _Blocks(blocks[0], w * 2, heads[0], cfg),
            ]
        )
        self.refinement = _Blocks(cfg.refinement_blocks, w * 2, heads[0], cfg)
        upscale = cfg.output == "upscale"
        # the SR tail: two (3×3 conv to 4× channels, pixel-shuffle ×2), always ×4 in total
        self.upsample = (
            nn.Sequential(
                nn.Conv2d(2 * w, 8 * w, 3, padding=1),
                nn.PixelShuffle(2),
                nn.Conv2d(2 * w, 8 * w, 3, padding=1),
                nn.PixelShuffle(2),
            )
            if upscale
            else None
        )
        self.output = nn.Conv2d(2 * w, cfg.out_channels, 3, padding=1, bias=upscale)

    @property
    def multiple(self) -> int:
        return self.cfg.multiple

    def forward(self, inp: Tensor, prior: Tensor) -> Tensor:
        x = F.pixel_unshuffle(inp, self.cfg.unshuffle) if self.cfg.unshuffle > 1 else inp
        x = self.embed(x)
        skips = []
        for blocks, down in zip(self.encoders, self.downs, strict=True):
            x = blocks(x, prior)
            skips.append(x)
            x = down(x)
        x = self.latent(x, prior)
        for i, (up, blocks) in enumerate(zip(self.ups, self.decoders, strict=True)):
            x = torch.cat([up(x), skips[2 - i]], dim=1)
            if i < len(self.reduce):
                x = self.reduce[i](x)
            x = blocks(x, prior)
        x = self.refinement(x, prior)
        if self.upsample is not None:
            x = self.upsample(x)
        out = self.output(x)
        if self.cfg.output == "residual":  # an inpainting input's mask channel is not added
            return out + inp[:, : self.cfg.out_channels]
        if self.cfg.output == "upscale":
            if self.cfg.scale == 1:
                return out + inp
            mode = self.cfg.skip_upsampler
            kwargs = {"align_corners": False} if mode == "bicubic" else {}
            return out + F.interpolate(inp, scale_factor=self.cfg.scale, mode=mode, **kwargs)
        return out
