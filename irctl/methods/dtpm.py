"""DTPM (Ye et al., CVPR 2024): a diffusion prior on image *texture*, frozen, adapted to a
restoration task by guidance adapters and an initial predictor. No public code exists; this is
the first implementation, and every gap in the paper is a named, switchable choice
(fact sheet ``dtpm.md`` §9).

Training, two stages (``irctl train --stage``):

- ``prior`` (stage I, Eq. 4): the texture residual r = x_g − y_s of photos and their RTV
  structure y_s is diffused (DDPM, T = 1000, linear β) and the :class:`TexturePrior`, given
  [x_t ‖ y_s], t and the semantic code of y_s, predicts ε (or r itself, ``prediction="x0"``).
  Data: whatever the task, the preset's photos and their RTV structure
  (:meth:`DTPMRestorer.stage_degradation`).
- ``adapt`` (stage II, Eq. 6): the prior is frozen; the initial predictor gives
  y_ε = ε_θ(y_d) and the diffusion now models y_g − y_ε given [x_t ‖ y_d], the semantic code
  of y_d and the adapters fed with y_ε. Trainable: the adapters, the predictor and the prior's
  intro conv (A8), the predictor only through this loss.

Restoring: y_ε and the semantic code once per image (the code on the whole image, resized),
then DDIM from x_T ~ N(0, I) over 4/10/50 steps (``--steps``; η from the preset), every tile
of the prior given the same code; output y_ε + α·r̂₀ (A3; α the texture strength, default 1).
Images are scaled to [−1, 1] inside (A10), so the residual lies in [−2, 2].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irctl.config import DegradationConfig, Preset
from irctl.data.batch import Batch
from irctl.data.rtv import RTVParams
from irctl.diffusion import ddim
from irctl.methods.base import Conditioning, ProgressFn, RestorerBase, SampleOptions, Sampling
from irctl.nets.dtpm import (
    GuidanceAdapters,
    PriorIntro,
    TexturePrior,
    TexturePriorConfig,
    build_semantic_encoder,
    semantic_input,
)
from irctl.nets.layers import pad_to_multiple
from irctl.nets.nafnet import NAFNet, NAFNetConfig
from irctl.tiling import PER_IMAGE, SHARED, SPATIAL

SAMPLER = "ddim"
#: the step counts the paper reports (DTPM-4s, -10s, -50s): ``irctl compare``'s rows
PAPER_STEPS = (4, 10, 50)
LOSSES = ("l1", "l2")
CONDITIONS = ("degraded", "prediction")


@dataclass(frozen=True)
class DTPMDiffusionConfig:
    """The ``[diffusion]`` table: the texture DDPM (paper §4.1) and the open choices of
    fact sheet §9, each named by its row."""

    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    #: "epsilon" as Eq. 4 writes it; "x0": the clean residual (the authors' later code)
    prediction: str = "epsilon"
    #: A1: the norm of Eq. 4/6 (lost in the paper's text); DvSR uses L1
    loss: str = "l1"
    #: A4: DDIM's η at restore time (0: deterministic given x_T)
    eta: float = 0.0
    #: the texture-strength knob α of x̂ = y_ε + α·r̂₀ (Fig. 1's motivation; 1 = the method)
    texture_strength: float = 1.0
    #: A9: what stage II's concat input and semantic code see: the degraded input y_d (Eq. 6
    #: as written) or the initial prediction y_ε (closer to stage I's smooth images)
    condition: str = "degraded"

    def __post_init__(self) -> None:
        if self.prediction not in ddim.PREDICTIONS:
            raise ValueError(f"diffusion.prediction must be one of {ddim.PREDICTIONS}")
        if self.loss not in LOSSES:
            raise ValueError(f"diffusion.loss must be one of {LOSSES}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"diffusion.condition must be one of {CONDITIONS}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"diffusion.eta must be in [0, 1], got {self.eta}")
        if self.texture_strength < 0:
            raise ValueError("diffusion.texture_strength must be >= 0")

    def schedule(self) -> ddim.DDIMSchedule:
        return ddim.linear_schedule(self.T, self.beta_start, self.beta_end)


@dataclass(frozen=True)
class DTPMConfig:
    """DTPM's tables: ``[network]`` (the prior, adapters, semantic code), ``[predictor]`` (the
    initial predictor, a NAFNet with a global residual), ``[texture]`` (RTV, stage I's
    smoothing; A5) and ``[diffusion]``."""

    network: TexturePriorConfig = field(default_factory=TexturePriorConfig)
    predictor: NAFNetConfig = field(default_factory=NAFNetConfig)
    texture: RTVParams = field(default_factory=RTVParams)
    diffusion: DTPMDiffusionConfig = field(default_factory=DTPMDiffusionConfig)


def to_signed(x: Tensor) -> Tensor:
    """[0, 1] → [−1, 1], the range the paper's images live in (A10)."""
    return x * 2 - 1


