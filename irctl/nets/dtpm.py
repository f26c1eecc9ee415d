"""DTPM's networks (Ye et al., CVPR 2024; fact sheet ``dtpm.md`` §2–§3): the texture prior's
denoiser, its conditional guidance adapters, and the semantic encoders.

The paper gives no sizes and no code exists; every choice here is the fact sheet's [C] column:

- :class:`TexturePrior` — f_θ of Eq. 4: a NAFNet U-Net whose blocks are modulated by AdaLN,
  (1 + g)·LN(f) + b with (g, b) from the time embedding plus the image's global semantic code
  (Fig. 4). Its 3×3 intro conv on [x_t ‖ condition] is a module of its own,
  :class:`PriorIntro`, because stage II retrains it (its condition changes from the smooth
  image y_s to the degraded input y_d, A8) while everything else of the prior stays frozen.
- :class:`GuidanceAdapters` — Eq. 5, CGA(f, y_ε) = f + M_out(M_in(f) + Conv(y_ε)), one after
  every block, M_out zero-initialised so stage II starts exactly at the stage-I prior (A7).
- :class:`LearnedSemanticEncoder` (the default: ImageNet weights cannot be had offline here, so
  the encoder is trained with the prior in stage I) and :class:`ResNet18Encoder` (a user's
  ImageNet ResNet-18, torchvision's key names, 512-d pooled feature), each run once per image
  on the whole image resized to a fixed size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irctl.nets.layers import LAYER_NORMS, TimeEmbedding
from irctl.nets.nafnet import NAFBlock, add_unet_levels

#: The semantic encoders a preset can name (``network.semantic``).
SEMANTIC_ENCODERS = ("learned", "resnet18", "none")


@dataclass(frozen=True)
class TexturePriorConfig:
    """The ``[network]`` table of a DTPM preset: the prior's U-Net, its adapters and its
    semantic code. ``paper`` sizes (fact sheet §2): width 32, enc [2,2,4,8], middle 12,
    dec [2,2,2,2]; the tiny CPU ones: width 16, one block per level."""

    width: int = 16
    enc_blocks: tuple[int, ...] = (1, 1, 1)
    middle_blocks: int = 1
    dec_blocks: tuple[int, ...] = (1, 1, 1)
    channels: int = 3
    layer_norm: str = "nafnet"
    #: "learned" (trained with the prior in stage I), "resnet18" (a user's ImageNet weights,
    #: ``semantic_weights``), "none" (the paper's Table 6 ablation)
    semantic: str = "learned"
    #: a ResNet-18 state_dict in safetensors (torchvision's key names), for semantic = "resnet18"
    semantic_weights: str = ""
    #: the side the whole image is resized to before the semantic encoder (ResNet-18: 224)
    semantic_size: int = 128
    #: the learned encoder's code size (ResNet-18's is 512)
    semantic_dim: int = 64
    #: r of Eq. 5: the adapters' hidden width is r·c (fact sheet A7: 0.5)
    adapter_ratio: float = 0.5

    def __post_init__(self) -> None:
        if len(self.enc_blocks) != len(self.dec_blocks):
            raise ValueError("enc_blocks and dec_blocks must have the same length")
        if self.semantic not in SEMANTIC_ENCODERS:
            raise ValueError(
                f"network.semantic must be one of {', '.join(SEMANTIC_ENCODERS)}, "
                f"got {self.semantic!r}"
            )
        if self.semantic == "resnet18" and not self.semantic_weights:
            raise ValueError(
                'network.semantic = "resnet18" needs network.semantic_weights: a ResNet-18 '
                "state_dict in safetensors (ImageNet weights cannot be downloaded at run time)"
            )
        if self.layer_norm not in LAYER_NORMS:
            raise ValueError(f"layer_norm must be one of {', '.join(LAYER_NORMS)}")
        if not 0 < self.adapter_ratio <= 4:
            raise ValueError(f"adapter_ratio must be in (0, 4], got {self.adapter_ratio}")

    @property
    def multiple(self) -> int:
        """Inputs must be a multiple of this (one halving per encoder level)."""
        return 2 ** len(self.enc_blocks)

    @property
    def code_dim(self) -> int:
        """Size of the semantic code the blocks receive (0: none)."""
        return {"learned": self.semantic_dim, "resnet18": 512, "none": 0}[self.semantic]

    def block_levels(self) -> list[int]:
        """The U-Net level (0 = full resolution) of every block, in forward order: the
        adapters' layout, one per block."""
        levels = [lvl for lvl, n in enumerate(self.enc_blocks) for _ in range(n)]
        levels += [len(self.enc_blocks)] * self.middle_blocks
        depth = len(self.dec_blocks)
        levels += [depth - 1 - i for i, n in enumerate(self.dec_blocks) for _ in range(n)]
        return levels


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class AdaLNBlock(NAFBlock):
    """A NAFNet block with AdaLN (fact sheet §2): (g1, b1, g2, b2) = Lin_t(SiLU(e_t)) +
    Lin_s(SiLU(e_s)), zero-initialised, so (1 + g)·LN + b is the paper's γ·LN + β and every
    block starts unmodulated; the residual scales β_s, γ_s start at zero (NAFNet)."""

    def __init__(self, c: int, time_dim: int, code_dim: int, layer_norm: str = "nafnet") -> None:
        super().__init__(c, layer_norm=layer_norm)
        self.time_mod = _zero_linear(time_dim, 4 * c)
        self.code_mod = _zero_linear(code_dim, 4 * c) if code_dim else None

    def forward(self, inp: Tensor, temb: Tensor, code: Tensor | None) -> Tensor:  # type: ignore[override]
        mod = self.time_mod(F.silu(temb))
        if self.code_mod is not None and code is not None:
            mod = mod + self.code_mod(F.silu(code))
        g1, b1, g2, b2 = mod[..., None, None].chunk(4, dim=1)
        return self.modulated(inp, (b1, g1, b2, g2))


