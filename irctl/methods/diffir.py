"""DiffIR (Xia et al., ICCV 2023): diffusion on a compact 256-value image prior (IPR) that
modulates a transformer restorer, instead of on the image.

Inference (paper §4.2, fact sheet §0): CPEN_S2 turns the LQ image into a condition vector, 4
deterministic posterior-mean steps from z_T ~ N(0, I) give the IPR, and DIRformer restores the
image modulated by it. The prior is computed once per image on the whole image — exactly, at any
size: CPEN's features are computed tile by tile with margins wider than its receptive field and
summed into its global average pool — and every DIRformer tile gets the same IPR.

Training, three stages (``irctl train --stage``):

- ``stage1``: CPEN_S1 (LQ and ground truth) + DIRformer, L1 (paper Eq. 5);
- ``prior``: the official stage 2's warm-up phase — CPEN_S2 + denoiser learn alone, L1 between
  the IPR the 4-step chain reaches from q(z_T | Z_S1) and the frozen CPEN_S1's Z_S1;
- ``stage2``: CPEN_S2 + denoiser + DIRformer (started from stage 1's), L1(image) + L1(IPR)
  through the whole chain (paper §4.2), CPEN_S1 frozen as the teacher.

A stage-2 checkpoint restores on its own; the teacher is only needed to train.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.data.masks import PREFILLS, prefill_holes
from irctl.diffusion import ddpm
from irctl.methods.base import Conditioning, ProgressFn, RestorerBase, SampleOptions, Sampling
from irctl.methods.official_keys import diffir_key_maps, import_state
from irctl.nets.dirformer import DIRformer, DIRformerConfig
from irctl.nets.ipr import CPEN, IPRDenoiser, PriorConfig, cpen_input
from irctl.nets.layers import pad_to_multiple
from irctl.tiling import PER_IMAGE, SPATIAL

SAMPLER = "posterior_mean"


@dataclass(frozen=True)
class HolesConfig:
    """``[holes]``, inpainting only: what fills the holes of ``[image·(1 − m), m]`` before the
    networks see it. "none" (the official models: zeros); "telea": OpenCV's Telea fill
    (irctl/data/masks.py ``prefill_holes``), so a small net refines a classical fill instead of
    painting each hole from black."""

    prefill: str = "none"

    def __post_init__(self) -> None:
        if self.prefill not in PREFILLS:
            raise ValueError(
                f"holes.prefill must be one of {', '.join(PREFILLS)}, got {self.prefill!r}"
            )


@dataclass(frozen=True)
class DiffIRConfig:
    """DiffIR's tables: ``[network]`` (DIRformer), ``[prior]`` (CPEN and the IPR denoiser),
    ``[diffusion]`` (the IPR's DDPM), ``[holes]`` (inpainting's input)."""

    network: DIRformerConfig = field(default_factory=DIRformerConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    diffusion: ddpm.DDPMConfig = field(default_factory=ddpm.DDPMConfig)
    holes: HolesConfig = field(default_factory=HolesConfig)


class DiffIRRestorer(RestorerBase):
    config_class: ClassVar[type] = DiffIRConfig
    stages: ClassVar[list[str]] = ["stage1", "prior", "stage2"]

    @staticmethod
    def check_preset(preset: Preset) -> None:
        cfg: DiffIRConfig = preset.model
        deg, net = preset.degradation, cfg.network
        if (deg.kind == "inpaint_mask") != (net.in_channels == 4):
            raise ValueError(
                "an inpainting input is [image·(1 − m), m]: network.in_channels = 4 goes with "
                "the inpaint_mask degradation and only with it"
            )
        if deg.kind == "bicubic_sr" and (net.output, net.scale) != ("upscale", deg.scale):
            raise ValueError(
                f'a bicubic_sr degradation needs network.output = "upscale" and network.scale '
                f"= degradation.scale = {deg.scale}"
            )
        if cfg.holes.prefill != "none" and net.in_channels != 4:
            raise ValueError(
                "holes.prefill fills an inpainting input's holes: it needs network.in_channels = 4"
            )
        if cfg.prior.ipr_dim != cfg.network.prior_dim:
            raise ValueError(
                f"the IPR has 4·prior.width = {cfg.prior.ipr_dim} values but network.prior_dim "
                f"is {cfg.network.prior_dim}"
            )

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.config: DiffIRConfig = preset.model
        net = self.config.network
        self.schedule = self.config.diffusion.build()
        T = self.schedule.T
        self.sampling = Sampling(
            samplers=(SAMPLER,), max_steps=T, min_steps=T, comparison=((SAMPLER, T),)
        )
        #: CPEN's LQ unshuffle: its input is at a quarter of the output size
        self.cpen_unshuffle = 4 // net.scale
        lq_channels = net.in_channels * self.cpen_unshuffle**2
        self.dirformer = DIRformer(net)
        self.cpen = CPEN(lq_channels, self.config.prior)
        self.denoiser = IPRDenoiser(self.config.prior, T)
        self.teacher = CPEN(lq_channels + 16 * net.out_channels, self.config.prior)

    # --- modules and stages -------------------------------------------------------------------

    def modules(self) -> dict[str, nn.Module]:
        return {
            "dirformer": self.dirformer,
            "cpen": self.cpen,
            "denoiser": self.denoiser,
            "teacher": self.teacher,
        }

    def restore_modules(self) -> dict[str, nn.Module]:
        """CPEN_S1 (the teacher) is for training only: a released stage-2 model lacks it."""
        return {"dirformer": self.dirformer, "cpen": self.cpen, "denoiser": self.denoiser}

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        if stage == "stage1":
            return {"teacher": self.teacher, "dirformer": self.dirformer}
        if stage == "prior":
            return {"cpen": self.cpen, "denoiser": self.denoiser}
        return {"cpen": self.cpen, "denoiser": self.denoiser, "dirformer": self.dirformer}

    # --- the prior ----------------------------------------------------------------------------

    def ipr_chain(self, condition: Tensor, z_T: Tensor) -> Tensor:
        """The T posterior-mean steps from ``z_T`` given CPEN_S2's condition vector."""
        return ddpm.sample_posterior_mean(
            lambda z, t: self.denoiser(z, t, condition), z_T, self.schedule
        )

    def teacher_ipr(self, lq: Tensor, gt: Tensor) -> Tensor:
        """Z_S1 = CPEN_S1(LQ ⊕ GT): the prior stage 1 learns and stage 2 imitates."""
        return self.teacher(cpen_input(lq, self.cpen_unshuffle, gt))

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        stage = stage or self.stages[-1]
        batch = dataclasses.replace(batch, lq=self.prepared(batch.lq))
        if stage == "stage1":
            restored = self.written(
                batch.lq, self.dirformer(batch.lq, self.teacher_ipr(batch.lq, batch.gt))
            )
            loss = F.l1_loss(restored, batch.gt)
            return loss, {"loss": float(loss.detach())}
        with torch.no_grad():
            target = self.teacher_ipr(batch.lq, batch.gt)
        noise = torch.randn(target.shape, generator=generator, dtype=target.dtype)
        z_T = ddpm.q_sample(target, self.schedule.T - 1, noise.to(target.device), self.schedule)
        ipr = self.ipr_chain(self.cpen(cpen_input(batch.lq, self.cpen_unshuffle)), z_T)
        ipr_loss = F.l1_loss(ipr, target)
        if stage == "prior":
            return ipr_loss, {"loss": float(ipr_loss.detach())}
        image_loss = F.l1_loss(self.written(batch.lq, self.dirformer(batch.lq, ipr)), batch.gt)
        loss = image_loss + ipr_loss
        return loss, {
            "loss": float(loss.detach()),
            "l1": float(image_loss.detach()),
            "ipr_l1": float(ipr_loss.detach()),
        }

    def prepared(self, lq: Tensor) -> Tensor:
        """The networks' input: an inpainting input's holes filled as ``[holes] prefill`` says
        (on the whole image, before any tiling); otherwise ``lq`` itself."""
        if self.config.holes.prefill == "none":
            return lq
        return prefill_holes(lq)

    def written(self, lq: Tensor, restored: Tensor) -> Tensor:
        """What restoring writes for ``restored``: for inpainting (the 4-channel input
        ``[image·(1 − m), m]``) the known pixels are copied back from the input
        (:meth:`~irctl.tasks.inpaint.InpaintTask.complete`), so the loss is taken on that
        composite and only the holes teach the network; otherwise ``restored`` itself. The
        official recipe (LaMa's) puts a weighted L1 on the whole output instead, with perceptual
        and adversarial losses for the holes; a tiny L1-only model cannot afford to spend
        capacity reproducing pixels that are never used."""
        if self.dirformer.cfg.in_channels != 4:
            return restored
        holes = lq[:, 3:4]
        return lq[:, :3] * (1.0 - holes) + restored * holes

    # --- restoring ----------------------------------------------------------------------------

    def condition(self, lq: Tensor, cond: Conditioning) -> None:
        if cond.scalars:
            raise ValueError(f"{self.preset.name} takes no conditioning values")

    def prior_condition(self, lq: Tensor, tile: int) -> Tensor:
        """CPEN_S2(LQ) on the whole image, its features computed in tiles of ``tile`` pixels of
        CPEN's grid (0: at once) and pooled exactly."""
        x = cpen_input(lq, self.cpen_unshuffle)
        pooled = pooled_features(self.cpen.features, x, tile, margin=cpen_reach(self.cpen))
        return self.cpen.mlp(pooled)

    def oracle_runs(self) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
        """The stage-1 upper bound: what a perfect prior would give (paper Table 6's DiffIR_S1
        row), with the restorer's DIRformer; none when the checkpoint lacked the teacher (the
        authors' released stage-2 files do)."""
        if "teacher" not in self.loaded_modules:
            return {}
        return {"given the ground-truth IPR (upper bound)": self.restore_with_gt_ipr}

    def unfinished_runs(self, stage: str) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
        """After stage 1 (and the prior stage, which leaves the DIRformer and CPEN_S1 as stage
        1 left them) the upper bound already scores: DiffIR_S1, the DIRformer given CPEN_S1's
        IPR from the ground truth. The 4-step estimate needs the finished stage 2."""
        if stage not in ("stage1", "prior") or "dirformer" not in self.loaded_modules:
            return {}
        return self.oracle_runs()

    @torch.no_grad()
    def restore_with_gt_ipr(self, lq: Tensor, gt: Tensor) -> Tensor:
        """The DIRformer modulated by Z_S1 = CPEN_S1(LQ ⊕ GT) — the teacher's IPR from the
        ground truth — instead of the 4-step estimate from the LQ alone: how much better the
        output could be if the diffusion recovered the prior exactly. Needs the teacher (a
        checkpoint that kept it, as irctl's own do); whole image, padded like :meth:`restore`."""
        net = self.dirformer
        h, w = lq.shape[-2:]
        s = net.cfg.scale
        lq = self.prepared(lq)
        lq, gt = pad_to_multiple(lq, net.multiple), pad_to_multiple(gt, net.multiple * s)
        out = net(lq, self.teacher_ipr(lq, gt))
        return out[..., : h * s, : w * s]

    @torch.no_grad()
    def restore(
        self,
        lq: Tensor,
        condition: None,
        options: SampleOptions,
        generator: torch.Generator | None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        net = self.dirformer
        h, w = lq.shape[-2:]
        padded = pad_to_multiple(self.prepared(lq), net.multiple)
        tile = options.tiles.tile
        sync = torch.cuda.synchronize if lq.is_cuda else (lambda: None)
        tic = time.perf_counter()
        c = self.prior_condition(padded, -(-tile // self.cpen_unshuffle) if tile else 0)
        shape = (lq.shape[0], self.config.prior.ipr_dim)
        z_T = torch.randn(shape, generator=generator, dtype=torch.float32).to(lq)
        ipr = self.ipr_chain(c, z_T)
        if callback is not None:
            callback(self.schedule.T, self.schedule.T + 1)
        sync()
        toc = time.perf_counter()
        tiler = options.tiles.on_grid(align=net.multiple)
        out = tiler.wrap(net, SPATIAL, PER_IMAGE)(padded, ipr)
        if callback is not None:
            callback(self.schedule.T + 1, self.schedule.T + 1)
        sync()
        #: the paper's point, measured: the diffusion (CPEN + 4 steps) costs almost nothing
        self.phase_seconds = {"prior": toc - tic, "dirformer": time.perf_counter() - toc}
        s = net.cfg.scale
        return out[..., : h * s, : w * s]

    # --- the authors' releases ----------------------------------------------------------------

    def official_modules(self, states: list[dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        """A released DiffIRS2 (basicsr ``params_ema`` or the inpainting Lightning checkpoint's
        ``generator.*``): DIRformer ``G``, CPEN_S2 ``condition``, the denoiser ``denoise``. The
        same modules registered a second time under ``diffusion.*`` must be equal, and the
        schedule buffers must be the schedule irctl computes."""
        if len(states) != 1:
            raise ValueError(f"DiffIR is released as one file, got {len(states)}")
        state = dict(states[0])
        if any(k.startswith("generator.") for k in state):  # the LaMa/Lightning checkpoint
            state = {
                k[len("generator.") :]: v for k, v in state.items() if k.startswith("generator.")
            }
        check_duplicates(
            state, {"diffusion.model.": "denoise.", "diffusion.condition.": "condition."}
        )
        check_schedule(state, self.schedule)
        state = {k: v for k, v in state.items() if not k.startswith("diffusion.")}
        maps = diffir_key_maps(
            self.config.prior.denoiser_blocks, self.config.network.output == "upscale"
        )
        parts = {"dirformer": "G.", "cpen": "condition.", "denoiser": "denoise."}
        unknown = [k for k in state if not k.startswith(tuple(parts.values()))]
        if unknown:
            raise ValueError(f"unexpected keys {', '.join(unknown[:4])}")
        name = self.preset.name
        return {
            module: import_state(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)},
                self.restore_modules()[module],
                maps[module],
                f"{name}'s {module} ({prefix[:-1]})",
            )
            for module, prefix in parts.items()
        }


def check_duplicates(state: dict[str, Tensor], aliases: dict[str, str]) -> None:
    """Each tensor under an alias prefix equals its twin under the main prefix (one module
    registered twice); a difference means a damaged or edited file."""
    for alias, main in aliases.items():
        for key in [k for k in state if k.startswith(alias)]:
            twin = main + key[len(alias) :]
            if twin not in state:
                raise ValueError(f"{key} has no twin {twin}")
            if not torch.equal(state[key], state[twin]):
                raise ValueError(f"{key} differs from {twin}: the file is inconsistent")


def check_schedule(state: dict[str, Tensor], schedule: ddpm.DDPMSchedule) -> None:
    """The checkpoint's DDPM buffers are the schedule irctl computes (else the preset's
    ``[diffusion]`` is not the model's)."""
    for name, ours in schedule.buffers().items():
        theirs = state.get(f"diffusion.{name}")
        if theirs is None:
            continue
        if theirs.shape != ours.shape or not torch.allclose(
            theirs.float(), ours, rtol=1e-5, atol=1e-7
        ):
            raise ValueError(
                f"diffusion.{name} is {theirs.tolist()}, the preset's [diffusion] gives "
                f"{[round(v, 6) for v in ours.tolist()]}"
            )


def cpen_reach(cpen: CPEN) -> int:
    """How far (pixels of CPEN's grid) a feature before the pool sees: one per 3×3 conv."""
    return sum(1 for m in cpen.features.modules() if isinstance(m, nn.Conv2d))


def pooled_features(features: nn.Sequential, x: Tensor, tile: int, margin: int) -> Tensor:
    """``features`` (ending in a global average pool) of ``x``, computed in tiles: each tile
    is run with ``margin`` pixels of its neighbours (zero padding only at the image border, as
    for the whole image), its centre summed. Equal to the untiled pool up to summation order;
    memory follows the tile."""
    body = features[:-1]
    if not isinstance(features[-1], nn.AdaptiveAvgPool2d):
        raise ValueError("pooled_features needs a network ending in its global average pool")
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return features(x).flatten(1)
    total = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            y0, x0 = max(top - margin, 0), max(left - margin, 0)
            y1, x1 = min(top + tile + margin, h), min(left + tile + margin, w)
            out = body(x[..., y0:y1, x0:x1])
            centre = out[
                ...,
                top - y0 : top - y0 + min(tile, h - top),
                left - x0 : left - x0 + min(tile, w - left),
            ]
            part = centre.sum(dim=(-2, -1), dtype=torch.float64)
            total = part if total is None else total + part
    assert total is not None
    return (total / (h * w)).to(x.dtype)
