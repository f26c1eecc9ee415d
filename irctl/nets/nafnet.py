"""NAFNet (Chen et al., ECCV 2022) and the time-conditioned variant used by Refusion (§4.1).

The conditional network follows the official Refusion ``ConditionalNAFNet``: input
concat[x_t − μ, μ], a time embedding that modulates every block with scale/shift (before the
attention part and before the FFN), and an ε̂ output with no global residual. The plain network
is NAFNet's L1 regression model (global residual onto the input), the baseline Refusion compares
against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irctl.nets.layers import LAYER_NORMS, ScalarEmbedding, SimpleGate, TimeEmbedding


@dataclass(frozen=True)
class NAFNetConfig:
    """Sizes of a NAFNet. ``paper`` for Refusion is width 64, enc [1,1,1,28], mid 1, dec [1,1,1,1]."""

    width: int = 16
    enc_blocks: tuple[int, ...] = (1, 1, 1, 1)
    middle_blocks: int = 1
    dec_blocks: tuple[int, ...] = (1, 1, 1, 1)
    channels: int = 3
    cond_scalars: int = 0  # global conditioning scalars (bokeh lens codes); 0 = none
    #: each scalar's factor before its sinusoid (default 10 each, see ScalarEmbedding); the
    #: released latent-bokeh net: [10, 10, 1] (lens codes ×10, disparity as it is)
    cond_scale: tuple[float, ...] = ()
    #: initialise each upsampling conv with ICNR (:func:`icnr_`) instead of PyTorch's default
    icnr: bool = False
    #: "nafnet": NAFNet's LayerNorm2d (gain and bias); "gain": the official Refusion/IR-SDE
    #: layer norm (gain only), what the authors' released checkpoints hold
    layer_norm: str = "nafnet"
    #: add the intro conv's features to the decoder's output before the ending conv (the
    #: official latent-dehazing NAFNet's extra global skip, fact sheet §3.2)
    global_skip: bool = False

    def __post_init__(self) -> None:
        if len(self.enc_blocks) != len(self.dec_blocks):
            raise ValueError("enc_blocks and dec_blocks must have the same length")
        if self.cond_scale and len(self.cond_scale) != self.cond_scalars:
            raise ValueError(
                f"cond_scale has {len(self.cond_scale)} values for {self.cond_scalars} "
                "conditioning scalars"
            )
        if self.layer_norm not in LAYER_NORMS:
            raise ValueError(
                f"layer_norm must be one of {', '.join(LAYER_NORMS)}, got {self.layer_norm!r}"
            )

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this (one halving per encoder level)."""
        return 2 ** len(self.enc_blocks)


@torch.no_grad()
def icnr_(conv: nn.Conv2d, scale: int = 2) -> None:
    """ICNR initialisation (Aitken et al. 2017, "Checkerboard artifact free sub-pixel
    convolution") of a conv followed by ``PixelShuffle(scale)``: the scale² sub-pixel outputs of
    each shuffled channel get the same weights, so at initialisation the pair is conv +
    nearest-neighbour upsampling. With PyTorch's default, independent sub-pixel weights start as
    a checkerboard of period ``scale``, which the shadow regression baseline had not trained
    out after 3 000 steps (README, shadow removal: 0.44 → 0.15 grey levels of 4-px grid)."""
    out_channels = conv.out_channels
    if out_channels % (scale * scale):
        raise ValueError(f"{out_channels} output channels do not shuffle by {scale}")
    # Every scale²-th row of the conv's own default initialisation (same fan-in, same bound),
    # repeated: no extra random draws, so the rest of a seeded network is unchanged.
    sub = conv.weight[:: scale * scale].clone()
    conv.weight.copy_(sub.repeat_interleave(scale * scale, dim=0))
    if conv.bias is not None:
        bias = conv.bias.view(-1, scale * scale)
        bias.copy_(bias[:, :1].expand_as(bias))


