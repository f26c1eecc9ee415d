"""What a task hands a model besides its image: a leaf module, so that io/ (lens tables), data/
and methods/ can all speak of it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class Conditioning:
    """Task-specific inputs beyond the LQ image, built per image by the task from files and
    flags (in the reader threads).

    ``scalars``: global numbers the network is conditioned on (bokeh: the source and target lens
    codes, see irctl/data/lenses.py); empty for tasks that need none (denoising, dehazing)."""

    scalars: tuple[float, ...] = ()

    def tensor(self, batch: int, device: torch.device) -> Tensor | None:
        """The scalars as an N×k tensor (one row per image of the batch), or None."""
        if not self.scalars:
            return None
        import torch

        return torch.tensor([self.scalars] * batch, dtype=torch.float32, device=device)