def to_unit(x: Tensor) -> Tensor:
    return (x + 1) / 2


class DTPMRestorer(RestorerBase):
    config_class: ClassVar[type] = DTPMConfig
    stages: ClassVar[list[str]] = ["prior", "adapt"]

    @staticmethod
    def check_preset(preset: Preset) -> None:
        cfg: DTPMConfig = preset.model
        if preset.degradation.kind in ("bicubic_sr", "stereo_sr", "inpaint_mask", "bokeh"):
            raise ValueError(
                "DTPM restores same-size, 3-channel images without side inputs; "
                f"degradation {preset.degradation.kind!r} is not one of its tasks"
            )
        if cfg.predictor.channels != cfg.network.channels:
            raise ValueError("predictor.channels must equal network.channels")

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.config: DTPMConfig = preset.model
        net = self.config.network
        self.schedule = self.config.diffusion.schedule()
        T = self.schedule.T
        self.sampling = Sampling(
            samplers=(SAMPLER,),
            max_steps=T,
            comparison=tuple((SAMPLER, s) for s in PAPER_STEPS if s <= T),
        )
        self.intro = PriorIntro(net)
        self.prior = TexturePrior(net)
        self.adapters = GuidanceAdapters(net)
        self.predictor = NAFNet(self.config.predictor)
        self.semantic = build_semantic_encoder(net)
        self.semantic_from_file = False
        if net.semantic == "resnet18" and Path(net.semantic_weights).expanduser().is_file():
            self._load_resnet(Path(net.semantic_weights).expanduser())

    def _load_resnet(self, path: Path) -> None:
        from safetensors.torch import load_file

        state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("fc.")}
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        assert self.semantic is not None
        missing, unexpected = self.semantic.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: not a torchvision ResNet-18 state_dict (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})"
            )
        self.semantic_from_file = True

    # --- modules and stages -------------------------------------------------------------------

    def modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {
            "intro": self.intro,
            "prior": self.prior,
            "adapters": self.adapters,
            "predictor": self.predictor,
        }
        if self.semantic is not None:
            modules["semantic"] = self.semantic
        return modules

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        """Stage I: the prior, its intro and a learned semantic encoder (a ResNet-18 stays
        frozen, as in the paper). Stage II: the adapters, the predictor and the intro (A8)."""
        if stage == "prior":
            trained: dict[str, nn.Module] = {"intro": self.intro, "prior": self.prior}
            if self.config.network.semantic == "learned":
                assert self.semantic is not None
                trained["semantic"] = self.semantic
            return trained
        return {"intro": self.intro, "adapters": self.adapters, "predictor": self.predictor}

    def stage_degradation(self, stage: str) -> DegradationConfig:
        """Stage I learns texture from the photos themselves: pairs (RTV structure, photo)
        with the preset's ``[texture]`` settings, whatever the task."""
        if stage != "prior":
            return self.preset.degradation
        rtv = {
            f"rtv_{f.name}": getattr(self.config.texture, f.name)
            for f in dataclasses.fields(RTVParams)
        }
        return DegradationConfig(kind="rtv_texture", quantize=False, **rtv)

    def stage_depends_on(self, stage: str) -> frozenset[str] | None:
        """The texture prior depends on its network, the RTV settings, the diffusion, the
        recipe and the photos — not on the task, its degradation, the sampler or the initial
        predictor: the paper trains stage I once for every task, and so can a user (copy
        ``prior/`` into another task's run folder and train with ``--resume``)."""
        if stage != "prior":
            return None
        return frozenset({"method", "network", "texture", "diffusion", "train", "data"})

    def fresh_modules(self, stage: str) -> frozenset[str]:
        """Stage II's adapters and predictor start from their own initialisation: stage I never
        runs them, so a predictor of another size (``[predictor]``) uses the same prior."""
        return frozenset({"adapters", "predictor"}) if stage == "adapt" else frozenset()

    # --- shared pieces ------------------------------------------------------------------------

    def semantic_code(self, image: Tensor) -> Tensor | None:
        """The global semantic code of an image in [−1, 1] (N rows), from the whole image
        resized to ``network.semantic_size``²: computed once per image, never per tile."""
        if self.semantic is None:
            return None
        if self.config.network.semantic == "resnet18" and not (
            self.semantic_from_file or "semantic" in self.loaded_modules
        ):
            raise ValueError(
                f"the ResNet-18 weights {self.config.network.semantic_weights!r} are missing: "
                "save torchvision's ImageNet resnet18 state_dict there as safetensors"
            )
        return self.semantic(semantic_input(image, self.config.network.semantic_size))

    def predict(self, y_d: Tensor) -> Tensor:
        """The initial prediction y_ε = ε_θ(y_d) (Eq. 5–6), in [−1, 1] like its input."""
        return self.predictor(y_d)

    def _target(self, residual: Tensor, noise: Tensor) -> Tensor:
        return noise if self.config.diffusion.prediction == "epsilon" else residual

    def _distance(self, a: Tensor, b: Tensor) -> Tensor:
        return F.l1_loss(a, b) if self.config.diffusion.loss == "l1" else F.mse_loss(a, b)

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        stage = stage or self.stages[-1]
        gt = to_signed(batch.gt)
        n = gt.shape[0]
        t = torch.randint(0, self.schedule.T, (n,), generator=generator)
        noise = torch.randn(gt.shape, generator=generator, dtype=gt.dtype).to(gt.device)
        t = t.to(gt.device)
        if stage == "prior":
            smooth = to_signed(batch.lq)
            residual = gt - smooth  # Eq. 4: the texture
            x_t = ddim.q_sample(residual, t, noise, self.schedule)
            out = self.prior(self.intro(x_t, smooth), t, self.semantic_code(smooth))
        else:
            y_d = to_signed(batch.lq)
            y_eps = self.predict(y_d)
            # Not detached (fact sheet §3): the predictor learns through the residual it leaves.
            residual = gt - y_eps
            x_t = ddim.q_sample(residual, t, noise, self.schedule)
            seen = y_d if self.config.diffusion.condition == "degraded" else y_eps
            code = self.semantic_code(seen)
            out = self.prior(self.intro(x_t, seen), t, code, self.adapters, y_eps)
        loss = self._distance(out, self._target(residual, noise))
        return loss, {"loss": float(loss.detach())}

    # --- restoring ----------------------------------------------------------------------------

    def condition(self, lq: Tensor, cond: Conditioning) -> None:
        if cond.scalars:
            raise ValueError(f"{self.preset.name} takes no conditioning values")

    def _denoise(
        self, x_t: Tensor, seen: Tensor, t: Tensor, code: Tensor | None, y_eps: Tensor
    ) -> Tensor:
        """One evaluation of the adapted prior on a tile: f_θ(x_t, seen, t | code, y_ε)."""
        return self.prior(self.intro(x_t, seen), t, code, self.adapters, y_eps)

    @torch.no_grad()
    def restore(
        self,
        lq: Tensor,
        condition: None,
        options: SampleOptions,
        generator: torch.Generator | None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        diffusion = self.config.diffusion
        h, w = lq.shape[-2:]
        multiple = max(self.prior.multiple, self.predictor.multiple)
        y_d = to_signed(pad_to_multiple(lq, multiple))
        tiler = options.tiles.on_grid(align=multiple)
        y_eps = tiler.wrap(self.predict, SPATIAL)(y_d)
        seen = y_d if diffusion.condition == "degraded" else y_eps
        code = self.semantic_code(seen)
        roles = (SPATIAL, SPATIAL, SHARED, PER_IMAGE if code is not None else SHARED, SPATIAL)
        tiled = tiler.wrap(self._denoise, *roles)

        def model(x_t: Tensor, t: Tensor) -> Tensor:
            # Every image of a batch is at the same step: one scalar for all of its tiles.
            return tiled(x_t, seen, t[0], code, y_eps)

        x_T = torch.randn(y_d.shape, generator=generator, dtype=torch.float32).to(y_d)
        total = options.steps

        def progress(i: int, n: int, x: Tensor) -> None:
            if callback is not None:
                callback(i + 1, total)

        residual = ddim.sample_ddim(
            model,
            x_T,
            self.schedule,
            options.steps,
            eta=diffusion.eta,
            prediction=diffusion.prediction,  # type: ignore[arg-type]
            generator=generator,
            callback=progress,
        )
        out = y_eps + diffusion.texture_strength * residual
        return to_unit(out)[..., :h, :w]

    def component_runs(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """The initial predictor alone: what DTPM's diffusion adds texture to (the paper's
        Fig. 9), so the table shows what the texture prior changes."""
        return {"initial predictor alone": self.restore_predictor_only}

    @torch.no_grad()
    def restore_predictor_only(self, lq: Tensor) -> Tensor:
        """y_ε = ε_θ(y_d) mapped back to [0, 1], untiled."""
        h, w = lq.shape[-2:]
        y_d = to_signed(pad_to_multiple(lq, self.predictor.multiple))
        return to_unit(self.predict(y_d))[..., :h, :w]
