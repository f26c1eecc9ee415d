"""Refusion / IR-SDE restorer (Luo et al., CVPRW 2023): a conditional NAFNet predicts the noise of
a mean-reverting SDE whose mean is the LQ image; sampling runs the reverse SDE from μ + λz."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.data.resize import torch_bicubic_upscale, upscale
from irctl.diffusion import mrsde
from irctl.methods.base import Conditioning, ProgressFn, RestorerBase, SampleOptions, Sampling
from irctl.methods.official_keys import REFUSION_NAFNET, REFUSION_STEREO, import_state
from irctl.nets.nafnet import ConditionalNAFNet, NAFNetConfig
from irctl.nets.stereo import StereoConditionalNAFNet
from irctl.tiling import PER_IMAGE, SHARED, SPATIAL


@dataclass(frozen=True)
class RefusionNetwork(NAFNetConfig):
    """``[network]`` of pixel Refusion: the conditional NAFNet's sizes, and how images reach it.

    ``views`` = 2: images are L‖R pairs and the views exchange information through SCAM after
    every block (irctl/nets/stereo.py); ``tied_views``: one set of cross-attention weights for
    both views, so swapping the input views swaps the outputs exactly (the official code has
    separate left/right weights); ``upscale`` > 1: super-resolution, the input is the LR image
    and μ is its bicubic upsampling."""

    views: int = 1
    tied_views: bool = False
    upscale: int = 1
    #: stereo: how SCAM downscales ("ceil", or the official "scale_factor"; irctl/nets/stereo.py)
    scam_resize: str = "ceil"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.views not in (1, 2):
            raise ValueError(f"network.views must be 1 or 2, got {self.views}")
        if self.upscale < 1:
            raise ValueError(f"network.upscale must be ≥ 1, got {self.upscale}")


@dataclass(frozen=True)
class RefusionConfig:
    """Pixel Refusion's tables: ``[network]`` and ``[diffusion]``."""

    network: RefusionNetwork = field(default_factory=RefusionNetwork)
    diffusion: mrsde.MRSDEConfig = field(default_factory=mrsde.MRSDEConfig)


def check_views(preset: Preset, network: RefusionNetwork) -> None:
    """A stereo SR degradation (L‖R pairs, LR = HR / scale) needs a network of two views that
    upscales by that scale: a mismatch would train a useless model."""
    deg = preset.degradation
    if deg.kind == "stereo_sr" and (network.views, network.upscale) != (2, deg.scale):
        raise ValueError(
            f"a stereo_sr degradation needs network.views = 2 and network.upscale = "
            f"degradation.scale = {deg.scale}, got views {network.views}, upscale "
            f"{network.upscale}"
        )


def check_lens_scalars(preset: Preset, network: object) -> None:
    """A bokeh model takes the two lens codes, and the disparity too when the preset sets
    ``bokeh_disparity``: a mismatch would only show as a failed image at restore time."""
    deg = preset.degradation
    if deg.kind != "bokeh":
        return
    wanted = 2 + (deg.bokeh_disparity is not None)
    got = getattr(network, "cond_scalars", 0)
    if got != wanted:
        raise ValueError(
            f"a bokeh model is conditioned on {wanted} scalars (source and target lens"
            f"{' and the disparity' if wanted == 3 else ''}): set network.cond_scalars = "
            f"{wanted}, got {got}"
        )


def condition_tensor(
    preset: Preset, wanted: int, cond: Conditioning, batch: int, device: torch.device
) -> Tensor | None:
    """The N×k conditioning tensor a network with ``wanted`` scalars needs, or a one-line
    ValueError if the image came without them (a bokeh model: its source and target lens)."""
    if len(cond.scalars) != wanted:
        raise ValueError(
            f"{preset.name} needs {wanted} conditioning value(s) per image, got {len(cond.scalars)}"
        )
    return cond.tensor(batch, device) if wanted else None


def noise_network(network: RefusionNetwork) -> nn.Module:
    """Refusion's noise network: the mono conditional NAFNet, or the stereo one (L‖R views with
    SCAM after every block) when ``views`` = 2."""
    if network.views == 2:
        return StereoConditionalNAFNet(
            network, tied=network.tied_views, scam_resize=network.scam_resize
        )
    return ConditionalNAFNet(network)


#: How an SR network's μ upsamples the LR input: "matlab", MATLAB's bicubic (Refusion's stereo
#: SR, fact sheet §0); "torch", PyTorch's (IR-SDE's released ×4 model, codes/utils/deg_utils.py
#: ``upscale``, the input its weights were trained on)
UPSAMPLERS = ("matlab", "torch")


#: How a network takes an inpainting input ``[image·(1 − m), m]``: "" it has no holes (another
#: task); "white" the image with white holes and no mask (IR-SDE's released model, trained on
#: codes/utils/deg_utils.py ``mask_to``)
HOLES = ("", "white")


def mean_state(factor: int, lq: Tensor, upsampler: str = "matlab", holes: str = "") -> Tensor:
    """μ, the SDE's mean state, from the model's input: the LQ image itself, for SR
    (``factor`` > 1) its bicubic upsampling to the output size, unclamped, and for inpainting
    (``holes = "white"``) the image with its holes white."""
    if holes == "white":
        lq = lq[:, :-1] + lq[:, -1:]
    if factor == 1:
        return lq
    return torch_bicubic_upscale(lq, factor) if upsampler == "torch" else upscale(lq, factor)


