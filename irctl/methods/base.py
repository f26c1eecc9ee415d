"""The Restorer protocol: everything method-specific lives behind it (DESIGN.md).

engine/ and cli/ only ever talk to a Restorer, so adding a method never touches them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.engine.tiling import Tiler

#: Progress of one restore: (steps done, total steps).
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Conditioning:
    """Task-specific inputs beyond the LQ image, built per image by io/ from files and flags.

    ``scalars``: global numbers the network is conditioned on (bokeh: the source and target lens
    codes, see irctl/data/lenses.py); empty for tasks that need none (denoising, dehazing)."""

    scalars: tuple[float, ...] = ()

    def tensor(self, batch: int, device: torch.device) -> Tensor | None:
        """The scalars as an N×k tensor (one row per image of the batch), or None."""
        if not self.scalars:
            return None
        return torch.tensor([self.scalars] * batch, dtype=torch.float32, device=device)


@dataclass(frozen=True)
class SampleOptions:
    """How to run the reverse process for one image."""

    sampler: str = "sde"
    steps: int = 100
    tiler: Tiler = field(default_factory=Tiler)

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
    ) -> SampleOptions:
        """The preset's sampler defaults, each overridable (None keeps the preset's). Tiles are
        aligned to the network's padding multiple, 2^levels."""
        cfg = preset.sampler
        tile = cfg.tile if tile is None else tile
        overlap = cfg.tile_overlap if overlap is None else overlap
        return cls(
            sampler=sampler or cfg.name,
            steps=steps or cfg.steps,
            tiler=Tiler(
                tile=tile,
                overlap=min(overlap, max(tile - 1, 0)),
                batch=tile_batch or cfg.tile_batch,
                align=2 ** len(preset.network.enc_blocks),
            ),
        )


class Restorer(Protocol):
    preset: Preset
    stages: list[str]  # training stages in order, e.g. ["compressor", "diffusion"]
    stochastic: bool  # restore() runs a diffusion sampler: sampler, steps and seed matter

    def modules(self) -> dict[str, nn.Module]:
        """What a checkpoint holds, by name."""
        ...

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        """The modules one training stage optimises (the others stay frozen)."""
        ...

    def check_options(self, options: SampleOptions) -> None:
        """Raise ValueError (one line, for the user) if ``options`` cannot run on this model."""
        ...

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """One training step's loss for ``stage`` (None: the last) and the scalars to log."""
        ...

    def restore(
        self,
        lq: Tensor,
        options: SampleOptions,
        generator: torch.Generator | None,
        cond: Conditioning | None = None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        """Restore a batch of LQ images (NCHW, [0,1]); the result is not clamped.
        ``callback(done, total)`` reports sampler steps."""
        ...
