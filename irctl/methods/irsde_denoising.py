"""IR-SDE for Gaussian denoising (Luo et al., ICML 2023, official ``denoising-sde``): the
denoising SDE (irctl/diffusion/denoising_sde.py) — μ stays the clean image, a noisy photo is
the state x_t whose σ̄_t matches its noise level — with IR-SDE's U-Net seeing x_t alone and
full attention in its middle. Restoring runs the probability-flow ODE from that timestep; the
noise level is the preset's ``degradation.sigma`` (what the model is asked to remove).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.diffusion import denoising_sde as dsde
from irctl.diffusion import mrsde
from irctl.methods.base import Conditioning, ProgressFn, RestorerBase, SampleOptions, Sampling
from irctl.methods.official_keys import IRSDE_UNET, import_state
from irctl.methods.refusion import condition_tensor, one_file
from irctl.nets.irsde_unet import IRSDEUNet, IRSDEUNetConfig
from irctl.tiling import SHARED, SPATIAL


@dataclass(frozen=True)
class DenoisingNetwork(IRSDEUNetConfig):
    mu_input: bool = False
    middle_attention: str = "full"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mu_input:
            raise ValueError("the denoising SDE's network sees x_t alone (mu_input = false)")


@dataclass(frozen=True)
class DenoisingDiffusion:
    """``[diffusion]`` of the denoising SDE: λ = 75 and T = 100 as the official config."""

    T: int = 100
    max_sigma: float = 75.0
    schedule: str = "cosine"


@dataclass(frozen=True)
class IRSDEDenoisingConfig:
    network: DenoisingNetwork = field(default_factory=DenoisingNetwork)
    diffusion: DenoisingDiffusion = field(default_factory=DenoisingDiffusion)


class IRSDEDenoisingRestorer(RestorerBase):
    config_class: ClassVar[type] = IRSDEDenoisingConfig
    stages: ClassVar[list[str]] = ["diffusion"]

    @staticmethod
    def check_preset(preset: Preset) -> None:
        if preset.degradation.kind != "gaussian_noise":
            raise ValueError("the denoising SDE removes Gaussian noise (degradation.kind)")
        if preset.degradation.sigma >= preset.model.diffusion.max_sigma:
            raise ValueError("degradation.sigma must be below the SDE's λ (diffusion.max_sigma)")

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.config: IRSDEDenoisingConfig = preset.model
        d = self.config.diffusion
        self.schedule = dsde.make_schedule(d.T, d.max_sigma, d.schedule)
        self.sampling = Sampling(
            samplers=tuple(dsde.SAMPLERS), max_steps=d.T, comparison=(("ode", d.T),)
        )
        self.net = IRSDEUNet(self.config.network)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """The official matching loss with μ = x_0: L1 between one reverse-SDE mean step
        driven by ε̂ and the optimal x*_{t−1}, from x_t = x_0 + σ̄_t ε (the LQ is not used:
        the state *is* the noisy image)."""
        x0 = batch.gt
        n = x0.shape[0]
        t = torch.randint(1, self.schedule.T + 1, (n,), generator=generator)
        ts = [int(v) for v in t.tolist()]
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t = mrsde.forward_sample(x0, x0, self.schedule, ts, noise)
        score = mrsde.score_from_noise(self.net(x_t, t.to(x0.device)), self.schedule, ts)
        predicted = dsde.reverse_sde_mean(x_t, score, self.schedule, ts)
        target = dsde.optimal_previous_state(x_t, x0, self.schedule, ts)
        loss = (predicted - target).abs().mean()
        return loss, {"loss": float(loss.detach())}

    def official_modules(self, states: list[dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        (state,) = one_file(states, "IR-SDE's denoising network")
        what = f"IR-SDE's denoising ConditionalUNet of {self.preset.name}'s sizes"
        return {"net": import_state(state, self.net, IRSDE_UNET, what)}

    def condition(self, lq: Tensor, cond: Conditioning) -> None:
        condition_tensor(self.preset, 0, cond, lq.shape[0], lq.device)  # takes none

    def start_timestep(self) -> int:
        """Where the photo's noise level (``degradation.sigma``) sits on the SDE."""
        return dsde.start_timestep(self.schedule, self.preset.degradation.sigma)

    @torch.no_grad()
    def restore(
        self,
        lq: Tensor,
        condition: None,
        options: SampleOptions,
        generator: torch.Generator | None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        """Every ODE step from the timestep of the noise level down to 1 (``--steps`` does not
        apply: the official sampler runs them all)."""
        tiled = options.tiles.on_grid(align=self.net.multiple).wrap(self.net, SPATIAL, SHARED)
        step = (lambda i, n, _x: callback(i + 1, n)) if callback else None
        grid = dsde.timesteps_from(self.start_timestep())
        return dsde.sample_ode(tiled, lq, self.schedule, grid, callback=step)