def view_noise(generator: torch.Generator, lq: Tensor, views: int) -> mrsde.NoiseFn:
    """Noise for L‖R states, each view's channels drawn from its own generator, seeded by the
    run's seed and by the view's own pixels.

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
    sources = [mrsde.gaussian_noise(g) for g in generators]

    def noise(x: Tensor) -> Tensor:
        parts = x.chunk(views, dim=1)
        return torch.cat([draw(part) for draw, part in zip(sources, parts, strict=True)], dim=1)

    return noise


def bind_noise_model(
    net: Callable[..., Tensor], mu: Tensor, cond: Tensor | None
) -> mrsde.NoiseModel:
    """The sampler's ``model(x, t)``: the (tiled) noise network ``net(x_t, μ, t[, cond])`` with
    μ and the image's global conditioning bound."""
    if cond is None:
        return lambda x, t: net(x, mu, t)
    return lambda x, t: net(x, mu, t, cond)


def noise_net_roles(cond: Tensor | None) -> tuple:
    """Tiling roles of the noise network's arguments (x_t, μ, t[, cond])."""
    return (SPATIAL, SPATIAL, SHARED) + ((PER_IMAGE,) if cond is not None else ())


def one_file(states: list, what: str) -> list:
    """The single checkpoint a released model comes in, or a one-line error."""
    if len(states) != 1:
        raise ValueError(f"{what} is released as one file, got {len(states)}")
    return states


def mrsde_sampling(schedule: mrsde.MRSDESchedule) -> Sampling:
    """The MR-SDE family's samplers, 1..T steps; compare runs the paper's SDE at T steps and
    the posterior sampler at T and at 20 steps."""
    T = schedule.T
    comparison = tuple(dict.fromkeys([("sde", T), ("posterior", T), ("posterior", min(20, T))]))
    return Sampling(samplers=tuple(mrsde.SAMPLERS), max_steps=T, comparison=comparison)


class RefusionRestorer(RestorerBase):
    config_class: ClassVar[type] = RefusionConfig
    stages: ClassVar[list[str]] = ["diffusion"]

    @staticmethod
    def check_preset(preset: Preset) -> None:
        check_views(preset, preset.model.network)
        check_lens_scalars(preset, preset.model.network)

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.config = preset.model
        self.schedule = self.config.diffusion.build()
        self.sampling = mrsde_sampling(self.schedule)
        self.net = self.build_noise_network()
        network = self.config.network
        self.views = getattr(network, "views", 1)  # L‖R views the network takes
        self.upscale = getattr(network, "upscale", 1)  # SR: μ is the bicubic upsampling
        self.upsampler = getattr(network, "upsampler", "matlab")
        self.holes = getattr(network, "holes", "")
        self.cond_scalars = getattr(network, "cond_scalars", 0)  # global scalars (lenses)

    def build_noise_network(self) -> nn.Module:
        return noise_network(self.config.network)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Refusion's matching loss (paper eq. 6, official ``MatchingLoss``): L1 between one reverse
        SDE step driven by the predicted noise and the optimal reverse state x*_{t−1}."""
        mu, x0 = mean_state(self.upscale, batch.lq, self.upsampler, self.holes), batch.gt
        n = x0.shape[0]
        t = torch.randint(1, self.schedule.T + 1, (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        return matching_loss(self.net, self.schedule, x0, mu, t, noise, batch.cond)

    def official_modules(self, states: list[dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        """The official ConditionalNAFNet's state_dict (every released refusion.yml model),
        for a preset of the official sizes with the official layer norm."""
        (state,) = one_file(states, "Refusion's noise network")
        network = self.config.network
        if network.cond_scalars:
            raise ValueError("importing the lens-conditioned bokeh net is not supported yet")
        if network.layer_norm != "gain":
            raise ValueError(
                'the official network uses the gain-only layer norm: set network.layer_norm = "gain"'
            )
        key_map = REFUSION_NAFNET
        if network.views == 2:
            if network.tied_views or network.scam_resize != "scale_factor":
                raise ValueError(
                    "the official stereo network has separate left/right SCAM weights and "
                    "resizes by scale factor: set network.tied_views = false and "
                    'network.scam_resize = "scale_factor"'
                )
            key_map = REFUSION_STEREO
        what = f"Refusion's ConditionalNAFNet of {self.preset.name}'s sizes"
        return {"net": import_state(state, self.net, key_map, what)}

    def condition(self, lq: Tensor, cond: Conditioning) -> Tensor | None:
        return condition_tensor(self.preset, self.cond_scalars, cond, lq.shape[0], lq.device)

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
        mu = mean_state(self.upscale, lq, self.upsampler, self.holes)
        tiled = tiler.wrap(self.net, *noise_net_roles(condition))
        model = bind_noise_model(tiled, mu, condition)
        if self.views > 1 and generator is not None:
            noise = view_noise(generator, lq, self.views)
        else:
            noise = mrsde.gaussian_noise(generator)
        return sample_reverse(model, mu, self.schedule, options, noise, callback)


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
    model: mrsde.NoiseModel,
    mu: Tensor,
    sched: mrsde.MRSDESchedule,
    options: SampleOptions,
    noise: mrsde.NoiseFn,
    callback: ProgressFn | None,
) -> Tensor:
    """Run the chosen reverse sampler from x_T = μ + λz (pixel or latent space alike)."""
    sampler = mrsde.SAMPLERS[options.sampler]
    x_T = mrsde.terminal_sample(mu, sched, noise(mu))
    grid = mrsde.timesteps(sched.T, options.steps)
    step_callback = (lambda i, n, _x: callback(i + 1, n)) if callback else None
    return sampler(model, x_T, mu, sched, grid, noise, step_callback)