class PriorIntro(nn.Module):
    """The prior's input layer: a 3×3 conv on [x_t ‖ condition] (6 channels → width)."""

    def __init__(self, cfg: TexturePriorConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * cfg.channels, cfg.width, 3, padding=1)

    def forward(self, x_t: Tensor, condition: Tensor) -> Tensor:
        return self.conv(torch.cat([x_t, condition], dim=1))


class GuidanceAdapters(nn.Module):
    """Eq. 5 after every block of the prior: CGA(f, y_ε) = f + M_out(M_in(f) + Conv(y_ε_l)),
    y_ε_l the initial prediction average-pooled to the block's level l. M_in: 1×1 conv
    c → r·c; Conv: 3×3 conv 3 → r·c; M_out: GELU, then a zero-initialised 1×1 conv r·c → c —
    so with fresh adapters the prior computes exactly what it did in stage I."""

    def __init__(self, cfg: TexturePriorConfig) -> None:
        super().__init__()
        self.levels = cfg.block_levels()
        self.m_in = nn.ModuleList()
        self.embed = nn.ModuleList()
        self.m_out = nn.ModuleList()
        for level in self.levels:
            c = cfg.width * 2**level
            hidden = max(1, round(cfg.adapter_ratio * c))
            self.m_in.append(nn.Conv2d(c, hidden, 1))
            self.embed.append(nn.Conv2d(cfg.channels, hidden, 3, padding=1))
            out = nn.Conv2d(hidden, c, 1)
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            self.m_out.append(out)

    def pyramid(self, prediction: Tensor) -> list[Tensor]:
        """y_ε at every level the blocks run at, computed once per forward."""
        depth = max(self.levels)
        return [F.avg_pool2d(prediction, 2**lvl) if lvl else prediction for lvl in range(depth + 1)]

    def forward(self, index: int, features: Tensor, pyramid: list[Tensor]) -> Tensor:
        guide = self.embed[index](pyramid[self.levels[index]])
        return features + self.m_out[index](F.gelu(self.m_in[index](features) + guide))


