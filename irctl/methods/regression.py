"""Plain NAFNet trained with L1: the regression baseline Refusion compares against (Table 2)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.methods.base import Conditioning, ProgressFn, RestorerBase, SampleOptions
from irctl.methods.refusion import condition_tensor, nafnet_config
from irctl.nets.nafnet import NAFNet
from irctl.nets.stereo import NAFSSR, StereoNAFNet
from irctl.tiling import PER_IMAGE, SPATIAL


def regression_network(preset: Preset) -> nn.Module:
    """The preset's regression network: plain NAFNet, its stereo variant (``views`` = 2), or
    NAFSSR on the LR views (``arch = "nafssr"``, the stereo-SR baseline; it upscales itself)."""
    n = preset.network
    if n.arch == "nafssr":
        if n.views != 2:
            raise ValueError(f"{preset.name}: NAFSSR is a stereo network (network.views = 2)")
        return NAFSSR(n.width, n.blocks, n.upscale, tied=n.tied_views)
    if n.upscale != 1:
        raise ValueError(f"{preset.name}: a NAFNet U-Net does not upscale; use arch = nafssr")
    cfg = nafnet_config(preset)
    return StereoNAFNet(cfg, tied=n.tied_views) if n.views == 2 else NAFNet(cfg)


class RegressionRestorer(RestorerBase):
    stages: ClassVar[list[str]] = ["regression"]
    sampling = None  # one forward pass: no sampler, steps or seed

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.net = regression_network(preset)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        return self.modules()

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        loss = (self.net(batch.lq, batch.cond) - batch.gt).abs().mean()
        return loss, {"loss": float(loss.detach())}

    def condition(self, lq: Tensor, cond: Conditioning) -> Tensor | None:
        return condition_tensor(self.preset, cond, lq.shape[0], lq.device)

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
