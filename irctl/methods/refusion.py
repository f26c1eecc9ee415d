"""Refusion / IR-SDE restorer (Luo et al., CVPRW 2023): a conditional NAFNet predicts the noise of
a mean-reverting SDE whose mean is the LQ image; sampling runs the reverse SDE from μ + λz."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.data.resize import upscale
from irctl.diffusion import mrsde
from irctl.methods.base import Conditioning, ProgressFn, SampleOptions
from irctl.nets.nafnet import ConditionalNAFNet, NAFNetConfig
from irctl.nets.stereo import StereoConditionalNAFNet


def nafnet_config(preset: Preset, channels: int = 3) -> NAFNetConfig:
    """The preset's [network] for images (3 channels) or for a latent (its channel count)."""
    n = preset.network
    return NAFNetConfig(
        width=n.width,
        enc_blocks=n.enc_blocks,
        middle_blocks=n.middle_blocks,
        dec_blocks=n.dec_blocks,
        channels=channels,
        cond_scalars=n.cond_scalars,
        icnr=n.icnr,
    )


def condition_tensor(
    preset: Preset, cond: Conditioning | None, batch: int, device: torch.device
) -> Tensor | None:
    """The N×k conditioning tensor the network needs, or a one-line ValueError if the image
    came without it (a bokeh model needs its source and target lens)."""
    wanted = preset.network.cond_scalars
    given = cond.scalars if cond is not None else ()
    if len(given) != wanted:
        raise ValueError(
            f"{preset.name} needs {wanted} conditioning value(s) per image, got {len(given)}"
            + (" (give the source and target lens)" if preset.task == "bokeh" else "")
        )
    return cond.tensor(batch, device) if wanted and cond is not None else None


def noise_network(preset: Preset) -> nn.Module:
    """Refusion's noise network for the preset: the mono conditional NAFNet, or the stereo one
    (L‖R views with SCAM after every block) when ``network.views`` = 2."""
    if preset.network.arch != "unet":
        raise ValueError(f"{preset.name}: Refusion's noise network is a NAFNet U-Net (arch unet)")
    cfg = nafnet_config(preset)
    if preset.network.views == 2:
        return StereoConditionalNAFNet(cfg, tied=preset.network.tied_views)
    return ConditionalNAFNet(cfg)


def mean_state(preset: Preset, lq: Tensor) -> Tensor:
    """μ, the SDE's mean state, from the model's input: the LQ image itself, or for SR its
    MATLAB-bicubic upsampling to the output size, unclamped (fact sheet §0)."""
    factor = preset.network.upscale
    return lq if factor == 1 else upscale(lq, factor)


def view_generators(
    generator: torch.Generator, lq: Tensor, views: int
) -> tuple[torch.Generator, ...]:
    """One noise generator per view, seeded by the run's seed and by the view's own pixels.

    A stereo sampler drawing one noise tensor for L‖R would give the left *position* the same
    noise whichever image sits there, so restoring (R, L) would not give the swap of (L, R).
    Seeding each view's noise from its content makes the noise follow the view: with the tied
    cross-view network the swapped run is the exact swap, and a seed still gives the same bytes.
    """
    seed = generator.initial_seed()
    generators = []
    for view in lq.detach().chunk(views, dim=1):
        digest = hashlib.sha256(view.float().cpu().contiguous().numpy().tobytes()).digest()
        view_seed = (seed ^ int.from_bytes(digest[:8], "little")) % 2**63
        generators.append(torch.Generator(device=generator.device).manual_seed(view_seed))
    return tuple(generators)


def bind_condition(net: Callable[..., Tensor], cond: Tensor | None) -> Callable[..., Tensor]:
    """``net(*args)`` → ``net(*args, cond)`` when there is a condition (passed through tiling)."""
    if cond is None:
        return net
    return lambda *args: net(*args, cond)


class RefusionRestorer:
    #: Whether restore() runs a sampler (so sampler/steps/seed matter).
    stochastic: ClassVar[bool] = True
    stages: ClassVar[list[str]] = ["diffusion"]

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        d = preset.diffusion
        self.schedule = mrsde.make_schedule(d.T, d.max_sigma, d.schedule, d.eps)
        self.net = noise_network(preset)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        return self.modules()

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Refusion's matching loss (paper eq. 6, official ``MatchingLoss``): L1 between one reverse
        SDE step driven by the predicted noise and the optimal reverse state x*_{t−1}."""
        mu, x0 = mean_state(self.preset, batch.lq), batch.gt
        n = x0.shape[0]
        t = torch.randint(1, self.schedule.T + 1, (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        return matching_loss(self.net, self.schedule, x0, mu, t, noise, batch.cond)

    def check_options(self, options: SampleOptions) -> None:
        check_sampler_options(self.schedule, options)

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
        c = condition_tensor(self.preset, cond, lq.shape[0], lq.device)
        net = bind_condition(options.tiler.wrap(self.net), c)
        mu = mean_state(self.preset, lq)
        views = self.preset.network.views
        noise: mrsde.Noise = generator
        if views > 1 and generator is not None:
            noise = view_generators(generator, lq, views)
        return sample_reverse(net, mu, self.schedule, options, noise, callback)


def check_sampler_options(sched: mrsde.MRSDESchedule, options: SampleOptions) -> None:
    if options.sampler not in mrsde.SAMPLERS:
        raise ValueError(f"unknown sampler {options.sampler!r}; choose {', '.join(mrsde.SAMPLERS)}")
    if not 1 <= options.steps <= sched.T:
        raise ValueError(f"--steps must be between 1 and T={sched.T}, got {options.steps}")


def matching_loss(
    net: nn.Module,
    sched: mrsde.MRSDESchedule,
    x0: Tensor,
    mu: Tensor,
    t: Tensor,
    noise: Tensor,
    cond: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Refusion's matching loss (paper eq. 6, official ``MatchingLoss``) for given (t, noise):
    L1 between one reverse SDE step driven by the predicted noise and the optimal reverse state
    x*_{t−1}. Pixel and latent Refusion share it; validation uses fixed (t, noise)."""
    ts = [int(v) for v in t.tolist()]
    prev = [v - 1 for v in ts]
    x_t = mrsde.forward_sample(x0, mu, sched, ts, noise)
    eps_hat = net(x_t, mu, t.to(x0.device)) if cond is None else net(x_t, mu, t.to(x0.device), cond)
    score = mrsde.score_from_noise(eps_hat, sched, ts)
    x_prev_hat = mrsde.reverse_sde_mean(x_t, mu, score, sched, ts, prev)
    x_prev_opt = mrsde.optimal_reverse_state(x_t, x0, mu, sched, ts, prev)
    loss = (x_prev_hat - x_prev_opt).abs().mean()
    return loss, {"loss": float(loss.detach())}


def sample_reverse(
    net: Callable[..., Tensor],
    mu: Tensor,
    sched: mrsde.MRSDESchedule,
    options: SampleOptions,
    generator: mrsde.Noise,
    callback: ProgressFn | None,
) -> Tensor:
    """Run the chosen reverse sampler from x_T = μ + λz (pixel or latent space alike)."""
    sampler = mrsde.SAMPLERS[options.sampler]
    x_T = mrsde.terminal_sample(mu, sched, mrsde.randn_like(mu, generator))
    step_callback = (lambda i, n, _x: callback(i + 1, n)) if callback else None
    return sampler(net, x_T, mu, sched, options.steps, generator, step_callback)
