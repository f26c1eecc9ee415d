"""Plain NAFNet trained with L1: the regression baseline Refusion compares against (Table 2)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.methods.base import Conditioning, ProgressFn, SampleOptions
from irctl.methods.refusion import bind_condition, condition_tensor, nafnet_config
from irctl.nets.nafnet import NAFNet
from irctl.nets.stereo import NAFSSR, StereoNAFNet


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


class RegressionRestorer:
    #: Whether restore() runs a sampler (so sampler/steps/seed matter).
    stochastic: ClassVar[bool] = False
    stages: ClassVar[list[str]] = ["regression"]

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

    def check_options(self, options: SampleOptions) -> None:
        """A single forward pass: sampler, steps and seed do not apply."""

    @torch.no_grad()
    def restore(
        self,
        lq: Tensor,
        options: SampleOptions,
        generator: torch.Generator | None,
        cond: Conditioning | None = None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        c = condition_tensor(self.preset, cond, lq.shape[0], lq.device)
        restored = bind_condition(options.tiler.wrap(self.net), c)(lq)
        if callback is not None:
            callback(1, 1)
        return restored