class NAFBlock(nn.Module):
    """NAFNet block; with ``time_dim`` the LN outputs are modulated by x(1 + scale) + shift.

    With ``cond_dim`` a global condition (bokeh's lens embedding) modulates the FFN after its
    SimpleGate, before the last 1×1 conv, as the official latent-bokeh block does."""

    def __init__(
        self,
        c: int,
        time_dim: int | None = None,
        cond_dim: int | None = None,
        layer_norm: str = "nafnet",
    ) -> None:
        super().__init__()
        norm = LAYER_NORMS[layer_norm]
        self.time_proj = (
            nn.Sequential(SimpleGate(), nn.Linear(time_dim // 2, c * 4)) if time_dim else None
        )
        self.cond_proj = (
            nn.Sequential(SimpleGate(), nn.Linear(cond_dim // 2, c * 2)) if cond_dim else None
        )
        self.norm1 = norm(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv3 = nn.Conv2d(c, c, 1)
        self.norm2 = norm(c)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        # Zero-initialised residual scales: every block starts as the identity (NAFNet).
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(
        self, inp: Tensor, temb: Tensor | None = None, cemb: Tensor | None = None
    ) -> Tensor:
        modulation = None
        if self.time_proj is not None and temb is not None:
            modulation = self.time_proj(temb)[..., None, None].chunk(4, dim=1)
        return self.modulated(inp, modulation, cemb)

    def modulated(
        self,
        inp: Tensor,
        modulation: tuple[Tensor, ...] | None,
        cemb: Tensor | None = None,
    ) -> Tensor:
        """The block with its layer norms' outputs modulated by ``modulation`` = (shift_att,
        scale_att, shift_ffn, scale_ffn) as x(1 + scale) + shift (None: unmodulated)."""
        if modulation is not None:
            shift_att, scale_att, shift_ffn, scale_ffn = modulation
        else:
            shift_att = scale_att = shift_ffn = scale_ffn = None
        x = self.norm1(inp)
        if scale_att is not None:
            x = x * (1 + scale_att) + shift_att
        # One statement per layer: each input is let go as soon as its layer is done.
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.gate(x)
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.norm2(y)
        if scale_ffn is not None:
            x = x * (1 + scale_ffn) + shift_ffn
        x = self.gate(self.conv4(x))
        if self.cond_proj is not None and cemb is not None:
            scale_cond, shift_cond = self.cond_proj(cemb)[..., None, None].chunk(2, dim=1)
            x = x * (1 + scale_cond) + shift_cond
        x = self.conv5(x)
        return y + x * self.gamma


def add_unet_levels(
    module: nn.Module,
    width: int,
    enc_blocks: tuple[int, ...],
    middle_blocks: int,
    dec_blocks: tuple[int, ...],
    blocks: Callable[[int, int], nn.ModuleList],
    icnr: bool = False,
) -> None:
    """NAFNet's U-Net levels as attributes of ``module``: ``encoders`` and ``downs`` (2×2
    stride-2 convs, channels doubling), ``middle``, ``ups`` (1×1 conv + PixelShuffle(2), ICNR-
    initialised with ``icnr``) and ``decoders``; ``blocks(n, c)`` makes one level's n blocks of
    c channels (NAFNet's, or DTPM's AdaLN ones). Forward passes add each encoder level's output
    to the decoder level of the same size."""
    module.encoders = nn.ModuleList()
    module.downs = nn.ModuleList()
    module.ups = nn.ModuleList()
    module.decoders = nn.ModuleList()
    c = width
    for n in enc_blocks:
        module.encoders.append(blocks(n, c))
        module.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
        c *= 2
    module.middle = blocks(middle_blocks, c)
    for n in dec_blocks:
        expand = nn.Conv2d(c, 2 * c, 1, bias=False)
        if icnr:
            icnr_(expand)
        module.ups.append(nn.Sequential(expand, nn.PixelShuffle(2)))
        c //= 2
        module.decoders.append(blocks(n, c))


class _UNetBody(nn.Module):
    """NAFNet's encoder/middle/decoder, shared by the plain and the conditional networks."""

    def __init__(
        self, cfg: NAFNetConfig, in_channels: int, time_dim: int | None, cond_dim: int | None
    ) -> None:
        super().__init__()
        w = cfg.width
        self.multiple = cfg.multiple
        self.global_skip = cfg.global_skip
        self.intro = nn.Conv2d(in_channels, w, 3, padding=1)
        self.ending = nn.Conv2d(w, cfg.channels, 3, padding=1)

        def blocks(n: int, c: int) -> nn.ModuleList:
            return nn.ModuleList(
                [NAFBlock(c, time_dim, cond_dim, cfg.layer_norm) for _ in range(n)]
            )

        add_unet_levels(
            self, w, cfg.enc_blocks, cfg.middle_blocks, cfg.dec_blocks, blocks, icnr=cfg.icnr
        )

    def forward(self, x: Tensor, temb: Tensor | None, cemb: Tensor | None = None) -> Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.multiple, (-w) % self.multiple
        x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.intro(x)
        # Full-resolution maps are the network's memory: the intro's features are kept only for
        # the global skip, and each skip is let go once the decoder has added it.
        intro = x if self.global_skip else None
        skips = []
        for blocks, down in zip(self.encoders, self.downs, strict=True):
            for block in blocks:
                x = block(x, temb, cemb)
            skips.append(x)
            x = down(x)
        for block in self.middle:
            x = block(x, temb, cemb)
        for up, blocks in zip(self.ups, self.decoders, strict=True):
            x = up(x) + skips.pop()
            for block in blocks:
                x = block(x, temb, cemb)
        if intro is not None:
            x = x + intro
        return self.ending(x)[..., :h, :w]


def _per_sample(emb: Tensor, n: int) -> Tensor:
    """An embedding with one row per input: the tiler hands every tile its image's row, so a
    mismatch is a caller's error, never silently repeated."""
    if emb.shape[0] != n:
        raise ValueError(f"{emb.shape[0]} conditioning rows for a batch of {n}")
    return emb


class _CondEmbedding(nn.Module):
    """Optional global conditioning (cfg.cond_scalars scalars per image)."""

    def __init__(self, cfg: NAFNetConfig) -> None:
        super().__init__()
        self.embed = (
            ScalarEmbedding(cfg.cond_scalars, cfg.width, cfg.cond_scale)
            if cfg.cond_scalars
            else None
        )

    @property
    def out_dim(self) -> int | None:
        return self.embed.out_dim if self.embed is not None else None

    def forward(self, cond: Tensor | None, n: int) -> Tensor | None:
        if self.embed is None:
            return None
        if cond is None:
            raise ValueError(f"this network needs {self.embed.count} conditioning scalars")
        return _per_sample(self.embed(cond.float()), n)


class NAFNet(nn.Module):
    """Plain NAFNet for L1 regression: restored = lq + body(lq)."""

    def __init__(self, cfg: NAFNetConfig) -> None:
        super().__init__()
        self.cond = _CondEmbedding(cfg)
        self.body = _UNetBody(cfg, cfg.channels, time_dim=None, cond_dim=self.cond.out_dim)

    @property
    def multiple(self) -> int:
        """Inputs are zero-padded to a multiple of this; tiles are aligned to it."""
        return self.body.multiple

    def forward(self, lq: Tensor, cond: Tensor | None = None) -> Tensor:
        return lq + self.body(lq, None, self.cond(cond, lq.shape[0]))


class ConditionalNAFNet(nn.Module):
    """Refusion's noise network: ε̂ = net(x_t, μ, t[, cond]), input concat[x_t − μ, μ]."""

    def __init__(self, cfg: NAFNetConfig) -> None:
        super().__init__()
        self.time_embedding = TimeEmbedding(cfg.width)
        self.cond = _CondEmbedding(cfg)
        self.body = _UNetBody(
            cfg, 2 * cfg.channels, time_dim=self.time_embedding.out_dim, cond_dim=self.cond.out_dim
        )

    @property
    def multiple(self) -> int:
        """Inputs are zero-padded to a multiple of this; tiles are aligned to it."""
        return self.body.multiple

    def forward(
        self, x_t: Tensor, mu: Tensor, t: Tensor | int, cond: Tensor | None = None
    ) -> Tensor:
        n = x_t.shape[0]
        if not torch.is_tensor(t):
            t = torch.full((n,), float(t), device=x_t.device)
        elif t.ndim == 0:
            t = t.expand(n)
        temb = _per_sample(self.time_embedding(t.to(x_t.device)), n)
        return self.body(torch.cat([x_t - mu, mu], dim=1), temb, self.cond(cond, n))
