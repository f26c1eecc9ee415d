"""DiffIR's prior networks (Xia et al. ICCV 2023, §4.1–4.2; fact sheet §1.1, §1.5): the compact
prior extraction network (CPEN) that squeezes an image into the 256-value IPR, and the small MLP
that denoises the IPR in the 4-step diffusion.

CPEN runs at a quarter of the output resolution: its input is pixel-unshuffled (by 4 for
deblurring and inpainting, by 4/scale for SR, whose LQ is already small). The stage-1 CPEN also
sees the ground truth, unshuffled by 4, concatenated to the LQ's channels; the stage-2 CPEN sees
the LQ only. The denoiser predicts the clean IPR (x0) from [condition, t/(10T), z_t] — no skip
connection, despite the official class name "ResMLP".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class PriorConfig:
    """Sizes of CPEN and the IPR denoiser (official: n_encoder_res, n_denoise_res; the IPR is
    4·width = 256 values in every released model)."""

    width: int = 64  # n_feats
    encoder_blocks: int = 5  # n_encoder_res: residual blocks in CPEN
    denoiser_blocks: int = 1  # n_denoise_res: hidden Linear layers of the denoiser

    @property
    def ipr_dim(self) -> int:
        return 4 * self.width


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1)


class _ResBlock(nn.Module):
    """conv3×3 → LReLU(0.1) → conv3×3, plus the input (EDSR's block, with biases)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.act = _lrelu()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(x))) + x


class CPEN(nn.Module):
    """image(s) → IPR (N×4·width). ``in_channels`` counts the channels after unshuffling
    (deblur stage 2: 3·16 = 48; inpainting: 4·16 = 64; ×4 SR: 3; stage 1 adds the GT's 48)."""

    def __init__(self, in_channels: int, cfg: PriorConfig) -> None:
        super().__init__()
        c = cfg.width
        # one Sequential with the official layer order, so the official indices carry over
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1),
            _lrelu(),
            *(_ResBlock(c) for _ in range(cfg.encoder_blocks)),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            _lrelu(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            _lrelu(),
            nn.Conv2d(2 * c, 4 * c, 3, padding=1),
            _lrelu(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.mlp = nn.Sequential(
            nn.Linear(4 * c, 4 * c), _lrelu(), nn.Linear(4 * c, 4 * c), _lrelu()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.features(x).flatten(1))


def cpen_input(lq: Tensor, unshuffle: int, gt: Tensor | None = None) -> Tensor:
    """CPEN's input: the LQ unshuffled to a quarter of the output size, and for stage 1 the
    ground truth unshuffled by 4 beside it (fact sheet §1.1's table)."""
    x = F.pixel_unshuffle(lq, unshuffle) if unshuffle > 1 else lq
    if gt is None:
        return x
    return torch.cat([x, F.pixel_unshuffle(gt, 4)], dim=1)


class IPRDenoiser(nn.Module):
    """x̂0 = f([c, t/(10T), z_t]): Linear(2·d + 1 → d) + LReLU, then ``denoiser_blocks`` ×
    (Linear(d → d) + LReLU), d = 256 (fact sheet §1.5)."""

    def __init__(self, cfg: PriorConfig, timesteps: int) -> None:
        super().__init__()
        d = cfg.ipr_dim
        self.period = 10.0 * timesteps  # the official max_period
        self.inp = nn.Linear(2 * d + 1, d)
        self.hidden = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.denoiser_blocks))
        self.act = _lrelu()

    def forward(self, z_t: Tensor, t: Tensor, condition: Tensor) -> Tensor:
        time = (t.float() / self.period).view(-1, 1).to(z_t.dtype)
        x = self.act(self.inp(torch.cat([condition, time.expand(z_t.shape[0], 1), z_t], dim=1)))
        for layer in self.hidden:
            x = self.act(layer(x))
        return x
