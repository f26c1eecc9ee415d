"""Refusion / IR-SDE restorer (Luo et al., CVPRW 2023): a conditional NAFNet predicts the noise of
a mean-reverting SDE whose mean is the LQ image; sampling runs the reverse SDE from μ + λz."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.datasets import Batch
from irctl.diffusion import mrsde
from irctl.methods.base import Conditioning, ProgressFn, SampleOptions
from irctl.nets.nafnet import ConditionalNAFNet, NAFNetConfig


def nafnet_config(preset: Preset) -> NAFNetConfig:
    n = preset.network
    return NAFNetConfig(
        width=n.width,
        enc_blocks=n.enc_blocks,
        middle_blocks=n.middle_blocks,
        dec_blocks=n.dec_blocks,
    )


class RefusionRestorer:
    #: Whether restore() runs a sampler (so sampler/steps/seed matter).
    stochastic: ClassVar[bool] = True
    stages: ClassVar[list[str]] = ["diffusion"]

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        d = preset.diffusion
        self.schedule = mrsde.make_schedule(d.T, d.max_sigma, d.schedule, d.eps)
        self.net = ConditionalNAFNet(nafnet_config(preset))

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def loss(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """Refusion's matching loss (paper eq. 6, official ``MatchingLoss``): L1 between one reverse
        SDE step driven by the predicted noise and the optimal reverse state x*_{t−1}."""
        mu, x0 = batch.lq, batch.gt
        n = x0.shape[0]
        t = torch.randint(1, self.schedule.T + 1, (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        return self.matching_loss(x0, mu, t, noise)

    def matching_loss(
        self, x0: Tensor, mu: Tensor, t: Tensor, noise: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """The loss for given (t, noise): also used for validation on fixed pairs."""
        sched = self.schedule
        ts = [int(v) for v in t.tolist()]
        prev = [v - 1 for v in ts]
        x_t = mrsde.forward_sample(x0, mu, sched, ts, noise)
        score = mrsde.score_from_noise(self.net(x_t, mu, t.to(x0.device)), sched, ts)
        x_prev_hat = mrsde.reverse_sde_mean(x_t, mu, score, sched, ts, prev)
        x_prev_opt = mrsde.optimal_reverse_state(x_t, x0, mu, sched, ts, prev)
        loss = (x_prev_hat - x_prev_opt).abs().mean()
        return loss, {"loss": float(loss.detach())}

    def check_options(self, options: SampleOptions) -> None:
        if options.sampler not in mrsde.SAMPLERS:
            raise ValueError(
                f"unknown sampler {options.sampler!r}; choose {', '.join(mrsde.SAMPLERS)}"
            )
        if not 1 <= options.steps <= self.schedule.T:
            raise ValueError(
                f"--steps must be between 1 and T={self.schedule.T}, got {options.steps}"
            )

    @torch.no_grad()
    def restore(
        self,
        lq: Tensor,
        options: SampleOptions,
        generator: torch.Generator | None,
        cond: Conditioning | None = None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        self.check_options(options)
        sampler = mrsde.SAMPLERS[options.sampler]
        noise = mrsde.randn_like(lq, generator)
        x_T = mrsde.terminal_sample(lq, self.schedule, noise)
        net = options.tiler.wrap(self.net)
        step_callback = (lambda i, n, _x: callback(i + 1, n)) if callback else None
        return sampler(net, x_T, lq, self.schedule, options.steps, generator, step_callback)
