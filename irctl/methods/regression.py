"""Plain NAFNet trained with L1: the regression baseline Refusion compares against (Table 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.methods.base import Conditioning, ProgressFn, RestorerBase, SampleOptions
from irctl.methods.refusion import (
    RefusionNetwork,
    check_lens_scalars,
    check_views,
    condition_tensor,
)
from irctl.nets.nafnet import NAFNet
from irctl.nets.stereo import NAFSSR, StereoNAFNet
from irctl.tiling import PER_IMAGE, SPATIAL


@dataclass(frozen=True)
class RegressionNetwork(RefusionNetwork):
    """``[network]`` of the regression baseline: a plain NAFNet U-Net of the same sizes as
    Refusion's (``arch = "unet"``), or NAFSSR on the LR views (``arch = "nafssr"``: ``width``
    and ``blocks``; the stereo-SR baseline, it upscales itself)."""

    arch: str = "unet"
    blocks: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch not in ("unet", "nafssr"):
            raise ValueError(f"network.arch must be unet or nafssr, got {self.arch!r}")
        if self.arch == "nafssr" and self.views != 2:
            raise ValueError("NAFSSR is a stereo network (network.views = 2)")
        if self.arch == "unet" and self.upscale != 1:
            raise ValueError("a NAFNet U-Net does not upscale; use arch = nafssr")


@dataclass(frozen=True)
class RegressionConfig:
    """The regression baseline's one table, ``[network]``."""

    network: RegressionNetwork = field(default_factory=RegressionNetwork)


def regression_network(network: RegressionNetwork) -> nn.Module:
    """Plain NAFNet, its stereo variant (``views`` = 2), or NAFSSR on the LR views."""
    if network.arch == "nafssr":
        return NAFSSR(network.width, network.blocks, network.upscale, tied=network.tied_views)
    if network.views == 2:
        return StereoNAFNet(network, tied=network.tied_views)
    return NAFNet(network)


class RegressionRestorer(RestorerBase):
    config_class: ClassVar[type] = RegressionConfig
    stages: ClassVar[list[str]] = ["regression"]
    sampling = None  # one forward pass: no sampler, steps or seed

    @staticmethod
    def check_preset(preset: Preset) -> None:
        check_views(preset, preset.model.network)
        check_lens_scalars(preset, preset.model.network)

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.config: RegressionConfig = preset.model
        self.net = regression_network(self.config.network)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        loss = (self.net(batch.lq, batch.cond) - batch.gt).abs().mean()
        return loss, {"loss": float(loss.detach())}

    def condition(self, lq: Tensor, cond: Conditioning) -> Tensor | None:
        wanted = self.config.network.cond_scalars
        return condition_tensor(self.preset, wanted, cond, lq.shape[0], lq.device)

    @torch.no_grad()
    def restore(
        self,
        lq: Tensor,
        condition: Tensor | None,
        options: SampleOptions,
        generator: torch.Generator | None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        tiler = options.tiles.on_grid(align=self.net.multiple)
        if condition is None:
            restored = tiler.wrap(self.net, SPATIAL)(lq)
        else:
            restored = tiler.wrap(self.net, SPATIAL, PER_IMAGE)(lq, condition)
        if callback is not None:
            callback(1, 1)
        return restored
