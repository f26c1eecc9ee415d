"""The Restorer protocol: everything method-specific lives behind it (DESIGN.md).

engine/ and cli/ only ever talk to a Restorer, so adding a method never touches them. A
Restorer declares what it can be asked (its samplers and their step range, its training
stages); the engine validates a run's options against that once, computes each image's global
conditioning once with :meth:`Restorer.condition`, and calls :meth:`Restorer.restore`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from irctl.conditioning import Conditioning
from irctl.config import DegradationConfig, Preset, SamplerConfig
from irctl.data.batch import Batch
from irctl.tiling import TileSettings

__all__ = ["Conditioning", "ProgressFn", "Restorer", "RestorerBase", "SampleOptions", "Sampling"]

#: Progress of one restore: (steps done, total steps).
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Sampling:
    """What a diffusion Restorer offers: its samplers, the steps they allow (1..max_steps),
    and the runs ``irctl compare`` makes by default (sampler, steps)."""

    samplers: tuple[str, ...]
    max_steps: int
    comparison: tuple[tuple[str, int], ...] = ()
    #: fewest steps; = max_steps for a sampler that always runs its whole chain (DiffIR's 4)
    min_steps: int = 1

    def check(self, sampler: str, steps: int) -> None:
        """A one-line ValueError for the user if (sampler, steps) cannot run on this model."""
        if sampler not in self.samplers:
            raise ValueError(
                f"--sampler {sampler!r}: unknown sampler; choose {', '.join(self.samplers)}"
            )
        if self.min_steps == self.max_steps and steps != self.max_steps:
            raise ValueError(
                f"this model always runs its {self.max_steps} steps, got --steps {steps}"
            )
        if not self.min_steps <= steps <= self.max_steps:
            raise ValueError(
                f"--steps must be between {self.min_steps} and T={self.max_steps}, got {steps}"
            )


@dataclass(frozen=True)
class SampleOptions:
    """How to run the model for one run: sampler and steps (diffusion methods) and the user's
    tile settings in image pixels (each method turns them into its networks' tilers)."""

    sampler: str = "sde"
    steps: int = 100
    tiles: TileSettings = field(default_factory=TileSettings)
    #: restore every symmetric version of the image the task allows and average them
    #: (irctl/symmetry.py); the engine does it, around the method
    self_ensemble: bool = False

    @classmethod
    def from_preset(
        cls,
        preset: Preset,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        tile_batch: int | None = None,
        tile_layout: str | None = None,
        self_ensemble: bool = False,
    ) -> SampleOptions:
        """The preset's ``[sampler]`` defaults, each overridable (None keeps the preset's)."""
        cfg: SamplerConfig = preset.sampler
        tile = cfg.tile if tile is None else tile
        if overlap is not None and tile and overlap >= tile:
            raise ValueError(f"--tile-overlap {overlap} must be smaller than the tile {tile}")
        if overlap is None and tile and cfg.tile_overlap >= tile:
            # never clamped behind the user's back: the clamp made tiles that advance one pixel
            # at a time (overlap = tile - 1) and ground for hours instead of failing
            raise ValueError(
                f"--tile {tile} must be larger than the preset's tile overlap "
                f"{cfg.tile_overlap}; give --tile-overlap below {tile} too"
            )
        overlap = cfg.tile_overlap if overlap is None else overlap
        return cls(
            sampler=sampler or cfg.name,
            steps=cfg.steps if steps is None else steps,  # --steps 0 is an error, not "default"
            tiles=TileSettings(
                tile=tile,
                overlap=min(overlap, max(tile - 1, 0)),
                batch=tile_batch or cfg.tile_batch,
                layout=tile_layout or "even",
            ),
            self_ensemble=self_ensemble,
        )


class Restorer(Protocol):
    #: the dataclass that parses the method's own preset tables (each field one table, such as
    #: ``network`` and ``diffusion``); ``preset.model`` is an instance of it
    config_class: ClassVar[type]
    preset: Preset
    stages: list[str]  # training stages in order, e.g. ["compressor", "diffusion"]
    #: the samplers a diffusion method offers; None: one forward pass (sampler, steps and seed
    #: do not apply)
    sampling: Sampling | None

    @staticmethod
    def check_preset(preset: Preset) -> None:
        """Raise ValueError if the method's tables disagree with the shared sections (a stereo
        degradation for a single-view network): such a preset would train a useless model."""
        ...

    def modules(self) -> dict[str, nn.Module]:
        """What a checkpoint holds, by name."""
        ...

    def restore_modules(self) -> dict[str, nn.Module]:
        """The modules restoring needs (a checkpoint for restoring must hold these): all of
        :meth:`modules` but what only training uses (DiffIR's stage-1 teacher)."""
        ...

    def tile_multiple(self) -> int:
        """The smallest useful ``--tile`` in image pixels: every tile is padded up to a multiple
        of this anyway, so a smaller tile only multiplies the tiles (a 3-pixel tile on a
        64-pixel image made 3 844 tiles per network call). Checked once per run."""
        ...

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        """The modules one training stage optimises (the others stay frozen)."""
        ...

    def stage_degradation(self, stage: str) -> DegradationConfig:
        """The pairs one training stage learns from: the preset's degradation, except for a
        stage that learns something else (DTPM's texture prior: photos and their RTV
        structure, whatever the task)."""
        ...

    def stage_depends_on(self, stage: str) -> frozenset[str] | None:
        """The top-level preset keys a stage's checkpoint depends on (None: all of them): a
        later stage, or another preset's, may start from it when these agree. DTPM's texture
        prior does not depend on the task, so one prior serves every task."""
        ...

    def carried_over(self, stage: str) -> dict[str, str]:
        """Which modules stage ``stage`` starts from, by name in the previous stage's checkpoint
        (``{"teacher": "net"}``: a frozen copy of the earlier ``net``). Every other module
        starts from the previous stage's module of the same name."""
        ...

    def fresh_modules(self, stage: str) -> frozenset[str]:
        """Modules stage ``stage`` starts from their own initialisation, not from the previous
        stage's checkpoint: ones no earlier stage trains or uses, whose sizes the earlier
        stage's preset therefore need not share (DTPM's predictor and adapters: one texture
        prior serves predictors of any size)."""
        ...

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """One training step's loss for ``stage`` (None: the last) and the scalars to log."""
        ...

    def condition(self, lq: Tensor, cond: Conditioning) -> Any:
        """The image's global conditioning, computed once per image on the whole image (never
        per tile); :meth:`restore` hands it to every tile. A one-line ValueError if the image
        came without what the model needs (a bokeh model: its lenses)."""
        ...

    def restore(
        self,
        lq: Tensor,
        condition: Any,
        options: SampleOptions,
        generator: torch.Generator | None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        """Restore a batch of LQ images (NCHW, [0,1]) given :meth:`condition`'s result; the
        result is not clamped. ``callback(done, total)`` reports sampler steps."""
        ...

    def reports(
        self, cases: list[tuple[str, Tensor, Tensor]], options: SampleOptions
    ) -> dict[str, str]:
        """Extra Markdown tables for ``irctl compare`` from held-out (name, LQ, GT) cases, by
        file stem (latent Refusion: what its compressor keeps); usually none."""
        ...

    def oracle_runs(self) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
        """Upper bounds for ``irctl compare``, by row label: ``run(LQ, GT)`` restores LQ with
        something only the ground truth gives (DiffIR: the IPR its stage-1 encoder reads from
        the GT), untiled, on 1×C×H×W tensors. Usually none."""
        ...

    def component_runs(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """Parts of the model run alone, for ``irctl compare``, by row label: ``run(LQ)``
        (DTPM: its initial predictor, what the diffusion adds texture to), untiled, on
        1×C×H×W tensors. Usually none."""
        ...

    def unfinished_runs(self, stage: str) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
        """What a checkpoint of the earlier training ``stage`` can already be scored on by
        ``irctl compare``, by row label, as :meth:`oracle_runs` (DiffIR after stage 1: the
        DIRformer given the ground-truth IPR, the paper's DiffIR_S1), so that a run can be
        judged on held-out photos before its last stage. Usually none: only the finished model
        restores."""
        ...

    #: seconds of the phases of the last :meth:`restore`, by name, for ``irctl benchmark``
    #: (DiffIR: its prior and DIRformer); empty when a method times none
    phase_seconds: Mapping[str, float]

    #: the modules whose weights were loaded from a checkpoint (set by the loader): restoring
    #: needs :meth:`restore_modules`; an upper bound may need more
    loaded_modules: frozenset[str]
    #: the training stage of the loaded checkpoint (set by the loader; "" when built without
    #: weights): restoring needs the last of :attr:`stages`
    loaded_stage: str

    def official_modules(self, states: list[dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        """The authors' released state_dicts (one per file: latent Refusion ships its
        compressor and its noise network apart) as this restorer's module states (``irctl
        import``); a one-line ValueError naming the first missing, unexpected or mis-shaped
        keys when a file is not of this architecture and size."""
        ...


class RestorerBase:
    """Defaults of the protocol's optional parts, for methods to inherit."""

    stages: list[str]
    phase_seconds: Mapping[str, float] = MappingProxyType({})  # read-only: no shared mutation
    loaded_modules: frozenset[str] = frozenset()
    loaded_stage: str = ""

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        """A one-stage method trains every module (its ``modules()``)."""
        return self.modules()  # type: ignore[attr-defined]

    def restore_modules(self) -> dict[str, nn.Module]:
        """Restoring needs every module."""
        return self.modules()  # type: ignore[attr-defined]

    def stage_degradation(self, stage: str) -> DegradationConfig:
        """Every stage learns the preset's task."""
        return self.preset.degradation  # type: ignore[attr-defined]

    def stage_depends_on(self, stage: str) -> frozenset[str] | None:
        return None

    def tile_multiple(self) -> int:
        """The largest padding multiple (``multiple``) of the networks restoring runs; a method
        whose networks run on another grid (a latent) says so itself."""
        multiples = [getattr(m, "multiple", 1) for m in self.restore_modules().values()]
        return max([m for m in multiples if isinstance(m, int)] or [1])

    @staticmethod
    def check_preset(preset: Preset) -> None:
        return None

    def carried_over(self, stage: str) -> dict[str, str]:
        return {}

    def fresh_modules(self, stage: str) -> frozenset[str]:
        return frozenset()

    def reports(
        self, cases: list[tuple[str, Tensor, Tensor]], options: SampleOptions
    ) -> dict[str, str]:
        return {}

    def oracle_runs(self) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
        return {}

    def component_runs(self) -> dict[str, Callable[[Tensor], Tensor]]:
        return {}

    def unfinished_runs(self, stage: str) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
        return {}

    def official_modules(self, states: list[dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        raise ValueError(
            f"method {type(self).__name__} has no official checkpoint layout to import from"
        )