class TexturePrior(nn.Module):
    """f_θ(x_t, condition, t | semantic code[, adapters, y_ε]) after :class:`PriorIntro`:
    NAFNet's U-Net layout (2×2 stride-2 down, 1×1 + PixelShuffle up, additive skips) with
    AdaLN blocks and a 3×3 ending conv to the prediction (ε̂ or the clean residual)."""

    def __init__(self, cfg: TexturePriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.time_embedding = TimeEmbedding(w)
        time_dim = self.time_embedding.out_dim
        code_dim = cfg.code_dim
        self.code_mlp = (
            nn.Sequential(nn.Linear(code_dim, 4 * w), nn.SiLU(), nn.Linear(4 * w, 4 * w))
            if code_dim
            else None
        )
        block_code = 4 * w if code_dim else 0

        def blocks(n: int, c: int) -> nn.ModuleList:
            return nn.ModuleList(
                [AdaLNBlock(c, time_dim, block_code, cfg.layer_norm) for _ in range(n)]
            )

        add_unet_levels(self, w, cfg.enc_blocks, cfg.middle_blocks, cfg.dec_blocks, blocks)
        self.ending = nn.Conv2d(w, cfg.channels, 3, padding=1)

    @property
    def multiple(self) -> int:
        return self.cfg.multiple

    def forward(
        self,
        features: Tensor,
        t: Tensor,
        code: Tensor | None,
        adapters: GuidanceAdapters | None = None,
        prediction: Tensor | None = None,
    ) -> Tensor:
        n = features.shape[0]
        h, w = features.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"the prior needs sides divisible by {self.multiple}, got {h}×{w}")
        t = t.expand(n) if t.ndim == 0 else t
        temb = self.time_embedding(t.to(features.device))
        emb = None
        if self.code_mlp is not None:
            if code is None:
                raise ValueError("this prior was trained with a semantic code; none was given")
            emb = self.code_mlp(code.to(features.dtype)).expand(n, -1)
        pyramid = adapters.pyramid(prediction) if adapters is not None else []
        index = 0

        def run(block: AdaLNBlock, x: Tensor) -> Tensor:
            nonlocal index
            x = block(x, temb, emb)
            if adapters is not None:
                x = adapters(index, x, pyramid)
            index += 1
            return x

        x, skips = features, []
        for level_blocks, down in zip(self.encoders, self.downs, strict=True):
            for block in level_blocks:
                x = run(block, x)
            skips.append(x)
            x = down(x)
        for block in self.middle:
            x = run(block, x)
        for up, level_blocks in zip(self.ups, self.decoders, strict=True):
            x = up(x) + skips.pop()
            for block in level_blocks:
                x = run(block, x)
        return self.ending(x)


class LearnedSemanticEncoder(nn.Module):
    """The default global semantic encoder, trained with the prior in stage I (the paper's
    frozen ImageNet ResNet-18 cannot be had offline here): four stride-2 3×3 convs with GELU,
    a global average pool and a linear map to the code."""

    def __init__(self, cfg: TexturePriorConfig) -> None:
        super().__init__()
        c = cfg.width
        layers: list[nn.Module] = []
        channels = [cfg.channels, c, 2 * c, 4 * c, 4 * c]
        for a, b in itertools.pairwise(channels):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GELU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(4 * c, cfg.semantic_dim)

    def forward(self, image: Tensor) -> Tensor:
        """``image`` in [−1, 1], already resized: an N×code_dim code."""
        return self.head(self.features(image).flatten(1))


class _BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (its parameter names, so its state_dict loads)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


#: ImageNet normalisation of torchvision's pretrained weights (on [0, 1] RGB)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNet18Encoder(nn.Module):
    """ResNet-18 (He et al. 2016) up to its global average pool: the paper's semantic encoder
    (§3.3), 512-d, frozen. Parameter names are torchvision's, so a user's ImageNet
    ``resnet18`` state_dict saved as safetensors loads as it is (its ``fc.*`` is not used)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (c_in, c_out, stride) in enumerate(widths, start=1):
            layer = nn.Sequential(_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1))
            setattr(self, f"layer{i}", layer)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        """``image`` in [−1, 1], already resized (224² for the ImageNet weights)."""
        x = ((image + 1) / 2 - self.mean) / self.std
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(-2, -1))


def build_semantic_encoder(cfg: TexturePriorConfig) -> nn.Module | None:
    """The encoder ``network.semantic`` names (None for "none"); ResNet-18's weights are loaded
    by the method from ``semantic_weights``, never drawn at random."""
    if cfg.semantic == "learned":
        return LearnedSemanticEncoder(cfg)
    if cfg.semantic == "resnet18":
        return ResNet18Encoder()
    return None


def semantic_input(image: Tensor, size: int) -> Tensor:
    """The whole image resized to ``size``² (bilinear, antialiased when shrinking): the
    encoder's input, the same whatever the image size and however it is tiled later."""
    return F.interpolate(
        image, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
